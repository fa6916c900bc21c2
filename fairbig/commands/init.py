"""``fairbig init``: analysis dataset, input store, encrypted output store.

Everything is checked before anything is created, and whatever a failing
step created is removed again: a half-made analysis dataset or store is
worse than none, because the next attempt would trip over it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as cfgmod
from .. import dl, gpg
from ..contract import CALL_FMT, FAIRBIG_DIR, INPUT, OUTPUT, PUBKEY_FILE, WORK_DIR
from ..dataset import dataset_id_of, new_repos_on_main_branch
from ..errors import FairbigError
from ..images import ImageKind, image_kind
from ..proc import run
from ..resources import container_wrapper, oci_unpacker
from ..stores import RiaStore, Rollback, add_encrypted_storage, parse_store
from ..sync import leave_out_results

CONTAINERS_DIR = "containers"
# what the container dataset carries besides its images (in git, beside each other:
# the wrapper calls the unpacker of OCI/Docker archives from its own directory)
CONTAINER_TOOLS = (container_wrapper(), oci_unpacker())
GITATTRIBUTES = """\
# fairbig: results are always annexed, so the output store encrypts them.
{results}/** annex.largefiles=anything
# fairbig's own bookkeeping is small text kept in git.
{fairbig_dir}/** annex.largefiles=nothing
fairbig.yaml annex.largefiles=nothing
"""
PLAINTEXT_NOTE = ("Encrypted at rest: the content of every annexed result file. "
                  "Readable by anyone with access to the output store: file names, folder "
                  "names (subject IDs), commit messages and run records (commands, input and "
                  "output paths), everything kept in git (code, fairbig.yaml, the plan), and "
                  "the size and MD5 checksum of each result's plaintext (its annex key).")


@dataclass
class InitOptions:
    target: Path
    input: str
    container: str
    command: str
    input_store: str
    output_store: str
    keys: list[str]
    container_name: str = ""
    code: list[Path] = field(default_factory=list)
    layout: str = "auto"
    by: str = "subject"
    backend: str = "local"
    base_config: str = ""   # text of a given fairbig.yaml: its other settings are kept
    # further input datasets (name, source), each installed as inputs/<name>
    secondary: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class InitResult:
    path: Path
    dataset_id: str
    input_store: str
    output_store: str
    container: str
    keys: list[str]
    plaintext_note: str = PLAINTEXT_NOTE


Step = Callable[[str], None]


def _check_target(target: Path) -> bool:
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FairbigError(f"{target} exists and is not empty",
                           "choose a new directory for the analysis dataset")
    return target.exists()


def _check_input(source: str) -> None:
    if source.startswith("ria+") or "://" in source:
        return  # checked by the clone itself; failures are rolled back
    path = Path(source)
    if not (path / ".datalad" / "config").exists():
        raise FairbigError(f"input '{source}' is not a DataLad dataset",
                           "give the path or URL of a dataset made with 'datalad create'")


def split_inputs(given: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
    """``--input`` values: the first is the primary dataset (inputs/data, the one whose
    subjects are the jobs), each further one ``NAME=SOURCE`` (inputs/NAME)."""
    if not given:
        raise FairbigError("no --input given", "give the input dataset's path or URL")
    more = []
    for value in given[1:]:
        name, sep, source = value.partition("=")
        if not sep or not source or not cfgmod.INPUT_NAME_RE.match(name):
            raise FairbigError(f"--input {value!r}: a further input dataset needs a name",
                               "give it as NAME=URL, e.g. --input fmriprep=ria+file:///st#~fp")
        more.append((name, source))
    return given[0], more


def _check_container(image: Path) -> ImageKind:
    """The image's kind, after a run of ``exit 0`` in it where this machine has a
    runtime for it (a SIF without Apptainer is added as it is: clusters have it)."""
    kind = image_kind(image)
    if kind.runtimes and not any(shutil.which(r) for r in kind.runtimes):
        return kind
    probe = run(["sh", str(container_wrapper()), str(image.resolve()), "sh", "-c", "exit 0"],
                check=False, cwd=image.resolve().parent)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise FairbigError(f"container image '{image}' does not run: {last}",
                           "check the image with 'sh containers/fairbig-container IMAGE true'")
    return kind


def _check_keys(keys: list[str]) -> list[str]:
    if not keys:
        raise FairbigError("no encryption key given",
                           "pass --encrypt-to with the lab's GPG key fingerprint")
    fprs = []
    for key in keys:
        info = gpg.key_info(key)
        gpg.check_encrypt(info.fingerprint)
        fprs.append(info.fingerprint)
    return fprs


def init(opts: InitOptions, step: Step = lambda _: None) -> InitResult:
    target = opts.target.resolve()
    existed = _check_target(target)
    for source in (opts.input, *(src for _, src in opts.secondary)):
        _check_input(source)
    image = Path(opts.container)
    if is_container_dataset(opts.container):
        kind, name = None, _dataset_container_name(opts.container, opts.container_name)
    else:
        kind, name = _check_container(image), opts.container_name or image.name.split(".")[0]
    fprs = _check_keys(opts.keys)
    in_store = parse_store(opts.input_store, INPUT)
    out_store = parse_store(opts.output_store, OUTPUT)
    if in_store.root == out_store.root:
        raise FairbigError("input and output store are the same",
                           "use a separate output store: only it is encrypted")
    settings = {
        "stores.input": in_store.url, "stores.output": out_store.url,
        "encryption.keys": fprs, "container": f"{CONTAINERS_DIR}/{name}",
        "command": opts.command, "inputs.layout": opts.layout, "inputs.by": opts.by,
        "backend.name": opts.backend,
    }
    if opts.secondary:
        settings["inputs.secondary"] = [{"name": n, "path": secondary_path(n)}
                                        for n, _ in opts.secondary]
    cfg_text = cfgmod.render(settings, opts.base_config)
    cfgmod.from_data(cfgmod._yaml().load(cfg_text), "the given options")  # validate up front
    for code in opts.code:
        if not code.exists():
            raise FairbigError(f"code path '{code}' does not exist", "give an existing file/dir")

    rollback = Rollback()
    try:
        with new_repos_on_main_branch():
            rollback.created(target)
            dsid = _build(target, opts, image, kind, name, fprs, cfg_text, step)
            step("creating the encrypted output store")
            rollback.track_store(out_store, dsid)
            _add_output_store(target, out_store, fprs)
            step("publishing to the input store")
            sub_id = dataset_id_of(target / CONTAINERS_DIR)
            rollback.track_store(in_store, dsid)
            rollback.track_store(in_store, sub_id)
            _publish_input(target, in_store)
    except BaseException:
        rollback.undo()
        if existed:
            target.mkdir(exist_ok=True)
        raise
    return InitResult(target, dsid, in_store.url, out_store.url, f"{CONTAINERS_DIR}/{name}",
                      fprs)


def _build(target: Path, opts: InitOptions, image: Path, kind: ImageKind | None, name: str,
           fprs: list[str], cfg_text: str, step: Step) -> str:
    import datalad.api as dapi

    step(f"creating the analysis dataset {target}")
    dl.call(dapi.create, path=str(target), cfg_proc=["yoda"])
    (target / cfgmod.CONFIG_NAME).write_text(cfg_text)
    results = cfgmod.load(target / cfgmod.CONFIG_NAME).results
    (target / ".gitattributes").open("a").write(
        GITATTRIBUTES.format(results=results, fairbig_dir=FAIRBIG_DIR))
    (target / ".gitignore").open("a").write(f"{WORK_DIR}/\n.snakemake/\n")
    (target / FAIRBIG_DIR).mkdir()
    (target / PUBKEY_FILE).write_text(gpg.export_public(fprs))
    for code in opts.code:
        dest = target / "code" / code.name
        if code.is_dir():
            shutil.copytree(code, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(code, dest)
    step(f"adding the input dataset {opts.input} as inputs/data")
    dl.call(dapi.clone, source=opts.input, path=str(target / "inputs" / "data"),
            dataset=str(target), hint="check the input URL and that the dataset exists there")
    for sec_name, source in opts.secondary:
        step(f"adding the input dataset {source} as {secondary_path(sec_name)}")
        dl.call(dapi.clone, source=source, path=str(target / secondary_path(sec_name)),
                dataset=str(target), hint="check the input URL and that the dataset exists there")
    if kind is None:
        step(f"installing the container dataset {opts.container} (container '{name}')")
        _install_container_dataset(target, opts.container, name)
    else:
        step(f"adding the container '{name}' ({kind.name})")
        _add_container(target, image, kind, name)
    dl.call(dapi.save, dataset=str(target), message="fairbig: set up analysis dataset")
    leave_out_results(target, results)  # merges fast-forward it without writing results
    return dataset_id_of(target)


def secondary_path(name: str) -> str:
    """Where ``init`` installs the further input dataset ``name``."""
    return f"inputs/{name}"


def _add_container(target: Path, image: Path, kind: ImageKind, name: str) -> None:
    import datalad.api as dapi

    cds = target / CONTAINERS_DIR
    dl.call(dapi.create, path=str(cds), dataset=str(target))
    with (cds / ".gitattributes").open("a") as attrs:
        for tool in CONTAINER_TOOLS:
            attrs.write(f"{tool.name} annex.largefiles=nothing\n")
    for tool in CONTAINER_TOOLS:
        shutil.copy2(tool, cds / tool.name)
    dest = cds / "images" / f"{name}{kind.suffix}"
    dest.parent.mkdir(parents=True)
    shutil.copy2(image, dest)
    dl.call(dapi.save, dataset=str(cds), message="fairbig: container runtime wrapper")
    dl.call(dapi.containers_add, name=name, dataset=str(cds),
            image=str(dest.relative_to(cds)), call_fmt=CALL_FMT)


def is_container_dataset(source: str) -> bool:
    """``--container`` names a DataLad dataset of containers (a path or URL, e.g. a clone
    of ReproNim/containers), not an image file."""
    if source.startswith("docker://"):
        raise FairbigError(f"cannot pull {source}: no registry is reachable from here",
                           "save the image to an archive (docker save, skopeo copy ... "
                           "oci-archive:) and give that file")
    return "://" in source or source.startswith("ria+") or Path(source, ".datalad").is_dir()


def container_names(dataset: Path) -> list[str]:
    """The containers a dataset's .datalad/config declares (datalad containers-add)."""
    out = run(["git", "config", "-f", str(dataset / ".datalad" / "config"), "--get-regexp",
               r"^datalad\.containers\..*\.image$"], check=False).stdout
    return sorted(line.split()[0][len("datalad.containers."):-len(".image")]
                  for line in out.splitlines())


def _dataset_container_name(source: str, wanted: str) -> str:
    """The container of the dataset at ``source`` to use: checked now where the dataset
    is local; a URL's is checked right after its clone (and rolled back)."""
    if not Path(source, ".datalad").is_dir():
        if not wanted:
            raise FairbigError(f"no --container-name for the container dataset {source}",
                               "name the container to use ('datalad containers-list' in "
                               "the dataset lists them)")
        return wanted
    names = container_names(Path(source))
    if not wanted and len(names) == 1:
        return names[0]
    _check_name(source, wanted, names)
    return wanted


def _check_name(source: str, wanted: str, names: list[str]) -> None:
    if wanted not in names:
        raise FairbigError(
            f"the container dataset {source} has no container '{wanted}'"
            if wanted else f"the container dataset {source} has several containers",
            f"choose one with --container-name: {', '.join(names) or 'it declares none'}")


def _install_container_dataset(target: Path, source: str, name: str) -> None:
    """The dataset as the container subdataset, its call formats as its maintainers
    recorded them; only the chosen image is fetched (and so published to the input
    store, whence jobs get it)."""
    import datalad.api as dapi

    cds = target / CONTAINERS_DIR
    dl.call(dapi.clone, source=source, path=str(cds), dataset=str(target),
            hint="check the container dataset's path or URL")
    _check_name(source, name, container_names(cds))
    image = run(["git", "config", "-f", str(cds / ".datalad" / "config"),
                 f"datalad.containers.{name}.image"]).stdout.strip()
    dl.call(dapi.get, path=str(cds / image), dataset=str(cds),
            hint=f"the image of '{name}' must be obtainable from the container dataset")


def _add_output_store(target: Path, store: RiaStore, fprs: list[str]) -> None:
    import datalad.api as dapi

    dl.call(dapi.create_sibling_ria, url=store.url, name=OUTPUT, dataset=str(target),
            storage_sibling=False, new_store_ok=True)
    add_encrypted_storage(target, OUTPUT, store, fprs)


def _publish_input(target: Path, store: RiaStore) -> None:
    import datalad.api as dapi

    for ds in (target / CONTAINERS_DIR, target):
        dl.call(dapi.create_sibling_ria, url=store.url, name=INPUT, dataset=str(ds),
                new_store_ok=True)
        dl.call(dapi.push, dataset=str(ds), to=INPUT)
        _store_head_follows(ds, store)
    dl.call(dapi.push, dataset=str(target), to=OUTPUT)


def _store_head_follows(ds: Path, store: RiaStore) -> None:
    """The store's copy starts with HEAD on our main branch; a container dataset the lab
    brings may live on another (ReproNim/containers: ``master``), and a clone of a
    HEAD that names no branch fails ("remote HEAD refers to nonexistent ref")."""
    branch = run(["git", "symbolic-ref", "--short", "HEAD"], cwd=ds).stdout.strip()
    run(["git", "--git-dir", str(store.dataset_dir(dataset_id_of(ds))), "symbolic-ref", "HEAD",
         f"refs/heads/{branch}"])
