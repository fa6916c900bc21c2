"""Job state records: what each job said about itself, and what we submitted.

Jobs write ``<state_dir>/<job>.json`` themselves (the job template calls
``python -m fairbig.jobstep record``, which writes this module's
:class:`JobRecord`: one schema for writer and readers), so
status works without scheduler accounting; submissions are appended to
``submissions.jsonl`` by the submitting side.

Exactly once: before a submit hands a job to the scheduler it writes the job's
*claim* ``<state_dir>/<job>.claim`` (in the shared state directory, so every
host sees it) naming the attempt's token. The token goes to the scheduler (as
the job name) and to the job (``FAIRBIG_ATTEMPT``, written into its record):
a record belongs to the current attempt when its token is the claim's, and a
submit killed before it learnt the scheduler's IDs is reconciled by asking the
scheduler for the token. No wall clock is compared (nodes' clocks differ).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import marshal
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

ENDED = ("done", "failed", "cancelled", "superseded")   # a JobRecord status once it ended


@dataclass(frozen=True)
class JobRecord:
    job_id: str
    status: str          # running | done | failed | cancelled | superseded
    step: str
    exit_code: int | None
    host: str
    pid: int
    backend_id: str
    started: int
    updated: int
    workdir: str
    input_state: str = ""
    detail: str = ""     # why, in words: e.g. what superseded the attempt
    attempt: str = ""    # the claim's token of this attempt (FAIRBIG_ATTEMPT)
    # what each measured step used, and the whole attempt ("job"): step -> the fields
    # of fairbig.usage.Usage (wall_s, cpu_s, max_rss_mb, read_mb, write_mb)
    usage: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    job_id: str
    backend: str
    backend_id: str
    submitted: float
    input_state: str = ""
    token: str = ""      # the attempt (see Claim); "" in logs of older fairbig versions


@dataclass(frozen=True)
class Claim:
    """A submit's word, written before the scheduler call: this job's next attempt is
    ``token``, handed over by process ``pid`` on ``host``."""

    job_id: str
    token: str           # one per batch (SLURM array): the scheduler's job name
    index: int           # the task of its batch that runs the job (array task index)
    backend: str
    host: str
    pid: int
    input_state: str = ""


CLAIM_SUFFIX = ".claim"


def new_token() -> str:
    """A unique attempt token; also a valid scheduler job name."""
    import secrets  # here: every job step imports this module for its record

    return f"fairbig-{secrets.token_hex(6)}"


def records_cache(state_dir: Path) -> Path:
    """The readers' cache of the job records: beside the state directory, not in it,
    where every ``*.json`` is one job's record (for scripts that read them too)."""
    return state_dir.with_name(f"{state_dir.name}-records-cache.marshal")


# a record written this close to a read may change again within the file system's
# time stamp granularity without its (inode, mtime, size) changing: never cached
_SETTLED_NS = 2_000_000_000
_FIELDS = tuple(f.name for f in fields(JobRecord))
# the cache's header: its format, and the record fields its rows hold in this order
# (a cache of another format or of other fields is ignored and rebuilt)
_CACHE_FORMAT = ("fairbig records cache", 1, _FIELDS)
# file name -> (inode, mtime_ns, size, the record's field values in _FIELDS order)
CacheRows = dict[str, tuple[int, int, int, tuple]]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Build many small acyclic objects (42k records and their usage dicts: 2M objects;
    a plan of 85k BIDS jobs: a million tuples, strings and rows) without the cycle
    collector traversing them again and again: it cost readers more CPU than decoding
    them, and a plan about 1.5 of its 8 CPU-s. Nothing built meanwhile is lost, only
    collected later. A context manager, and as ``@gc_paused()`` a decorator."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_cache(path: Path) -> CacheRows:
    """The last read's records by file name ({} if none, unreadable or of another format).

    marshal, not JSON: it is our own file of plain values, rebuilt when missing, and
    loads 42k records several times faster (a marshal of another Python version that
    does not load is just a missing cache)."""
    try:
        head, rows = marshal.loads(path.read_bytes())
    except (OSError, ValueError, EOFError, TypeError):
        return {}
    return rows if head == _CACHE_FORMAT and isinstance(rows, dict) else {}


def _save_cache(path: Path, rows: CacheRows) -> None:
    """Replace the cache whole (readers never see half of it); a read-only state
    directory only costs the next reader the full read."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(marshal.dumps((_CACHE_FORMAT, rows)))
        os.replace(tmp, path)
        path.with_suffix(".json").unlink(missing_ok=True)  # the JSON cache it replaces
    except OSError:
        tmp.unlink(missing_ok=True)


def _read(path: str, size: int) -> bytes:
    """A small file's bytes in one read of its size as stat saw it (a text-mode
    ``open`` costs twice that: 42k records on a report without the cache)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunk = data = os.read(fd, size + 1)
        while chunk and len(data) > size:  # it grew since: read on to its end
            chunk = os.read(fd, 1 << 16)
            data += chunk
        return data
    finally:
        os.close(fd)


def read_records(state_dir: Path) -> dict[str, JobRecord]:
    """All job records; unreadable ones (a job killed mid-write) are skipped.

    At 42k jobs opening and parsing every record costs seconds of CPU on each
    ``status``/``report``/``export``, so the records of the last read are kept in
    ``records_cache(state_dir)`` and only files whose (inode, mtime, size) changed are read
    again. Writers replace a record by rename (a new inode), and records younger
    than ``_SETTLED_NS`` are never cached, so a cached record is the file's content.
    """
    out: dict[str, JobRecord] = {}
    if not state_dir.is_dir():
        return out
    cache_path = records_cache(state_dir)
    with gc_paused():
        cache = _load_cache(cache_path)
        kept: CacheRows = {}
        settled = time.time_ns() - _SETTLED_NS
        changed = False
        with os.scandir(state_dir) as it:
            for entry in it:
                name = entry.name
                if not name.endswith(".json") or name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                    row = cache.get(name)
                    if (row is not None and row[0] == st.st_ino and row[1] == st.st_mtime_ns
                            and row[2] == st.st_size):
                        rec = JobRecord(*row[3])
                    else:
                        changed = True
                        rec = JobRecord(**json.loads(_read(entry.path, st.st_size)))
                        row = (st.st_ino, st.st_mtime_ns, st.st_size,
                               tuple(getattr(rec, k) for k in _FIELDS))
                    out[rec.job_id] = rec
                except (OSError, ValueError, TypeError, KeyError, IndexError):
                    continue
                if st.st_mtime_ns < settled:
                    kept[name] = row
                else:
                    changed = True
        if changed or len(kept) != len(cache):
            _save_cache(cache_path, kept)
    return out


def append_submissions(path: Path, subs: Iterable[Submission]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        for s in subs:
            f.write(json.dumps(asdict(s), sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_submissions(path: Path) -> dict[str, Submission]:
    """The latest submission of each job."""
    latest: dict[str, Submission] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                s = Submission(**json.loads(line))
            except (ValueError, TypeError):
                continue
            latest[s.job_id] = s
    return latest


def read_said(path: Path) -> dict[str, tuple[str, str]]:
    """What the schedulers said of attempts that ended: job -> (backend ID, reason)."""
    try:
        return {jid: (bid, reason) for jid, (bid, reason) in json.loads(path.read_text()).items()}
    except (OSError, ValueError, TypeError):
        return {}   # lost or damaged: status asks the schedulers again


def write_said(path: Path, said: dict[str, tuple[str, str]]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(said, sort_keys=True))
    os.replace(tmp, path)


def current_records(records: dict[str, JobRecord], tokens: dict[str, str]
                    ) -> dict[str, JobRecord]:
    """Records of each job's current attempt only: a record left by an earlier attempt
    (another token) says nothing about the one now queued."""
    return {jid: r for jid, r in records.items()
            if jid not in tokens or r.attempt == tokens[jid]}


def read_claims(state_dir: Path) -> dict[str, Claim]:
    out: dict[str, Claim] = {}
    for path in state_dir.glob(f"*{CLAIM_SUFFIX}") if state_dir.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, TypeError):
            c = Claim(**json.loads(path.read_text()))
            out[c.job_id] = c
    return out


def take_claim(state_dir: Path, claim: Claim, replaces: Claim | None) -> bool:
    """Write ``claim`` unless another submit got there first.

    ``replaces`` is the claim this submit saw (its attempt is over) or None. The
    new claim is linked into place (atomic, fails if one exists, also over NFS);
    an old one is first renamed away and checked to be the one we judged over:
    if another submit replaced it meanwhile, theirs is put back and we back off.
    """
    path = state_dir / f"{claim.job_id}{CLAIM_SUFFIX}"
    tmp = state_dir / f".{claim.job_id}{CLAIM_SUFFIX}.{claim.token}"
    tmp.write_text(json.dumps(asdict(claim), sort_keys=True) + "\n")
    try:
        if replaces is not None:
            old = state_dir / f".{claim.job_id}{CLAIM_SUFFIX}.old.{claim.token}"
            try:
                os.rename(path, old)
            except FileNotFoundError:
                return False
            seen = json.loads(old.read_text()).get("token")
            if seen != replaces.token:
                with contextlib.suppress(FileExistsError):
                    os.link(old, path)
                old.unlink()
                return False
            old.unlink()
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def drop_claim(state_dir: Path, claim: Claim, restore: Claim | None = None) -> None:
    """Withdraw our claim (the scheduler never got the job), putting back the one it
    replaced so the state directory is as it was."""
    path = state_dir / f"{claim.job_id}{CLAIM_SUFFIX}"
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text()).get("token") == claim.token:
            if restore is None:
                path.unlink()
            else:
                tmp = state_dir / f".{claim.job_id}{CLAIM_SUFFIX}.{claim.token}"
                tmp.write_text(json.dumps(asdict(restore), sort_keys=True) + "\n")
                os.replace(tmp, path)


@contextlib.contextmanager
def submit_lock(path: Path, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """One submit at a time on an analysis: choosing jobs and claiming them is one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def now() -> float:
    return time.time()
