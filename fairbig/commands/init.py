"""``fairbig init``: analysis dataset, input store, encrypted output store.

Everything is checked before anything is created, and whatever a failing
step created is removed again: a half-made analysis dataset or store is
worse than none, because the next attempt would trip over it.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import config as cfgmod
from .. import dl, gpg
from ..dataset import new_repos_on_main_branch
from ..errors import FairbigError
from ..proc import run
from ..resources import container_wrapper
from ..stores import RiaStore, Rollback, add_encrypted_storage, parse_store

CONTAINERS_DIR = "containers"
CALL_FMT = "sh {img_dspath}/fairbig-container {img} {cmd}"
GITATTRIBUTES = """\
# fairbig: results are always annexed, so the output store encrypts them.
{results}/** annex.largefiles=anything
# fairbig's own bookkeeping is small text kept in git.
.fairbig/** annex.largefiles=nothing
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


def _check_container(image: Path) -> None:
    if not image.is_file():
        raise FairbigError(f"container image '{image}' does not exist",
                           "build one with containers/build-image or give its path")
    if not tarfile.is_tarfile(image):
        raise FairbigError(f"container image '{image}' is not a rootfs tarball",
                           "give a tar of a root file system, e.g. from containers/build-image")
    probe = run(["sh", str(container_wrapper()), str(image.resolve()), "sh", "-c", "exit 0"],
                check=False, cwd=image.resolve().parent)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise FairbigError(f"container image '{image}' does not run: {last}",
                           "check the image with 'sh containers/fairbig-container IMAGE true'")


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
    _check_input(opts.input)
    image = Path(opts.container)
    _check_container(image)
    fprs = _check_keys(opts.keys)
    in_store = parse_store(opts.input_store, "input")
    out_store = parse_store(opts.output_store, "output")
    if in_store.root == out_store.root:
        raise FairbigError("input and output store are the same",
                           "use a separate output store: only it is encrypted")
    name = opts.container_name or image.name.split(".")[0]
    settings = {
        "stores.input": in_store.url, "stores.output": out_store.url,
        "encryption.keys": fprs, "container": f"{CONTAINERS_DIR}/{name}",
        "command": opts.command, "inputs.layout": opts.layout, "inputs.by": opts.by,
        "backend.name": opts.backend,
    }
    cfg_text = cfgmod.render(settings, opts.base_config)
    cfgmod.from_data(cfgmod._yaml().load(cfg_text), "the given options")  # validate up front
    for code in opts.code:
        if not code.exists():
            raise FairbigError(f"code path '{code}' does not exist", "give an existing file/dir")

    rollback = Rollback()
    try:
        with new_repos_on_main_branch():
            rollback.created(target)
            dsid = _build(target, opts, image, name, fprs, cfg_text, step)
            step("creating the encrypted output store")
            rollback.track_store(out_store, dsid)
            _add_output_store(target, out_store, fprs)
            step("publishing to the input store")
            sub_id = _dataset_id(target / CONTAINERS_DIR)
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


def _dataset_id(path: Path) -> str:
    return run(["git", "config", "-f", str(path / ".datalad" / "config"),
                "datalad.dataset.id"]).stdout.strip()


def _build(target: Path, opts: InitOptions, image: Path, name: str, fprs: list[str],
           cfg_text: str, step: Step) -> str:
    import datalad.api as dapi

    step(f"creating the analysis dataset {target}")
    dl.call(dapi.create, path=str(target), cfg_proc=["yoda"])
    (target / ".gitattributes").open("a").write(GITATTRIBUTES.format(results="results"))
    (target / ".gitignore").open("a").write(".fairbig/work/\n.snakemake/\n")
    (target / ".fairbig").mkdir()
    (target / ".fairbig" / "lab-pubkey.asc").write_text(gpg.export_public(fprs))
    (target / cfgmod.CONFIG_NAME).write_text(cfg_text)
    for code in opts.code:
        dest = target / "code" / code.name
        if code.is_dir():
            shutil.copytree(code, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(code, dest)
    step(f"adding the input dataset {opts.input} as inputs/data")
    dl.call(dapi.clone, source=opts.input, path=str(target / "inputs" / "data"),
            dataset=str(target), hint="check the input URL and that the dataset exists there")
    step(f"adding the container '{name}'")
    _add_container(target, image, name)
    dl.call(dapi.save, dataset=str(target), message="fairbig: set up analysis dataset")
    return _dataset_id(target)


def _add_container(target: Path, image: Path, name: str) -> None:
    import datalad.api as dapi

    cds = target / CONTAINERS_DIR
    dl.call(dapi.create, path=str(cds), dataset=str(target))
    (cds / ".gitattributes").open("a").write("fairbig-container annex.largefiles=nothing\n")
    shutil.copy2(container_wrapper(), cds / "fairbig-container")
    dest = cds / "images" / f"{name}.tar"
    dest.parent.mkdir(parents=True)
    shutil.copy2(image, dest)
    dl.call(dapi.save, dataset=str(cds), message="fairbig: container runtime wrapper")
    dl.call(dapi.containers_add, name=name, dataset=str(cds),
            image=str(dest.relative_to(cds)), call_fmt=CALL_FMT)


def _add_output_store(target: Path, store: RiaStore, fprs: list[str]) -> None:
    import datalad.api as dapi

    dl.call(dapi.create_sibling_ria, url=store.url, name="output", dataset=str(target),
            storage_sibling=False, new_store_ok=True)
    add_encrypted_storage(target, "output", store, fprs)


def _publish_input(target: Path, store: RiaStore) -> None:
    import datalad.api as dapi

    for ds in (target / CONTAINERS_DIR, target):
        dl.call(dapi.create_sibling_ria, url=store.url, name="input", dataset=str(ds),
                new_store_ok=True)
        dl.call(dapi.push, dataset=str(ds), to="input")
    dl.call(dapi.push, dataset=str(target), to="output")
