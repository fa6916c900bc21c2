"""Steps of the job body that bash cannot do safely, run as ``python -m fairbig.jobstep``.

The job body (templates/job.sh.j2) calls these with the venv's python:

- ``record``: write the job's state record with the one schema of
  :class:`fairbig.jobstate.JobRecord` (``printf`` cannot escape a ``"``);
- ``checkout``: make the first commit of the job's branch, the plan commit without
  the results of all jobs (:func:`fairbig.treemerge.without_path`), check it out as
  the job's branch, then refuse output paths that leave the clone, textually or
  through a symlink, before anything is deleted;
- ``push``: push the job branch under the store's push lock, only if no
  newer result is there (otherwise the attempt is *superseded*);
- ``install``: install the datasets the job reads with git and get their content
  (:mod:`fairbig.jobinstall`), instead of a datalad process, measured;
- ``measure``: run a step's command and append what it used to the job's usage
  file (:mod:`fairbig.usage`), which ``record`` folds into the record.

Every call but ``record`` takes ``--record STATE_DIR`` and the record's fields: it
first records its step as running, so a step costs one Python start, not two (each
about 60 ms of CPU; a job made twelve, now seven). Imports stay in the
standard library and fairbig's light modules (no datalad, no click), the heavier
ones (git layer, sockets) only in the call that needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import usage
from .contract import JOB_MESSAGE_RE, JOB_REF_PREFIX, MERGED_FILE, PLAN_FILE
from .ids import path_problem
from .jobstate import JobRecord

SUPERSEDED = 10  # exit code of ``push`` when a newer result is in the store
LOCK_TIMEOUT = 11  # exit code of ``push`` when the push lock stayed held too long
LOCK_NOTICE_AFTER = 10.0  # seconds of waiting before the first log line
LOCK_NOTICE_EVERY = 300.0


def log(job_id: str, text: str) -> None:
    """A line for the job's log, in the job body's format; on stderr, because the job
    body captures stdout (the reason an attempt was superseded)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"{stamp} fairbig[{job_id}] {text}", file=sys.stderr, flush=True)


# -- record ---------------------------------------------------------------------------

def write_record(state_dir: Path, record: JobRecord) -> Path:
    """Write ``<state_dir>/<job>.json`` via a temp file and rename: never half a record."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / f"{record.job_id}.json"
    tmp = state_dir / f".{record.job_id}.json.{os.getpid()}"
    tmp.write_text(json.dumps(dataclasses.asdict(record)) + "\n")
    os.replace(tmp, target)
    return target


def _record_from_args(values: dict[str, str], cpu_of: int | None = None) -> JobRecord:
    """``usage`` names the job's usage file; ``cpu_of`` is the job shell's PID, whose
    CPU time with its children's is the job's (every process it ran, measured or not)."""
    kwargs: dict[str, object] = {}
    for f in dataclasses.fields(JobRecord):
        raw = values.get(f.name)
        if raw is None:
            continue
        if f.name == "usage":
            kwargs[f.name] = usage.read(Path(raw)) if raw else {}
        elif f.name == "exit_code":
            kwargs[f.name] = None if raw in ("", "null") else int(raw)
        elif f.type in ("int", int):
            kwargs[f.name] = int(raw)
        else:
            kwargs[f.name] = raw
    kwargs.setdefault("updated", int(time.time()))
    steps = kwargs.get("usage")
    if steps and "started" in kwargs:
        wall = int(kwargs["updated"]) - int(kwargs["started"])  # type: ignore[call-overload]
        cpu = usage.process_cpu(cpu_of) if cpu_of else None
        steps[usage.JOB] = usage.job_total(steps, wall, cpu)  # type: ignore[index]
    return JobRecord(**kwargs)  # type: ignore[arg-type]


# -- outputs --------------------------------------------------------------------------

def output_problem(root: Path, path: str) -> str | None:
    """Why ``path`` may not be an output of a job in the clone at ``root``, or None.

    Checked for what the path *is*: every component that exists must be a real
    directory (or, the last one, a file or a link to annexed content inside the
    clone); a component that is a symlink would make ``git rm``/``rm`` or the
    pipeline act on whatever it points at, possibly outside the dataset.
    """
    problem = path_problem(path)
    if problem:
        return f"output path '{path}' in the plan leaves the dataset: it {problem}"
    base = root.resolve()
    here = base
    parts = path.split("/")
    for i, part in enumerate(parts):
        here = here / part
        if not here.is_symlink():
            continue
        shown = "/".join(parts[:i + 1])
        target = os.readlink(here)
        if i == len(parts) - 1 and here.resolve().is_relative_to(base / ".git" / "annex"):
            continue  # an annexed file of an earlier run
        return (f"output path '{path}' goes through the symlink '{shown}' (-> {target}); "
                "refused before deleting anything")
    return None


# -- push -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StoreView:
    """What the output store holds for one job, read under the push lock."""

    tip: str               # the job branch's commit, "" if there is none
    tip_state: str         # the input state its commit message names
    merged_state: str      # the input state merged into main, "" if none
    wanted_state: str | None  # what the newest published plan wants; None: not known


def superseded_by(mine: str, view: StoreView, replace: bool = False) -> str | None:
    """Why an attempt on input state ``mine`` must not reach the store, or None.

    An attempt is stale when the newest plan wants another input state (or no
    longer has the job); a result for the same input state already merged or
    on the branch stays (the first one wins: a late duplicate would replace a
    result that others may already have checked, or fail the next merge) unless
    the user forced this attempt to replace it (``replace``).
    """
    if view.wanted_state is not None and view.wanted_state != mine:
        wanted = view.wanted_state or "nothing (the job left the plan)"
        return f"the newest plan wants input {wanted}"
    if replace:
        return None
    if view.merged_state == mine:
        return f"a result for input {mine} is already merged"
    if view.tip and view.tip_state == mine:
        return f"a result for input {mine} is already on the branch ({view.tip[:12]})"
    return None


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """A read of the store whose failure is an answer (no such ref or file yet). The git
    layer (datasalad) is imported here: only this step asks git, and every other step,
    some ten per job, starts faster without it."""
    from .gitcmd import git

    return git(git_dir, *args, check=False)


def _row(table: str, job_id: str) -> list[str] | None:
    for line in table.splitlines()[1:]:
        fields = line.split("\t")
        if fields[0] == job_id:
            return fields
    return None


def read_store(store: Path, job_id: str, main: str, plan_commit: str) -> StoreView:
    from .jobtable import HEADER

    ref = JOB_REF_PREFIX + job_id
    tip = _git(store, "rev-parse", "--verify", "-q", ref).stdout.strip()
    tip_state = ""
    if tip:
        m = JOB_MESSAGE_RE.search(_git(store, "log", "-1", "--format=%s", tip).stdout)
        tip_state = m.group(2) if m and m.group(1) == job_id else ""
    head = _git(store, "rev-parse", "--verify", "-q", f"refs/heads/{main}").stdout.strip()
    merged_state, wanted = "", None
    if head:
        merged = _row(_git(store, "cat-file", "blob", f"{head}:{MERGED_FILE}").stdout, job_id)
        merged_state = merged[1] if merged and len(merged) > 1 else ""
        # the store's plan is authoritative only if it is at least as new as ours
        if _git(store, "merge-base", "--is-ancestor", plan_commit, head).returncode == 0:
            plan = _git(store, "cat-file", "blob", f"{head}:{PLAN_FILE}")
            if plan.returncode == 0:
                row = _row(plan.stdout, job_id)
                wanted = row[HEADER.index("input_state")] if row else ""
    return StoreView(tip, tip_state, merged_state, wanted)


class LockTimeout(Exception):
    pass


def acquire(lock_file: Path, timeout: float, job_id: str) -> int:
    """Take the store's push lock (flock, as flock(1) does), logging while waiting.

    The holder writes who it is into the lock file, so a waiter can say whom it
    waits for. Raises LockTimeout after ``timeout`` seconds.
    """
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
    start = time.monotonic()
    notice = LOCK_NOTICE_AFTER
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            waited = time.monotonic() - start
            if waited >= notice:
                log(job_id, f"waiting for the push lock {lock_file} held since "
                    f"{_holder(lock_file)} ({int(waited)} s so far, timeout {int(timeout)} s)")
                notice += LOCK_NOTICE_EVERY
            if waited >= timeout:
                os.close(fd)
                raise LockTimeout(_holder(lock_file)) from None
            time.sleep(min(1.0, max(0.05, timeout - waited)))
    import socket  # only the push needs it
    host = socket.gethostname()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                  f"(job {job_id} on {host}, pid {os.getpid()})\n".encode(), 0)
    return fd


def _holder(lock_file: Path) -> str:
    try:
        text = lock_file.read_text().strip()
    except OSError:
        text = ""
    return text or "an unknown time (a holder that does not say)"


def push(args: argparse.Namespace, values: dict[str, str]) -> int:
    """Push the branch; on success or superseded, record the next step (cleanup) as
    running, which the job body would otherwise start Python for."""
    rc = _push(args)
    if args.record and rc in (0, SUPERSEDED):
        write_record(Path(args.record), _record_from_args(
            {**values, "status": "running", "exit_code": "", "step": args.next_step},
            args.cpu_of))
    return rc


def _push(args: argparse.Namespace) -> int:
    store, job_id = Path(args.store), args.job_id
    ref = JOB_REF_PREFIX + job_id
    try:
        fd = acquire(Path(args.lock_file), args.timeout, job_id)
    except LockTimeout as exc:
        print(f"fairbig job: the push lock {args.lock_file} is still held after "
              f"{int(args.timeout)} s (held since {exc}); raise job.push_lock_timeout in "
              "fairbig.yaml or remove a stale holder", file=sys.stderr)
        return LOCK_TIMEOUT
    try:
        for _ in range(3):
            view = read_store(store, job_id, args.main, args.plan_commit)
            why = superseded_by(args.input_state, view, args.replace == "1")
            if why:
                print(why)
                return SUPERSEDED
            proc = subprocess.run(
                ["git", "push", "-q", f"--force-with-lease={ref}:{view.tip}", args.remote,
                 f"{ref}:{ref}"], check=False)
            if proc.returncode == 0:
                return 0
            log(job_id, "the branch moved while pushing; looking again")
        print(f"fairbig job: could not push {ref}: it kept moving", file=sys.stderr)
        return 1
    finally:
        os.close(fd)


# -- command line ---------------------------------------------------------------------

def checkout(root: Path, plan_commit: str, results: str, job_id: str, branch: str,
             outputs: list[str]) -> str:
    """Check out the job's branch at :func:`base_commit` and check its output paths
    there (:func:`output_problem`); the base commit. Raises SystemExit (exit code 2)
    for an output path that may not be one, before anything is deleted."""
    base = base_commit(root, plan_commit, results, job_id)
    from .proc import run
    run(["git", "checkout", "-q", "-b", branch, base], cwd=root)
    for path in outputs:
        problem = output_problem(root, path)
        if problem:
            print(f"fairbig job: {problem}", file=sys.stderr)
            raise SystemExit(2)
    return base


def base_commit(root: Path, plan_commit: str, results: str, job_id: str) -> str:
    """The commit a job's branch starts from: the plan commit's tree without ``results``.

    The job's run commit then holds its own results only, not a copy of the
    results folder of every job merged before it: a merge reads, compares and
    fetches what the job wrote (issue 20), and the run record's parent is
    still exactly what the pipeline saw (no results of an earlier run either:
    the job owns its outputs whole).
    """
    from .gitcmd import git  # git layer: only this step needs it
    from .treemerge import without_path
    tree = without_path(root / ".git", f"{plan_commit}^{{tree}}", results)
    message = (f"fairbig job {job_id}: start from plan commit {plan_commit[:12]}\n\n"
               f"Its tree without {results}/: the next commit holds this job's results "
               "only.\n")
    return git(root / ".git", "commit-tree", tree, "-p", plan_commit, "-m",
               message).stdout.strip()


def _record_arguments(parser: argparse.ArgumentParser, record: bool = True) -> None:
    """One option per field of JobRecord, and the job shell's PID; ``record``: also
    ``--record STATE_DIR``, where the call first records its step as running."""
    for f in dataclasses.fields(JobRecord):
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name)
    parser.add_argument("--cpu-of", type=int, help="the job shell's PID: its CPU time and "
                        "its children's is the job's")
    if record:
        parser.add_argument("--record", metavar="STATE_DIR", help="first record the step "
                            "as running there, with the record's fields as given (a Python "
                            "start less per step)")


def _install(args: argparse.Namespace) -> int:
    """``jobstep install``, run in the measured child (forked: no Python start of its
    own); the git layer and stores are imported there, counted in the step."""
    from .jobinstall import install
    templates = Path(args.templates) if args.templates else None
    for ds in install(Path.cwd(), args.store, args.annex_version, args.paths,
                      args.shared or (), templates):
        print(f"fairbig job: {ds} is in no store of the job's; installed by datalad",
              file=sys.stderr)
    return 0


def _measured(args: argparse.Namespace, what: list[str] | Callable[[], int]) -> int:
    if not args.step or not args.usage:
        raise SystemExit("fairbig job: a measured step needs --step and --usage")
    rc, used = usage.measure(what)
    usage.append(Path(args.usage), args.step, used)
    return rc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fairbig.jobstep")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="write the job's state record")
    rec.add_argument("state_dir")
    _record_arguments(rec, record=False)
    m = sub.add_parser("measure", help="run a step's command (--step), append what it used "
                       "to the job's usage file (--usage)")
    _record_arguments(m)
    m.add_argument("cmd", nargs="+")
    p = sub.add_parser("push", help="push the job branch unless a newer result is there")
    _record_arguments(p)
    for name in ("store", "remote", "lock-file", "plan-commit", "main"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--replace", default="", help="1: replace a result for the same input "
                   "state (a forced run)")
    p.add_argument("--next-step", default="cleanup", help="the step recorded as running "
                   "(--record) once the branch is pushed or the attempt superseded")
    c = sub.add_parser("checkout", help="commit the plan commit's tree without the results "
                       "folder on top of it, check it out as BRANCH, check the output "
                       "paths there, print the commit")
    _record_arguments(c)
    for name in ("plan-commit", "results", "branch"):
        c.add_argument(f"--{name}", required=True)
    c.add_argument("outputs", nargs="*")
    i = sub.add_parser("install", help="install the datasets of PATHS with git, get them "
                       "(measured as --step with --usage)")
    _record_arguments(i)
    i.add_argument("--store", action="append", required=True,
                   help="a store the job may install from and enable (repeatable)")
    i.add_argument("--annex-version", default="",
                   help="the pinned git-annex version whose init this may write for")
    i.add_argument("--shared", action="append", help="a path every job reads alike (the "
                   "container image): its dataset comes from a node-local template")
    i.add_argument("--templates", help="the node-local directory of those templates")
    i.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(JobRecord)}
    if args.command == "record":
        write_record(Path(args.state_dir), _record_from_args(values, args.cpu_of))
        return 0
    if args.record:
        running = {**values, "status": "running", "exit_code": ""}
        write_record(Path(args.record), _record_from_args(running, args.cpu_of))
    if args.command == "measure":
        return _measured(args, args.cmd)
    if args.command == "install":
        return _measured(args, lambda: _install(args))
    if args.command == "checkout":
        from .errors import FairbigError
        try:
            print(checkout(Path.cwd(), args.plan_commit, args.results, args.job_id,
                           args.branch, args.outputs))
        except FairbigError as exc:
            print(f"fairbig job: {exc}", file=sys.stderr)
            return 1
        return 0
    return push(args, values)


if __name__ == "__main__":
    sys.exit(main())
