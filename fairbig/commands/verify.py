"""``fairbig verify``: read stored results back with the lab key and check each
against its annex key.

``merge`` and ``rerun`` only look at keys and presence: a stored object with one
flipped byte passes both, and ``fsck --fast`` too. Here git-annex's own
``fsck --from output-storage`` downloads and decrypts every object and compares
it with its key. Decrypting needs the lab's secret key, so that is checked first;
once it is known to be here, an object that will not decrypt (gpg then often
says "No secret key") is damaged, and is reported as such.

Which files: a job's current result, that is the files under its outputs in its
branch (done, not merged yet) or else in the store's main (merged), read from
the store's repository without writing to it. fsck is given them as ONE tree
(written to a temporary object directory; the store's objects are borrowed as
an alternate), so one git-annex process checks every file.

Repair (``--repair``): damaged objects are dropped from the storage (a job's
upload would otherwise find "its" key present and skip it), the jobs run again
here with the local backend, the new results are merged, and verified again.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import ui
from ..annexkeys import keys_of, missing_in
from ..contract import OUTPUT_STORAGE
from ..dataset import Analysis
from ..errors import FairbigError
from ..gitcmd import ls_tree
from ..gpg import require_secret_key
from ..proc import run
from ..storeview import read_finished
from ..sync import OUTPUT
from .plan import current_jobs

CORRUPT, MISSING = "corrupt", "missing"
PATHSPECS = 1000  # more outputs than this: list the whole tree and filter


@dataclass(frozen=True)
class StoredFile:
    job_id: str
    path: str
    key: str
    blob: str  # the annex link's blob in the store's repository


@dataclass(frozen=True)
class Problem:
    job_id: str
    path: str
    key: str
    problem: str  # CORRUPT or MISSING
    detail: str

    def line(self) -> str:
        return f"{self.job_id}  {self.path}  {self.problem}: {self.detail}"


@dataclass
class VerifyReport:
    jobs: list[str]
    files: int
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_jobs(self) -> list[str]:
        return sorted({p.job_id for p in self.problems})

    def to_json(self) -> dict:
        return {"ok": self.ok, "jobs": self.jobs, "files": self.files,
                "problems": [asdict(p) for p in self.problems], "seconds": self.seconds}


def with_results(a: Analysis) -> list[str]:
    """Jobs of the plan whose result is in the store (merged, or on their branch)."""
    finished = read_finished(a.output_git, a.default_branch)
    return [j.job_id for j in current_jobs(a)
            if j.job_id in finished.merged or j.job_id in finished.branches]


def stored_files(a: Analysis, job_ids: Sequence[str]) -> list[StoredFile]:
    """Annexed files of each job's current result, read from the store's repository."""
    sgit, main = a.output_git, f"refs/heads/{a.default_branch}"
    finished = read_finished(sgit, a.default_branch)
    jobs = {j.job_id: j for j in current_jobs(a)}
    unknown = [j for j in job_ids if j not in jobs]
    if unknown:
        raise FairbigError(f"not in the plan: {', '.join(unknown[:5])}",
                           "check the IDs with 'fairbig status'")
    sources: dict[str, list[str]] = {}  # revision -> jobs read from it
    for jid in job_ids:
        branch = finished.branches.get(jid)
        if branch and (branch[1] == jobs[jid].input_state or jid not in finished.merged):
            sources.setdefault(branch[0], []).append(jid)
        elif jid in finished.merged:
            sources.setdefault(main, []).append(jid)
        else:
            raise FairbigError(f"job {jid} has no result in the output store",
                               "verify done or merged jobs ('fairbig status' lists them)")
    files: list[StoredFile] = []
    for rev, ids in sources.items():
        owner = {o: jid for jid in ids for o in jobs[jid].outputs}
        # many jobs: one listing of the whole tree beats thousands of pathspecs
        spec = list(owner) if len(owner) <= PATHSPECS else []
        mine = {e.path: (e, jid) for e in ls_tree(sgit, rev, *spec, recursive=True)
                if (jid := _owner(e.path, owner))}
        for f in keys_of(sgit, [(e.path, e.mode, e.sha) for e, _ in mine.values()]):
            entry, jid = mine[f.path]
            files.append(StoredFile(jid, f.path, f.key, entry.sha))
    return sorted(files, key=lambda f: (f.job_id, f.path))


def _owner(path: str, owner: dict[str, str]) -> str:
    """The job whose output ``path`` is or lies in; "" for none."""
    while path:
        if path in owner:
            return owner[path]
        path = path.rpartition("/")[0]
    return ""


def check(a: Analysis, files: Sequence[StoredFile]) -> list[Problem]:
    """Missing (the storage does not have the object) or corrupt (it does, but the
    object does not decrypt to content matching its key), per file."""
    keys = sorted({f.key for f in files})
    ui.step(f"verify: asking {OUTPUT_STORAGE} for {len(keys)} object(s)")
    missing = set(missing_in(a.root, OUTPUT_STORAGE, keys))
    present = [f for f in files if f.key not in missing]
    failed = _fsck_all(a, present)
    reasons = {k: _recheck(a, k, msg) for k, msg in sorted(failed.items())}
    problems = [Problem(f.job_id, f.path, f.key, MISSING,
                        f"no object in {OUTPUT_STORAGE} (the store lost it)")
                for f in files if f.key in missing]
    problems += [Problem(f.job_id, f.path, f.key, CORRUPT, reasons[f.key])
                 for f in present if reasons.get(f.key)]
    return sorted(problems, key=lambda p: (p.job_id, p.path))


def _fsck_all(a: Analysis, files: Sequence[StoredFile]) -> dict[str, str]:
    """Key -> first error of one ``git annex fsck --from`` over all ``files``."""
    if not files:
        return {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fairbig-verify-") as tmp:
        objects = Path(tmp) / "objects"
        objects.mkdir()
        borrowed = os.pathsep.join([str(a.root / ".git" / "objects"),
                                    str(a.output_git / "objects")])
        # the tree lands in the temporary object directory; nothing is written to
        # the store or to the analysis dataset's objects
        tree_env = {"GIT_OBJECT_DIRECTORY": str(objects), "GIT_INDEX_FILE": f"{tmp}/index",
                    "GIT_ALTERNATE_OBJECT_DIRECTORIES": borrowed}
        lines = "".join(f"120000 {f.blob}\tf/{i}\n" for i, f in enumerate(files))
        run(["git", "update-index", "--index-info"], cwd=a.root, env=tree_env, input=lines)
        tree = run(["git", "write-tree"], cwd=a.root, env=tree_env).stdout.strip()
        env = {**os.environ, "GIT_ALTERNATE_OBJECT_DIRECTORIES":
               os.pathsep.join([str(objects), borrowed])}
        cmd = ["git", "annex", "fsck", "--from", OUTPUT_STORAGE, "--json", "--json-error-messages",
               "--branch", tree]
        with ui.progress(len(files), "verify: fetched and decrypted") as bar, \
                tempfile.TemporaryFile() as err, \
                subprocess.Popen(cmd, cwd=a.root, env=env, stdout=subprocess.PIPE,
                                 stderr=err, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                if not line.startswith("{"):
                    continue
                rec = json.loads(line)
                if not rec.get("success"):
                    msgs = rec.get("error-messages") or ["failed"]
                    failed.setdefault(rec.get("key", ""), msgs[0])
                bar.advance(1, f"({len(failed)} bad)" if failed else "")
        if proc.returncode != 0 and not failed:
            err.seek(0)
            raise FairbigError(f"git annex fsck --from {OUTPUT_STORAGE} failed: "
                               f"{_last_line(err.read().decode(errors='replace'))}",
                               "check that the output store is reachable")
    return failed


def _recheck(a: Analysis, key: str, first: str) -> str:
    """Why ``key`` failed, from a check of it alone (its own gpg message); empty when
    it passes now (a passing hiccup is not damage)."""
    res = run(["git", "annex", "fsck", "--from", OUTPUT_STORAGE, "--key", key, "--json",
               "--json-error-messages"], cwd=a.root, check=False)
    if res.returncode == 0:
        return ""
    gpg = [ln.strip() for ln in res.stderr.splitlines() if ln.strip().startswith("gpg:")]
    if gpg:
        return (f"the stored object does not decrypt although the lab key is here "
                f"({gpg[-1]}): it is damaged")
    msgs = [m for ln in res.stdout.splitlines() if ln.startswith("{")
            for m in json.loads(ln).get("error-messages", [])]
    why = msgs[-1] if msgs else _last_line(res.stderr) or first
    return f"the stored object does not match its key ({why.split(': ', 1)[-1]})"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def verify(a: Analysis, job_ids: Sequence[str]) -> VerifyReport:
    clock = time.monotonic()
    require_secret_key(a.config.encryption.keys)
    files = stored_files(a, job_ids)
    ui.step(f"verify: {len(files)} file(s) of {len(job_ids)} job(s)")
    rep = VerifyReport(list(job_ids), len(files), check(a, files))
    rep.seconds = round(time.monotonic() - clock, 2)
    return rep


def drop_damaged(a: Analysis, problems: Sequence[Problem]) -> None:
    """Remove damaged objects from the storage, so the jobs' uploads replace them."""
    keys = sorted({p.key for p in problems if p.problem == CORRUPT})
    if keys:
        run(["git", "annex", "drop", "--from", OUTPUT_STORAGE, "--force", "--batch-keys"],
            cwd=a.root, input="".join(k + "\n" for k in keys),
            hint="check that the output store is writable")


def repair(a: Analysis, rep: VerifyReport) -> VerifyReport:
    """Run the damaged jobs again here, merge their results, verify them again."""
    from ..dataset import paths
    from .merge import merge
    from .submit import submit

    jobs = rep.bad_jobs
    a.output_store.require_writable(OUTPUT)
    drop_damaged(a, rep.problems)
    ui.step(f"repair: running {len(jobs)} job(s) again here: {' '.join(jobs[:10])}")
    submit(a, "local", only=set(jobs), again=True)
    ui.step("repair: merging the new result(s)")
    merge(a)
    after = verify(a, jobs)
    if not after.ok:
        logs = paths(a)[1]
        raise FairbigError(f"repair left {len(after.problems)} file(s) of "
                           f"{', '.join(after.bad_jobs[:5])} unverified; first: "
                           f"{after.problems[0].line()}",
                           f"see the job logs in {logs} and 'fairbig status'")
    return after
