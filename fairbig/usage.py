"""What a job's steps used: wall time, CPU time, peak memory and I/O, measured per step.

The job body runs each heavy step (clone, get, the containers-run call, the content
push) as ``python -m fairbig.jobstep measure --step S --usage FILE -- CMD…``, and the
container wrapper does the same around the runtime call alone (step ``container``).
:func:`measure` makes itself the *child subreaper* of everything CMD starts, so
processes that outlive their parent (git-annex leaves its ORA helpers to exit on their
own; bubblewrap forks the pipeline into a new PID namespace) are reaped by it and
counted: the kernel adds a reaped process's CPU time and I/O to its reaper's
``RUSAGE_CHILDREN`` and ``/proc/self/io``, and keeps the largest peak RSS among them.
That makes the figures exact (no sampling: a 100 ms spike counts) at the cost of one
Python start per step (about 30 ms).

Peak RSS is that of the largest single process, the figure a scheduler's memory
limit is first hit by for a pipeline that runs one big program at a time. Its floor is
about 19 MB: the kernel counts the measuring Python's own pages for the child until
the child's ``exec``, so a step that never grows past that shows the floor.

Each step appends one JSON line to FILE (``<state dir>/<job>.usage``, kept beside the
job's state record so a killed job's finished steps stay known); ``jobstep record``
folds the lines into :attr:`fairbig.jobstate.JobRecord.usage`. Standard library only:
it runs in every job.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

JOB = "job"              # the whole attempt (every process of the job body)
CONTAINER = "container"  # the runtime call inside step "run": not added to the job's sum
STEPS = ("clone", "get", "run", CONTAINER, "push-content")
PR_SET_CHILD_SUBREAPER = 36
ORPHAN_GRACE_S = 5.0     # how long orphans that still run after CMD are waited for
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass(frozen=True)
class Usage:
    """One step's (or the whole job's) resource use. ``read_mb``/``write_mb`` are the
    bytes that went to or came from storage (``/proc/<pid>/io``), None where the
    kernel does not report them."""

    wall_s: float
    cpu_s: float         # user + system, of every process of the step
    max_rss_mb: float    # the largest peak resident set of one process
    read_mb: float | None = None
    write_mb: float | None = None

    @classmethod
    def from_dict(cls, data: dict) -> Usage:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


def _io() -> dict[str, int]:
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def _mb(n: float) -> float:
    return round(n / 2**20, 3)


def _reap_orphans(deadline: float) -> None:
    """Wait for what CMD left running (reparented to us), until none is left or the
    deadline passes (then they are left to run; their usage is not counted)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)


def _call_in_child(call: Callable[[], int]) -> int:
    """Fork; the child runs ``call`` and exits with its code (SystemExit as Python
    reports it). A Python step measured without a Python start of its own: the
    measuring process already holds the interpreter and fairbig's modules."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    rc = 1
    try:
        rc = call()
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # the child must never return into the caller
        import traceback
        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(rc)


def measure(cmd: Sequence[str] | Callable[[], int]) -> tuple[int, Usage]:
    """Run ``cmd`` (a command line, or a function run in a forked child) and return its
    exit code and the usage of it and all it started.

    Signals sent to us (a scheduler's cancel) are passed on to ``cmd``.
    """
    import ctypes  # here: the job's other Python calls start without it

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    io_before = _io()
    start = time.monotonic()
    proc = None
    if callable(cmd):
        pid = _call_in_child(cmd)
    else:
        try:
            proc = subprocess.Popen(cmd)
        except OSError as exc:
            raise SystemExit(f"fairbig job: cannot run {cmd[0]}: {exc.strerror}") from None
        pid = proc.pid

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    rc = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if proc is not None:
        proc.returncode = rc  # reaped here: Popen must not wait for the PID again
    if rc < 0:
        rc = 128 - rc  # killed by a signal: the shell's convention
    wall = time.monotonic() - start
    _reap_orphans(time.monotonic() + ORPHAN_GRACE_S)
    io_after = _io()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # we had no child before CMD
    cpu = ru.ru_utime + ru.ru_stime

    def io(name: str) -> float | None:
        if name not in io_after:
            return None
        return _mb(io_after[name] - io_before.get(name, 0))

    return rc, Usage(round(wall, 3), round(cpu, 3), _mb(ru.ru_maxrss * 1024),
                     io("read_bytes"), io("write_bytes"))


def append(path: Path, step: str, usage: Usage) -> None:
    """One line per measured step; a line is one ``write`` (appends do not interleave)."""
    line = json.dumps({"step": step, **asdict(usage)}) + "\n"
    with path.open("a") as f:
        f.write(line)


def read(path: Path) -> dict[str, dict]:
    """The measured steps of a usage file, by step (a step measured twice: summed)."""
    steps: dict[str, Usage] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, TypeError):
                data = json.loads(line)
                u = Usage.from_dict(data)
                step = str(data["step"])
                steps[step] = combine([steps[step], u]) if step in steps else u
    return {k: asdict(v) for k, v in steps.items()}


def _sum(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known), 3) if known else None


def combine(parts: Sequence[Usage]) -> Usage:
    """Steps one after another: times and I/O add up, the peak is the largest."""
    return Usage(round(sum(p.wall_s for p in parts), 3), round(sum(p.cpu_s for p in parts), 3),
                 max((p.max_rss_mb for p in parts), default=0.0),
                 _sum(p.read_mb for p in parts), _sum(p.write_mb for p in parts))


def job_total(steps: dict[str, dict], wall_s: float, cpu_s: float | None) -> dict:
    """The whole attempt: its wall time, the CPU time of every process of the job body
    (the job shell's, when known), the largest peak of any measured step."""
    parts = [Usage.from_dict(v) for k, v in steps.items() if k not in (JOB, CONTAINER)]
    total = combine(parts)
    cpu = total.cpu_s if cpu_s is None else round(max(cpu_s, total.cpu_s), 3)
    return asdict(Usage(round(wall_s, 3), cpu, total.max_rss_mb, total.read_mb,
                        total.write_mb))


def process_cpu(pid: int) -> float | None:
    """CPU seconds of a live process and of the children it has waited for (user and
    system: ``/proc/PID/stat`` fields 14-17), e.g. the job shell's; None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


# -- reading many records: summaries for status, submit and the report --------------

def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method (a value that occurred)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


SUGGEST_QUANTILE = 99
SUGGEST_MARGIN = 0.25    # above the 99th percentile: room for the jobs not yet seen
SUGGEST_MIN_JOBS = 3
SUMMARY_STATES = ("done", "merged", "failed", "lost", "cancelled", "superseded")


@dataclass(frozen=True)
class Ranked:
    job_id: str
    value: float


@dataclass(frozen=True)
class Suggestion:
    """Limits for the next submission, from the finished jobs' usage (not applied)."""

    jobs: int            # finished jobs the figures come from
    time: str            # SLURM's D-HH:MM:SS / HH:MM:SS
    mem: str             # e.g. 512M
    wall_s: float        # the percentile the suggestion adds the margin to
    max_rss_mb: float

    def line(self) -> str:
        return (f"from {self.jobs} finished jobs ({SUGGEST_QUANTILE}th percentile "
                f"{self.wall_s:.0f} s, {self.max_rss_mb:.0f} MB, plus "
                f"{SUGGEST_MARGIN:.0%}): time {self.time}, mem {self.mem} "
                "(backend.slurm.time/mem, backend.htcondor.request_memory in fairbig.yaml)")


@dataclass(frozen=True)
class UsageSummary:
    """What ``fairbig status`` shows: per-state medians of the whole jobs, the slowest
    and the most memory-hungry, and a suggestion for ``time``/``mem``."""

    medians: dict[str, dict[str, float]]   # state -> wall_s, cpu_s, max_rss_mb, jobs
    slowest: list[Ranked]
    hungriest: list[Ranked]
    suggestion: Suggestion | None

    def to_json(self) -> dict:
        return asdict(self)


def slurm_time(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    text = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{text}" if days else text


def slurm_seconds(spec: str) -> int:
    """Seconds of a SLURM time (``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``,
    ``D-H:M:S``), the inverse of :func:`slurm_time`."""
    days, _, rest = spec.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:                            # D-H, D-H:M, D-H:M:S
        h, m, sec = [*parts, 0, 0][:3]
    elif len(parts) == 3:               # H:M:S
        h, m, sec = parts
    else:                               # M, M:S
        h, m, sec = 0, parts[0], [*parts, 0][1]
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


def suggest(totals: Sequence[dict]) -> Suggestion | None:
    """The 99th percentile of finished jobs' wall time and peak memory, plus a margin."""
    if len(totals) < SUGGEST_MIN_JOBS:
        return None
    wall = percentile([t["wall_s"] for t in totals], SUGGEST_QUANTILE)
    rss = percentile([t["max_rss_mb"] for t in totals], SUGGEST_QUANTILE)
    mem = max(64, math.ceil(rss * (1 + SUGGEST_MARGIN) / 64) * 64)
    return Suggestion(len(totals), slurm_time(wall * (1 + SUGGEST_MARGIN)), f"{mem}M",
                      wall, rss)


def summarize(states: dict[str, str], usage: dict[str, dict], top: int = 5
              ) -> UsageSummary:
    """``states``: job -> its state; ``usage``: job -> its record's usage."""
    totals = {jid: u[JOB] for jid, u in usage.items() if JOB in u}
    by_state: dict[str, list[dict]] = {}
    for jid, t in totals.items():
        by_state.setdefault(states.get(jid, ""), []).append(t)
    medians = {state: {"jobs": len(rows)} | {k: median([r[k] for r in rows])
                                             for k in ("wall_s", "cpu_s", "max_rss_mb")}
               for state in SUMMARY_STATES if (rows := by_state.get(state))}

    def ranked(key: str) -> list[Ranked]:
        best = heapq.nlargest(top, ((t[key], jid) for jid, t in totals.items()))
        return [Ranked(jid, value) for value, jid in best]

    finished = by_state.get("done", []) + by_state.get("merged", [])
    return UsageSummary(medians, ranked("wall_s"), ranked("max_rss_mb"), suggest(finished))
