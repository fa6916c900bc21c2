"""``fairbig export ro-crate``: the merged computation as a Process Run Crate.

Outside DataLad (a journal, a repository, a data-sharing agreement) the
standard way to say "these results came from this software, on these
inputs" is an RO-Crate; for computations, the Workflow Run RO-Crate
profiles (https://w3id.org/ro/wfrun). fairbig's computation is an
*implicit* workflow: one containerized tool run once per job, composed by
fairbig's own job script, with no workflow-language definition that could
be the crate's main entity. That is what Process Run Crate describes (one
``CreateAction`` per tool execution, the tool a ``SoftwareApplication``);
Workflow Run and Provenance Run Crate require a ``ComputationalWorkflow``
file and per-step actions of a workflow engine, which fairbig does not have.

The crate links to the DataLad dataset instead of copying it: the datasets
are entities whose ``@id`` is their clone URL and whose ``version`` is the
commit; each job's results are ONE directory entity (``results/<job>/``,
identified by its git tree), not its files (1.3 M at UK Biobank scale).

Everything comes from the output store's plain-text part (git: the tree of
main, run records in commit messages, the git-annex branch's encryption
settings without the cipher) and from the jobs' state records on this
host (start, end, host, exit). Nothing is decrypted or fetched.

Gathering (:func:`gather`) reads git with a fixed number of processes,
whatever the number of jobs; building (:func:`build_graph`) is pure.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from .. import __version__
from .. import config as cfgmod
from ..annexkeys import blob_texts
from ..contract import OUTPUT_STORAGE, PLAN_FILE
from ..dataset import Analysis, paths
from ..errors import FairbigError
from ..gitcmd import GITLINK, Entry, git, ls_tree
from ..gittree import git_dir_of
from ..jobstate import JobRecord, read_records
from ..jobtable import HEADER
from ..storeview import MERGED_FILE, read_merged_rows
from ..sync import store_main

METADATA = "ro-crate-metadata.json"
RO_CRATE = "https://w3id.org/ro/crate/1.1"
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
CONTEXT = [f"{RO_CRATE}/context", WFRUN_CONTEXT]
PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
ANALYSIS_ID = "#analysis-dataset"
INPUTS_ID = "#input-dataset"
CONTAINER_DS_ID = "#container-dataset"
COMPLETED = "http://schema.org/CompletedActionStatus"
FAILED = "http://schema.org/FailedActionStatus"
NOT_ENCRYPTED = (
    "Not encrypted, readable by anyone who can read the store: file and folder names "
    "(subject IDs among them), commit messages and run records (commands, input and "
    "output paths), the git history, everything kept in git (code/, fairbig.yaml, the "
    "plan), and each result file's size and MD5 checksum (its annex key).")


@dataclass(frozen=True)
class DatasetFacts:
    """A DataLad dataset at one version: where to clone it and which commit."""

    dataset_id: str
    url: str
    version: str
    path: str = ""          # where it sits in the analysis dataset


@dataclass(frozen=True)
class ContainerFacts:
    name: str               # as in fairbig.yaml, e.g. containers/ukb-mini
    dataset: DatasetFacts
    image: str              # path of the image in the container dataset
    key: str                # its annex key (backend, size, checksum)
    call_format: str        # datalad-container's cmdexec: what every run record expands
    wrapper: str            # the runtime-neutral wrapper the call format names ("" if none)
    wrapper_blob: str


@dataclass(frozen=True)
class EncryptionFacts:
    mode: str               # git-annex encryption= of the output storage remote
    fingerprints: tuple[str, ...]
    keyids: tuple[str, ...]  # what the store's git-annex branch records (pubkeys=)


@dataclass(frozen=True)
class JobFacts:
    job_id: str
    commit: str             # the commit holding the job's run record
    author: str
    committed: int          # author time of that commit (seconds since the epoch)
    input_state: str
    record: dict            # the datalad run record ({} if none could be read)
    results: dict[str, tuple[str, str]]   # output path -> (git object type, sha) in main
    state: JobRecord | None  # the job's own state record, if it belongs to this attempt


@dataclass
class Computation:
    """Every fact the crate states, gathered once (see :func:`gather`)."""

    analysis: DatasetFacts
    published: int          # commit time of the analysis dataset's version
    inputs: DatasetFacts
    container: ContainerFacts
    command: str
    code: dict[str, str]    # path -> git blob
    code_tree: str
    plan_blob: str
    config_blob: str
    encryption: EncryptionFacts
    jobs: list[JobFacts] = field(default_factory=list)
    fairbig_version: str = __version__


# ------------------------------------------------------------------ building (pure)

def ref(entity_id: str) -> dict[str, str]:
    return {"@id": entity_id}


def iso(seconds: float) -> str:
    """ISO 8601 in UTC with a numeric offset, the form the profile's checks expect."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def path_id(path: str, directory: bool = True) -> str:
    """A local ``#`` identifier that keeps a dataset path readable (the profile asks
    data entities to reflect the names the tool saw); directories end in ``/``."""
    return "#" + quote(path.rstrip("/"), safe="/._-~") + ("/" if directory else "")


def job_action_id(job_id: str) -> str:
    return f"#job-{job_id}"


def checksums(key: str) -> dict[str, str]:
    """md5/sha256 spelled out by an annex key (``MD5E-s<size>--<md5>.ext``)."""
    backend, _, rest = key.partition("-")
    digest = rest.split("--", 1)[-1].split(".", 1)[0]
    prop = {"MD5": "md5", "SHA256": "sha256"}.get(backend.rstrip("E"))
    return {prop: digest} if prop and digest else {}


def refs(entity_ids: list[str]) -> dict | list[dict]:
    """One reference alone, several as a list (RO-Crate 1.1 prefers no singleton lists)."""
    return ref(entity_ids[0]) if len(entity_ids) == 1 else [ref(i) for i in entity_ids]


def _dataset(d: DatasetFacts, entity_id: str, name: str, description: str) -> dict:
    """A DataLad dataset as a contextual entity: ``url`` is what ``datalad clone`` takes
    (a ``ria+file`` URL is no web resource a crate could list as its part)."""
    return {"@id": entity_id, "@type": "Dataset", "name": name, "identifier": d.dataset_id,
            "version": d.version, "url": d.url, "description": description}


def _person_id(name: str) -> str:
    return "#person-" + hashlib.sha1(name.encode()).hexdigest()[:12]


def build_graph(c: Computation, license_id: str = "") -> dict:
    """The crate's JSON-LD document for ``c``; ``license_id``: SPDX ID or URL of the
    licence the crate's metadata is given under ("" states that none was given)."""
    a, cont = c.analysis, c.container
    extra: list[dict] = []
    license_entity = _license(license_id)
    clone_hint = "datalad clone '{}' then git checkout {}"
    analysis = _dataset(a, ANALYSIS_ID, f"analysis dataset {a.dataset_id}",
                        "The DataLad dataset holding every job's results (annexed, encrypted) "
                        "and run records; " + clone_hint.format(a.url, a.version) + ".")
    analysis["conditionsOfAccess"] = (
        f"Result content is encrypted at rest (git-annex encryption={c.encryption.mode}) "
        f"to OpenPGP key(s) {', '.join(c.encryption.fingerprints)}; only holders of the "
        "secret key read it.")
    analysis["hasPart"] = [ref("#plan"), ref("#config"), *(ref(path_id(p, False))
                                                          for p in sorted(c.code))]
    inputs = _dataset(c.inputs, INPUTS_ID, f"input dataset {c.inputs.path}",
                      f"The input DataLad dataset, mounted at {c.inputs.path}; "
                      + clone_hint.format(c.inputs.url, c.inputs.version) + ".")
    cont_ds = _dataset(cont.dataset, CONTAINER_DS_ID, f"container dataset {cont.dataset.path}",
                       "The DataLad dataset holding the container image and its "
                       "runtime-neutral call; " + clone_hint.format(cont.dataset.url,
                                                                     cont.dataset.version) + ".")
    image = {"@id": "#container-image", "@type": "ContainerImage", "name": cont.image,
             "registry": cont.dataset.url, "identifier": cont.key,
             "description": f"Image '{cont.name}' in the container dataset (annex key "
             f"{cont.key}); every job called it as: {cont.call_format}",
             **checksums(cont.key)}
    if cont.image.endswith(".sif"):
        image["additionalType"] = ref("https://w3id.org/ro/terms/workflow-run#SIFImage")
    code = [{"@id": path_id(p, False), "@type": "SoftwareSourceCode", "name": p,
             "version": blob, "url": a.url, "isPartOf": ref(ANALYSIS_ID)}
            for p, blob in sorted(c.code.items())]
    pipeline = {"@id": "#pipeline", "@type": "SoftwareApplication",
                "name": f"pipeline: {c.command}",
                "description": f"The command of fairbig.yaml, run once per job inside the "
                f"container; its code is code/ of the analysis dataset (git tree "
                f"{c.code_tree}).", "softwareVersion": c.code_tree, "url": a.url,
                "hasPart": refs([x["@id"] for x in code])}
    if cont.wrapper:
        pipeline["softwareRequirements"] = ref("#container-call")
        extra.append({"@id": "#container-call", "@type": "SoftwareApplication",
                      "name": cont.wrapper, "softwareVersion": cont.wrapper_blob,
                      "url": cont.dataset.url,
                      "description": "Runtime-neutral container call (picks Apptainer, "
                      "Singularity or bubblewrap at run time); call format: "
                      + cont.call_format})
    fairbig = {"@id": "#fairbig", "@type": "SoftwareApplication", "name": "fairbig",
               "softwareVersion": c.fairbig_version,
               "description": "Planned, submitted and merged the jobs (version given: the one "
               "that wrote this crate; the jobs do not record fairbig's version).",
               "url": a.url}
    encryption = {"@id": "#encryption", "@type": "CreativeWork",
                  "name": f"Encryption at rest: git-annex encryption={c.encryption.mode}",
                  "about": ref(ANALYSIS_ID),
                  "description": "Encrypted: the content of every annexed file (results) in "
                  f"the output store, with git-annex encryption={c.encryption.mode} to the "
                  "public key(s) listed (store records key IDs "
                  f"{', '.join(c.encryption.keyids) or 'none'}). " + NOT_ENCRYPTED,
                  "identifier": refs([f"#openpgp-{f}" for f in c.encryption.fingerprints])}
    keys = [{"@id": f"#openpgp-{f}", "@type": "PropertyValue",
             "propertyID": "OpenPGP fingerprint", "name": "lab key", "value": f}
            for f in c.encryption.fingerprints]
    files = [{"@id": "#plan", "@type": "CreativeWork", "name": PLAN_FILE,
              "encodingFormat": "text/tab-separated-values", "identifier": c.plan_blob,
              "description": f"The job table (columns {', '.join(HEADER)}), git blob "
              f"{c.plan_blob}.", "isPartOf": ref(ANALYSIS_ID)},
             {"@id": "#config", "@type": "CreativeWork", "name": cfgmod.CONFIG_NAME,
              "encodingFormat": "application/yaml", "identifier": c.config_blob,
              "description": f"fairbig's configuration, git blob {c.config_blob}.",
              "isPartOf": ref(ANALYSIS_ID)}]
    parts: dict[str, dict] = {}
    people: dict[str, dict] = {}
    exits: dict[str, dict] = {}
    actions = [_job_action(j, c.inputs, a, parts, people, exits) for j in c.jobs]
    root = {"@id": "./", "@type": "Dataset",
            "name": f"fairbig computation {a.dataset_id} at {a.version[:12]}",
            "description": f"{len(c.jobs)} jobs of '{c.command}' in container '{cont.name}' "
            f"on input dataset {c.inputs.dataset_id} ({c.inputs.version[:12]}), merged "
            f"into analysis dataset {a.dataset_id} at commit {a.version}. The results stay "
            "in the DataLad dataset (this crate links to it, one directory entity per job); "
            "no result content is in this crate.",
            "datePublished": iso(c.published), "license": ref(license_entity["@id"]),
            "conformsTo": ref(PROFILE), "isBasedOn": ref(ANALYSIS_ID),
            "mentions": [ref(x["@id"]) for x in actions]
            + [ref("#encryption"), ref("#fairbig")]}
    descriptor = {"@id": METADATA, "@type": "CreativeWork", "conformsTo": ref(RO_CRATE),
                  "about": ref("./")}
    profile = {"@id": PROFILE, "@type": "CreativeWork", "name": "Process Run Crate",
               "version": PROFILE.rsplit("/", 1)[1]}
    graph = [descriptor, root, profile, license_entity, analysis, inputs, cont_ds, image,
             pipeline, *extra, *code, fairbig, encryption, *keys, *files,
             *people.values(), *exits.values(), *actions, *parts.values()]
    return {"@context": CONTEXT, "@graph": graph}


def _license(license_id: str) -> dict:
    if not license_id:
        return {"@id": "#license-not-stated", "@type": "CreativeWork",
                "name": "No licence stated",
                "description": "No licence was given when this crate was exported "
                "(fairbig export ro-crate --license); ask the data owners for the terms."}
    url = license_id if "://" in license_id else f"https://spdx.org/licenses/{license_id}"
    return {"@id": url, "@type": "CreativeWork", "name": license_id.rsplit("/", 1)[-1]}


def _job_action(j: JobFacts, inputs: DatasetFacts, a: DatasetFacts, parts: dict,
                people: dict, exits: dict) -> dict:
    """One job's CreateAction; adds its input/result entities to ``parts`` (shared: two
    jobs reading the same directory point at one entity)."""
    rec = j.record
    objects = []
    for p in rec.get("inputs") or []:
        pid = path_id(p)
        parts.setdefault(pid, {"@id": pid, "@type": "Dataset", "name": p,
                               "version": j.input_state, "isPartOf": ref(INPUTS_ID)})
        objects.append(pid)
    results = []
    for p in rec.get("outputs") or []:
        kind, sha = j.results.get(p.rstrip("/"), ("", ""))
        pid = path_id(p)
        entity = {"@id": pid, "@type": "Dataset" if kind in ("", "tree") else "CreativeWork",
                  "name": p, "isPartOf": ref(ANALYSIS_ID)}
        if sha:
            entity["identifier"] = f"git {kind} {sha}"
        parts[pid] = entity
        results.append(pid)
    code = rec.get("exit")
    status = COMPLETED if code in (0, None) else FAILED
    if code is not None:
        eid = f"#exit-{code}"
        exits.setdefault(eid, {"@id": eid, "@type": "PropertyValue", "name": "exit code",
                               "value": code})
        results.append(eid)
    action = {"@id": job_action_id(j.job_id), "@type": "CreateAction",
              "name": f"job {j.job_id}",
              "description": rec.get("cmd") or f"no run record in commit {j.commit}",
              "identifier": j.commit, "instrument": ref("#pipeline"),
              "containerImage": ref("#container-image"), "object": refs(objects),
              "result": refs(results), "actionStatus": status}
    if j.author:
        pid = _person_id(j.author)
        people.setdefault(pid, {"@id": pid, "@type": "Person", "name": j.author})
        action["agent"] = ref(pid)
    s = j.state
    if s is not None:
        action["startTime"] = iso(s.started)
        action["endTime"] = iso(s.updated)
        if s.host:
            action["location"] = s.host
    else:
        action["endTime"] = iso(j.committed)
    return action


# ------------------------------------------------------------------ gathering (git)

def _tree_entries(git_dir: Path, treeish: str, paths_: list[str],
                  recursive: bool = False) -> dict[str, Entry]:
    return {e.path: e for e in ls_tree(git_dir, treeish, *paths_, recursive=recursive)}


def _submodules(git_dir: Path, blob: str) -> dict[str, dict[str, str]]:
    """``.gitmodules`` of a commit: path -> its settings (datalad-id, datalad-url, url)."""
    out = git(git_dir, "config", "--blob", blob, "-z", "--list").stdout
    mods: dict[str, dict[str, str]] = {}
    for item in filter(None, out.split("\0")):
        key, _, value = item.partition("\n")
        if key.startswith("submodule."):
            name, _, setting = key[len("submodule."):].rpartition(".")
            mods.setdefault(name, {})[setting] = value
    return {m.get("path", n): m for n, m in mods.items()}


def _commits(git_dir: Path, shas: list[str]) -> dict[str, tuple[str, int, str]]:
    """sha -> (author name, author time, message) of many commits in ONE process."""
    if not shas:
        return {}
    out = git(git_dir, "log", "--no-walk=unsorted", "--stdin", "-z",
              "--format=%H%x1f%an%x1f%at%x1f%B", input="".join(s + "\n" for s in shas)).stdout
    found = {}
    for rec in filter(None, out.split("\0")):
        sha, name, when, body = rec.split("\x1f", 3)
        found[sha] = (name, int(when), body)
    return found


def run_record(message: str) -> dict:
    """The datalad run record of a commit message, read with datalad's own reader;
    {} when there is none or it lives in a sidecar file (annexed, so encrypted)."""
    from datalad.local.rerun import get_run_info

    try:
        return get_run_info(None, message)[1] or {}
    except (ValueError, AttributeError):  # AttributeError: a sidecar record's lookup
        return {}


def _encryption(git_dir: Path, keys: list[str]) -> EncryptionFacts:
    """Mode and key IDs of the output storage remote, from the git-annex branch; only
    these named fields are read (never ``cipher=``)."""
    log = git(git_dir, "cat-file", "blob", "git-annex:remote.log", check=False).stdout
    mode, keyids = "unknown", ()
    for line in log.splitlines():
        fields = dict(f.partition("=")[::2] for f in line.split()[1:])
        if fields.get("name") == OUTPUT_STORAGE:
            mode = fields.get("encryption", "none")
            keyids = tuple(k for k in fields.get("pubkeys", fields.get("keyid", ""))
                           .split(",") if k)
    return EncryptionFacts(mode, tuple(keys), keyids)


def _container(a: Analysis, name: str, gitlink_sha: str,
               modules: dict[str, dict[str, str]]) -> ContainerFacts:
    """The image and call format at the version the analysis dataset records, read
    from the installed container dataset's git (the container lives in the input store,
    not the output store)."""
    ds_rel, _, cname = name.rpartition("/")
    cgit = git_dir_of(a.root / ds_rel) if ds_rel else git_dir_of(a.root)
    if not cgit.exists():
        raise FairbigError(f"the container dataset {ds_rel} is not installed",
                           f"run 'datalad get -n {ds_rel}' in {a.root}")
    conf = git(cgit, "config", "--blob", f"{gitlink_sha}:.datalad/config", "-z", "--list",
               check=False)
    if conf.returncode != 0:
        raise FairbigError(f"the container dataset {ds_rel} lacks commit {gitlink_sha[:12]}",
                           f"update it: datalad -C {a.root} update -r --how ff-only {ds_rel}")
    settings = dict(item.partition("\n")[::2] for item in conf.stdout.split("\0") if item)
    image = settings.get(f"datalad.containers.{cname}.image", "")
    fmt = settings.get(f"datalad.containers.{cname}.cmdexec", "")
    dsid = settings.get("datalad.dataset.id", "")
    wrapper = next((w.removeprefix("{img_dspath}/") for w in fmt.split()
                    if w.startswith("{img_dspath}/")), "")
    entries = _tree_entries(cgit, gitlink_sha, [p for p in (image, wrapper) if p])
    img = entries.get(image)
    key = ""
    if img is not None and img.mode == "120000":
        key = os.path.basename(blob_texts(cgit, [img.sha])[0])
    url = a.input_store.clone_url(dsid) if dsid else modules.get(ds_rel, {}).get("url", "")
    return ContainerFacts(name, DatasetFacts(dsid, url, gitlink_sha, ds_rel), image, key, fmt,
                          wrapper, entries[wrapper].sha if wrapper in entries else "")


def gather(a: Analysis) -> Computation:
    """Every fact of the merged computation: the store's main, its merged jobs' run
    records (one ``git log`` for all), their result trees (one ``ls-tree`` per results
    folder), the state records on this host."""
    sgit, main = a.output_git, store_main(a)
    top = _tree_entries(sgit, main, [cfgmod.CONFIG_NAME, ".gitmodules", PLAN_FILE,
                                     MERGED_FILE, "code"])
    if cfgmod.CONFIG_NAME not in top or PLAN_FILE not in top:
        raise FairbigError("the output store's main holds no planned analysis",
                           "run 'fairbig plan', 'fairbig submit' and 'fairbig merge' first")
    cfg = cfgmod.from_partial(blob_texts(sgit, [top[cfgmod.CONFIG_NAME].sha])[0])
    modules = _submodules(sgit, top[".gitmodules"].sha) if ".gitmodules" in top else {}
    cont_rel = cfg.container.rpartition("/")[0]
    links = _tree_entries(sgit, main, [p for p in (cfg.inputs.path, cont_rel) if p])
    for p in (cfg.inputs.path, cont_rel):
        if p and (p not in links or links[p].mode != GITLINK):
            raise FairbigError(f"{p} is not a subdataset in the output store's main",
                               "check inputs.path and container in fairbig.yaml")
    in_mod = modules.get(cfg.inputs.path, {})
    inputs = DatasetFacts(in_mod.get("datalad-id", ""),
                          in_mod.get("datalad-url", in_mod.get("url", "")),
                          links[cfg.inputs.path].sha, cfg.inputs.path)
    container = _container(a, cfg.container, links[cont_rel].sha if cont_rel else main,
                           modules)
    code = ({e.path: e.sha for e in _tree_entries(sgit, main, ["code"], recursive=True)
             .values()} if "code" in top and top["code"].type == "tree" else {})
    merged = read_merged_rows(sgit, a.default_branch)
    jobs = _jobs(a, sgit, main, merged)
    when = int(git(sgit, "log", "-1", "--format=%ct", main).stdout.strip())
    analysis = DatasetFacts(a.dataset_id, a.output_store.clone_url(a.dataset_id), main)
    return Computation(analysis, when, inputs, container, cfg.command, code,
                       top["code"].sha if "code" in top else "", top[PLAN_FILE].sha,
                       top[cfgmod.CONFIG_NAME].sha, _encryption(sgit, cfg.encryption.keys),
                       jobs)


def _jobs(a: Analysis, sgit: Path, main: str,
          merged: dict[str, tuple[str, str]]) -> list[JobFacts]:
    commits = _commits(sgit, sorted({c for _, c in merged.values() if c}))
    records = {j: run_record(commits[c][2]) if c in commits else {}
               for j, (_, c) in merged.items()}
    outputs = {o.rstrip("/") for r in records.values() for o in r.get("outputs") or []}
    trees: dict[str, tuple[str, str]] = {}
    for parent in sorted({str(PurePosixPath(o).parent) for o in outputs}):
        for e in ls_tree(sgit, main, parent + "/"):
            trees[e.path] = (e.type, e.sha)
    states = read_records(paths(a)[0])
    out = []
    for jid, (state, commit) in sorted(merged.items()):
        name, when, _ = commits.get(commit, ("", 0, ""))
        rec = records[jid]
        s = states.get(jid)
        mine = s if s and s.input_state == state and s.status == "done" else None
        out.append(JobFacts(jid, commit, name, when, state, rec,
                            {o.rstrip("/"): trees[o.rstrip("/")] for o in rec.get("outputs")
                             or [] if o.rstrip("/") in trees}, mine))
    return out


# ------------------------------------------------------------------ writing

@dataclass
class ExportOutcome:
    crate: str
    metadata_bytes: int
    commit: str
    jobs: int
    entities: dict[str, int]
    seconds: float


def entity_counts(doc: dict) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for e in doc["@graph"]:
        types = e["@type"] if isinstance(e["@type"], list) else [e["@type"]]
        counts.update(types)
    return dict(sorted(counts.items()))


def dumps(doc: dict) -> str:
    """One entity per line: ``json`` encodes in C only without ``indent`` (the pure-Python
    indenting encoder took most of the export's time at 42k jobs), and a line per entity
    still reads and diffs well."""
    graph = ",\n".join(json.dumps(e, ensure_ascii=False) for e in doc["@graph"])
    return (f'{{"@context": {json.dumps(doc["@context"])},\n"@graph": [\n{graph}\n]}}\n')


def write_crate(target: Path, doc: dict) -> Path:
    """Write ``ro-crate-metadata.json`` into ``target`` atomically: a reader never sees
    half a file, and a failure leaves the previous crate (if any) in place."""
    if target.exists() and not target.is_dir():
        raise FairbigError(f"{target} exists and is not a directory",
                           "give a directory for the crate")
    target.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ro-crate-", dir=target)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(dumps(doc))
        os.replace(tmp, target / METADATA)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target / METADATA


def export_ro_crate(a: Analysis, target: Path, license_id: str = "") -> ExportOutcome:
    start = time.monotonic()
    comp = gather(a)
    if not comp.jobs:
        raise FairbigError("no merged job in the output store's main",
                           "run 'fairbig merge' first; the crate describes merged results")
    doc = build_graph(comp, license_id)
    path = write_crate(target, doc)
    return ExportOutcome(str(target), path.stat().st_size, comp.analysis.version,
                         len(comp.jobs), entity_counts(doc),
                         round(time.monotonic() - start, 2))
