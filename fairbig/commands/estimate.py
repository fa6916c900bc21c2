"""``fairbig estimate``: the pilot run's jobs, and what they say of the whole computation.

The pilot's job IDs are kept in ``<work>/pilot.json`` (local, like the job states);
everything else is read afresh each time: the jobs' state records (their usage) and
the output store (the annex keys each pilot job stored, whose names carry their sizes).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..annexkeys import diff_entries, key_fields, keys_of
from ..backends.base import Backend
from ..contract import PILOT
from ..dataset import Analysis
from ..errors import FairbigError
from ..estimate import Estimate, estimate
from ..states import StatusReport
from ..storeview import read_finished, read_merged_rows
from ..usage import JOB

FINISHED = ("done", "merged")


def pilot_file(a: Analysis) -> Path:
    return a.work / PILOT


def read_pilot(a: Analysis) -> list[str]:
    """The pilot's job IDs ([] if no pilot ran)."""
    try:
        return list(json.loads(pilot_file(a).read_text())["jobs"])
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _write_pilot(a: Analysis, jobs: list[str]) -> None:
    """Replace the pilot file (via a temp file: never half of it); none without jobs."""
    path = pilot_file(a)
    if not jobs:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"jobs": jobs, "updated": time.time()}) + "\n")
    tmp.replace(path)


def record_pilot(a: Analysis, job_ids: list[str]) -> None:
    """Add ``job_ids`` to the pilot (a second pilot adds to the first one's jobs)."""
    jobs = read_pilot(a)
    _write_pilot(a, jobs + [j for j in job_ids if j not in jobs])


def withdraw_pilot(a: Analysis, job_ids: set[str]) -> None:
    """Take back jobs a refused pilot submission never handed over."""
    _write_pilot(a, [j for j in read_pilot(a) if j not in job_ids])


def result_bytes(a: Analysis, job_ids: list[str]) -> dict[str, int]:
    """Bytes of the annexed files each job's run commit added to the output store, from
    the keys' names (no content read); a job whose commit is not found is left out."""
    store = a.output_git
    finished = read_finished(store, a.default_branch)
    merged = read_merged_rows(store, a.default_branch)
    out = {}
    for jid in job_ids:
        commit = (finished.branches.get(jid) or (merged.get(jid, ("", ""))[1],))[0]
        if not commit:
            continue
        files = keys_of(store, diff_entries(store, commit + "^", commit))
        out[jid] = sum(int(key_fields(f.key)[1] or 0) for f in files)
    return out


def current_estimate(a: Analysis, rep: StatusReport, backend: Backend) -> Estimate:
    """The estimate from the pilot's finished jobs; a user error while there is none."""
    pilot = read_pilot(a)
    if not pilot:
        raise FairbigError("no pilot run yet", "run e.g. 'fairbig submit --pilot 3' first")
    states = {j.job_id: j.state for j in rep.jobs}
    done = [j for j in pilot if states.get(j) in FINISHED and j in rep.records
            and JOB in rep.records[j].usage]
    sizes = result_bytes(a, done)
    est = estimate([rep.records[j].usage[JOB] for j in done], list(sizes.values()),
                   len(rep.jobs), sum(1 for s in states.values() if s == "planned"),
                   backend.at_once())
    if est is None:
        raise FairbigError(f"none of the {len(pilot)} pilot job(s) has finished yet",
                           "wait for them ('fairbig status --watch'), then run "
                           "'fairbig estimate'")
    return est
