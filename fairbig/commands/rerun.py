"""``fairbig rerun JOB``: recompute one job from its run record and compare.

The rerun happens in a fresh clone of the output store with this machine's
container runtime, exactly as ``datalad rerun`` replays the record. Outputs
are compared by annex key, so the original results never need to be
fetched (or decrypted): the same bytes give the same key.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .. import dl, sandbox
from ..contract import work_base
from ..dataset import Analysis
from ..errors import FairbigError
from ..gitcmd import ls_tree
from ..gittree import git_dir_of
from ..proc import run
from ..storeview import read_finished, read_merged_rows
from .compare import compare

VERDICTS = ("identical", "differs", "missing", "extra")


@dataclass
class RerunResult:
    job_id: str
    commit: str
    files: dict[str, str] = field(default_factory=dict)   # path -> verdict
    clone: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.files) and all(v == "identical" for v in self.files.values())

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for x in self.files.values() if x == v) for v in VERDICTS}


def job_commit(a: Analysis, job_id: str) -> str:
    """The commit holding ``job_id``'s run record: its branch, or as merged into main."""
    finished = read_finished(a.output_git, a.default_branch)
    if job_id in finished.branches:
        return finished.branches[job_id][0]
    merged = read_merged_rows(a.output_git, a.default_branch)
    if job_id in merged and merged[job_id][1]:
        return merged[job_id][1]
    raise FairbigError(f"no result of job {job_id} in the output store",
                       "check the ID with 'fairbig status'; only done or merged jobs rerun")


def outputs_of(clone: Path, commit: str, paths: list[str]) -> dict[str, str]:
    """Output path -> annex key (or git blob) of ``commit``, from the tree alone."""
    from ..annexkeys import keys_of

    git_dir = git_dir_of(clone)
    entries = [(e.path, e.mode, e.sha) for e in ls_tree(git_dir, commit, *paths, recursive=True)]
    plain = {path: f"git:{sha}" for path, _, sha in entries}
    plain.update({f.path: f.key for f in keys_of(git_dir, entries)})
    return plain


def rerun_job(a: Analysis, job_id: str, keep: bool = False,
              workdir: Path | None = None) -> RerunResult:
    import datalad.api as dapi

    commit = job_commit(a, job_id)
    tmp = Path(tempfile.mkdtemp(prefix=f"fairbig-rerun-{job_id}-",
                                dir=workdir or work_base(a.config.job.workdir)))
    clone = tmp / "ds"
    result = RerunResult(job_id, commit, clone=str(clone) if keep else "")
    try:
        dl.call(dapi.clone, source=a.output_store.clone_url(a.dataset_id), path=str(clone),
                hint="check that the output store is reachable")
        # Subdatasets (inputs, container) live in the input store, not the output store.
        run(["git", "config", "datalad.get.subdataset-source-candidate-100fairbiginput",
             f"{a.input_store.url}#{{id}}"], cwd=clone)
        run(["git", "fetch", "-q", "origin", commit], cwd=clone)
        run(["git", "checkout", "-q", "-b", "fairbig-rerun", commit], cwd=clone)
        record = run(["git", "log", "-1", "--format=%B", commit], cwd=clone).stdout
        declared = _declared_outputs(clone, record)
        before = outputs_of(clone, commit, declared)
        with sandbox.environment(a.config.runtime):
            dl.call(dapi.rerun, revision=commit, dataset=str(clone),
                    hint="the recorded command failed on this machine; rerun with --keep "
                    "and look at the clone")
        after = outputs_of(clone, "HEAD", declared)
        result.files = verdicts(before, after)
    finally:
        if not keep:
            run(["chmod", "-R", "u+w", str(tmp)], check=False)
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _declared_outputs(clone: Path, message: str) -> list[str]:
    """The outputs of the commit's run record, read by datalad itself (records kept in a
    sidecar file under .datalad/runinfo included)."""
    from datalad.api import Dataset
    from datalad.local.rerun import get_run_info

    try:
        _, record = get_run_info(Dataset(str(clone)), message)
    except ValueError as exc:
        raise FairbigError(f"the job's run record cannot be read: {exc}",
                           "only commits made by 'datalad containers-run' can be rerun") from exc
    if not record:
        raise FairbigError("the job's commit carries no run record",
                           "only commits made by 'datalad containers-run' can be rerun")
    outputs = record.get("outputs") or []
    if not outputs:
        raise FairbigError("the run record declares no outputs", "nothing to compare")
    return outputs


def verdicts(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """Per file: identical / differs / missing (not reproduced) / extra (new)."""
    comp = compare(before, after)
    names = {"identical": "identical", "differs": "differs", "undecidable": "differs",
             "only-in-A": "missing", "only-in-B": "extra"}
    return {path: names[status] for path, status in comp.files.items()}


def sample(ids: list[str], n: int, seed: int) -> list[str]:
    return sorted(random.Random(seed).sample(sorted(ids), min(n, len(ids))))
