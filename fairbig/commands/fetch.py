"""``fairbig fetch``: one job's result file out of the encrypted output store.

The file's annex key is read from the job's branch (or the merged main) in
the store's bare repository; its content is fetched from the encrypted storage
into a reader clone kept in the git-ignored work area (never into the analysis
dataset, whose git-annex branch is published) and copied out. Decryption needs
the lab's secret key in the caller's keyring; without it the command fails at
once instead of after a slow failed transfer.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .. import dl
from ..annexkeys import got_content
from ..contract import JOB_REF_PREFIX, OUTPUT_STORAGE
from ..dataset import Analysis
from ..errors import FairbigError
from ..gitcmd import SYMLINK, git, ls_tree
from ..gpg import require_secret_key
from ..ids import job_id_problem, path_problem
from ..proc import run
from ..storeview import read_finished
from .plan import current_jobs


def result_ref(a: Analysis, job: str) -> str:
    """The ref holding the job's newest result: its branch, else the merged main."""
    finished = read_finished(a.output_git, a.default_branch)
    if job in finished.branches:
        return JOB_REF_PREFIX + job
    if job in finished.merged:
        return f"refs/heads/{a.default_branch}"
    raise FairbigError(f"job {job} has no result in the output store",
                       "run it first ('fairbig submit' or the Snakemake workflow)")


def _reader(a: Analysis) -> Path:
    """A clone of the output store that only reads (created once, under a lock)."""
    import datalad.api as dapi

    reader = a.work / "reader"
    reader.parent.mkdir(parents=True, exist_ok=True)
    with open(a.work / ".reader.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (reader / ".git").exists():
            dl.call(dapi.clone, source=a.output_store.clone_url(a.dataset_id),
                    path=str(reader), hint="check that the output store is reachable")
    return reader


def fetch(a: Analysis, job: str, path: str, dest: Path) -> Path:
    """Copy ``<area>/<path>`` of the job's result to ``dest``, decrypted; the area is the
    job's outputs in the plan (``results/<job>``, or ``results/sub-XX/ses-YY`` in the
    BIDS-derivatives layout)."""
    for value, problem in ((job, job_id_problem(job)), (path, path_problem(path))):
        if problem:
            raise FairbigError(f"invalid job or result path {value!r}: {problem}",
                               "give a job ID from the plan and a path below its results")
    area = next((j.outputs[0] for j in current_jobs(a) if j.job_id == job), None)
    if area is None:
        raise FairbigError(f"job {job} is not in the plan", "give a job ID from the plan "
                           "('fairbig status' lists them)")
    ref = result_ref(a, job)
    rel = f"{area}/{path}"
    entry = next(ls_tree(a.output_git, ref, rel), None)
    if entry is None:
        raise FairbigError(f"job {job}'s result has no file {path}",
                           f"list them with 'git ls-tree -r {ref}' in the output store")
    mode, sha = entry.mode, entry.sha
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    os.close(fd)
    try:
        if mode != SYMLINK:   # kept in git: plain text, never encrypted
            Path(tmp).write_bytes(git(a.output_git, "cat-file", "blob", sha, text=False).stdout)
        else:
            require_secret_key(a.config.encryption.keys)
            key = os.path.basename(git(a.output_git, "cat-file", "blob", sha).stdout.strip())
            reader = _reader(a)
            # A job pushes its content, then only its branch: the store's location log
            # learns of the content at the merge. git-annex gets only from remotes the
            # log names, so the reader (which never pushes) is told first.
            uuid = run(["git", "config", f"remote.{OUTPUT_STORAGE}.annex-uuid"], cwd=reader).stdout
            run(["git", "annex", "setpresentkey", key, uuid.strip(), "1"], cwd=reader)
            src = got_content(reader, key, "--from", OUTPUT_STORAGE, hint="check the output "
                              "store and that the lab's secret key can decrypt")
            shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dest
