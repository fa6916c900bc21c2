"""Job state records: what each job said about itself, and what we submitted.

Jobs write ``<state_dir>/<job>.json`` themselves (the job template calls
``python -m fairbig.jobstep record``, which writes this module's
:class:`JobRecord`: one schema for writer and readers), so
status works without scheduler accounting; submissions are appended to
``submissions.jsonl`` by the submitting side.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class Submission:
    job_id: str
    backend: str
    backend_id: str
    submitted: float
    input_state: str = ""


def read_records(state_dir: Path) -> dict[str, JobRecord]:
    """All job records; unreadable ones (a job killed mid-write) are skipped."""
    out: dict[str, JobRecord] = {}
    if not state_dir.is_dir():
        return out
    with os.scandir(state_dir) as it:
        for entry in it:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                with open(entry.path) as f:
                    data = json.load(f)
                out[data["job_id"]] = JobRecord(**data)
            except (OSError, ValueError, TypeError, KeyError):
                continue
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


def clear_for_resubmit(state_dir: Path, job_ids: Iterable[str]) -> None:
    """Drop old records and cancel markers so a new attempt starts clean."""
    for jid in job_ids:
        for name in (f"{jid}.json", f"{jid}.cancel"):
            (state_dir / name).unlink(missing_ok=True)


def now() -> float:
    return time.time()
