"""``fairbig cancel``: mark jobs cancelled, then ask their schedulers to stop them.

The marker comes first so that a job the scheduler stops mid-step, or one that
starts before the scheduler hears of the cancel, records itself cancelled."""

from __future__ import annotations

from ..backends import get_backend
from ..contract import CANCEL_MARK
from ..dataset import Analysis, paths
from ..jobstate import Submission
from .status import status_with_attempts


def cancel(a: Analysis, job_ids: set[str]) -> list[str]:
    state_dir, _, _ = paths(a)
    status, subs = status_with_attempts(a)
    active = [j.job_id for j in status.jobs if j.state in ("queued", "running")
              and (not job_ids or j.job_id in job_ids)]
    state_dir.mkdir(parents=True, exist_ok=True)
    by_backend: dict[str, list[Submission]] = {}
    for jid in active:
        (state_dir / (jid + CANCEL_MARK)).touch()
        if subs[jid].backend_id:
            by_backend.setdefault(subs[jid].backend, []).append(subs[jid])
    for name, group in by_backend.items():
        get_backend(name, a.config).cancel(group)
    return active
