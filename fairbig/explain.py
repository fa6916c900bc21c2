"""Why jobs failed, in a line a person can read, grouped by cause.

A job's log (``logs/<job>.log``) collects every attempt; each attempt starts with
a marker line ``=== attempt <run> <backend id> <time> ===`` (templates/job.sh.j2),
so only the current attempt's lines are ever shown as its failure. What a job
printed before its log began (a failing ``job.env_setup`` line, a tool missing on
the node, the scheduler's own complaint such as a time limit) is only in the
scheduler's output file of that attempt, in the submission's run directory.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

from .backends import get_backend
from .config import Config
from .contract import JOB_WORKDIR, RUNS
from .jobstate import Submission
from .states import PROBLEM_STATES, JobStatus

MARKER = re.compile(r"^=== attempt (\S+) ")
READ_BYTES = 256 * 1024  # of a log's end: attempts before that are history
# the job's own progress lines (log() in the job body)
OWN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:]+Z fairbig\[[^\]]*\] (.*)$")
# datalad result records ("get(ok): path (file) [message]") and its summary
RESULT = re.compile(r"^\s*[\w-]+\((ok|notneeded|impossible|error)\):")
SUMMARY = re.compile(r"^(action summary:|\s+[\w-]+ \((\w+: \d+(, )?)+\))$")
ERRORISH = re.compile(r"error|fail|cannot|can't|could not|not found|no such|denied|refused"
                      r"|fatal|traceback|killed|abort|invalid|unable|exceeded|time limit",
                      re.IGNORECASE)
MAX_CAUSE = 240


@dataclass(frozen=True)
class Attempt:
    """What the current attempt of a job printed, and the file a person should open."""

    early: list[str]    # the scheduler's output file: before the job's log began
    own: list[str]      # the job log's section of this attempt
    log: str

    @property
    def lines(self) -> list[str]:
        return self.early + self.own


def where(state: str, step: str) -> str:
    """"failed in step run"; a job without a step never ran its own first line."""
    return f"{state} in step {step}" if step else f"{state} before its log began"


@dataclass(frozen=True)
class Failure:
    job_id: str
    state: str
    step: str
    cause: str
    log: str
    tail: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return where(self.state, self.step)


@dataclass
class Group:
    """Jobs that failed the same way (same state, step and cause, IDs and numbers aside)."""

    state: str
    step: str
    cause: str          # the first job's own line
    jobs: list[str]
    log: str            # the first job's log

    @property
    def where(self) -> str:
        return where(self.state, self.step)


@dataclass
class Explanation:
    failures: list[Failure]
    groups: list[Group]

    def to_json(self) -> dict:
        return {"failures": {f.job_id: f.tail for f in self.failures},
                "causes": {f.job_id: {"step": f.step, "cause": f.cause, "log": f.log}
                           for f in self.failures},
                "groups": [asdict(g) for g in self.groups]}


class Runs:
    """The run directories of submissions (``work/runs/<stamp>-<backend>[-n]``), read once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._jobs: dict[Path, frozenset[str]] = {}

    @cached_property
    def dirs(self) -> list[tuple[float, Path]]:
        """(time the run was written, directory), oldest first."""
        out = []
        for jobs_txt in self.root.glob("*/jobs.txt"):
            try:
                out.append((jobs_txt.stat().st_mtime, jobs_txt.parent))
            except OSError:
                continue
        return sorted(out)

    def jobs(self, run: Path) -> frozenset[str]:
        if run not in self._jobs:
            try:
                self._jobs[run] = frozenset((run / "jobs.txt").read_text().split())
            except OSError:
                self._jobs[run] = frozenset()
        return self._jobs[run]

    def of(self, sub: Submission) -> Path | None:
        """The run directory of a submission: the newest of its backend that lists the
        job and was written before the scheduler took it (a later dry run is not it)."""
        found = None
        for written, run in self.dirs:
            if written > sub.submitted + 1:
                break
            parts = run.name.split("-")
            if len(parts) > 2 and parts[2] == sub.backend and sub.job_id in self.jobs(run):
                found = run
        return found


def read_end(path: Path) -> list[str]:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - READ_BYTES))
            return f.read().decode(errors="replace").splitlines()
    except OSError:
        return []


def sections(lines: list[str]) -> list[tuple[str, list[str]]]:
    """A log split at its attempt markers: (run name, lines); ``""`` for lines before
    the first marker (logs of jobs rendered before markers existed)."""
    out: list[tuple[str, list[str]]] = [("", [])]
    for line in lines:
        m = MARKER.match(line)
        if m:
            out.append((m.group(1), []))
        else:
            out[-1][1].append(line)
    return [s for s in out if s[0] or s[1]]


def attempt(log: Path, sub: Submission | None, run: Path | None,
            scheduler_file: Path | None) -> Attempt:
    """The current attempt's lines: what the scheduler caught before the job's log
    began, then the job log's section of this run. A run whose marker is missing from
    the log never got that far: its older sections are not shown as its failure."""
    parts = sections(read_end(log))
    early = read_end(scheduler_file) if scheduler_file else []
    if run is None or not (early or any(name for name, _ in parts)):
        # no submission known (an outside driver), or a log from before attempt markers
        own = parts[-1][1] if parts else []
    else:
        own = next((body for name, body in reversed(parts) if name == run.name), [])
    path = log if own or not early else scheduler_file
    return Attempt(early, own, str(path))


def cause_line(att: Attempt) -> str:
    """The first line that says what went wrong, datalad's result records left out.

    An error the scheduler caught before the job's log began wins (env_setup, a time
    limit); then, in the output of the job's failing step (after its last ``step``
    line), an error-looking line, else the last line printed (a pipeline's last
    word), else datalad's error record."""
    def plain(line: str) -> bool:
        return bool(line.strip()) and not (OWN_LINE.match(line) or RESULT.match(line)
                                           or SUMMARY.match(line))

    start = max((i + 1 for i, x in enumerate(att.own)
                 if (m := OWN_LINE.match(x)) and m.group(1).startswith("step ")), default=0)
    scope = att.own[start:]
    said = [x.strip() for x in scope if plain(x)]
    best = next(iter(
        [x.strip() for x in att.early if plain(x) and ERRORISH.search(x)]
        or [x for x in said if ERRORISH.search(x)] or said[-1:]
        or [x.strip() for x in scope
            if (m := RESULT.match(x)) and m.group(1) in ("error", "impossible")]), "")
    return best if len(best) <= MAX_CAUSE else best[:MAX_CAUSE - 1] + "…"


def group_key(f: Failure) -> tuple[str, str, str]:
    text = f.cause.replace(f.job_id, "<job>")
    text = re.sub(re.escape(JOB_WORKDIR) + r"<job>\.\w+", "<workdir>", text)
    text = re.sub(r"[0-9a-fA-F]{8,}|\d+", "#", text)
    return f.state, f.step, text


def explain(rows: Sequence[JobStatus], subs: dict[str, Submission], config: Config,
            work: Path, log_dir: Path, tail: int = 12) -> Explanation:
    """One cause line per failed or lost job (and its tail), and the causes grouped."""
    runs = Runs(work / RUNS)
    backends = {}
    failures = []
    for r in rows:
        if r.state not in PROBLEM_STATES:
            continue
        sub = subs.get(r.job_id)
        run = runs.of(sub) if sub else None
        early = None
        if sub and run:
            if sub.backend not in backends:
                backends[sub.backend] = get_backend(sub.backend, config)
            early = backends[sub.backend].output_file(run, sub)
        att = attempt(log_dir / f"{r.job_id}.log", sub, run, early)
        cause = cause_line(att) or r.detail or "no output of this attempt"
        said = [x for x in att.lines if not ((m := RESULT.match(x)) and m.group(1) in
                                             ("ok", "notneeded"))]
        failures.append(Failure(r.job_id, r.state, r.step, cause, att.log,
                                said[-tail:] if tail else []))
    groups: dict[tuple[str, str, str], Group] = {}
    for f in failures:
        key = group_key(f)
        if key in groups:
            groups[key].jobs.append(f.job_id)
        else:
            groups[key] = Group(f.state, f.step, f.cause, [f.job_id], f.log)
    ordered = sorted(groups.values(), key=lambda g: (-len(g.jobs), g.state, g.step))
    return Explanation(failures, ordered)
