"""``fairbig status``: one exact count per state, reconciled from every source.

Sources, strongest first: the output store (merged main, job branches),
the jobs' own state records, our submission log, and the scheduler's view.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from .backends.base import BackendView
from .jobstate import JobRecord, Submission
from .jobtable import Job
from .storeview import Finished

STATES = ("planned", "queued", "running", "done", "failed", "cancelled", "superseded", "lost",
          "merged")
INPUT_CHANGED = "input changed — will be planned again"
PROBLEM_STATES = ("failed", "lost")
PROBLEMS_EXIT = 3  # fairbig status exits so while any job is in a PROBLEM_STATE
ACTIVE_STATES = ("queued", "running")


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: str
    step: str = ""
    detail: str = ""
    backend_id: str = ""


@dataclass
class StatusReport:
    counts: dict[str, int]
    jobs: list[JobStatus]
    # the current attempts' own records (times, host, resource usage), by job
    records: dict[str, JobRecord] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"counts": self.counts, "jobs": [asdict(j) for j in self.jobs],
                "usage": {jid: r.usage for jid, r in self.records.items() if r.usage}}

    @property
    def problems(self) -> int:
        """Jobs that need a person: ``fairbig status`` exits non-zero while any exist."""
        return sum(self.counts.get(s, 0) for s in PROBLEM_STATES)

    @property
    def active(self) -> int:
        return sum(self.counts.get(s, 0) for s in ACTIVE_STATES)


def classify(job: Job, finished: Finished, record: JobRecord | None,
             sub: Submission | None, view: BackendView | None,
             cancel_requested: bool = False) -> JobStatus:
    """The state of one job: a pure function of what each source says.

    ``record`` is the current attempt's own (records of earlier attempts are
    dropped by token before, never by comparing clocks of different machines).
    """
    jid = job.job_id
    if finished.merged.get(jid) == job.input_state:
        return JobStatus(jid, "merged")
    branch = finished.branches.get(jid)
    if branch and branch[1] == job.input_state:
        return JobStatus(jid, "done")
    active = view is not None and view.state in ("queued", "running")
    bid = (record.backend_id if record else "") or (sub.backend_id if sub else "")
    # an attempt on another input state says nothing about this one, once it is over;
    # while it is queued or running it is the job's live attempt all the same
    stale = [x for x in (record, sub) if x and x.input_state
             and x.input_state != job.input_state]
    if stale and active:
        return JobStatus(jid, view.state, record.step if record else "", INPUT_CHANGED, bid)
    if record in stale:
        record = None
    if sub in stale:
        sub = None
    if record:
        if record.status == "superseded":
            return JobStatus(jid, "superseded", record.step,
                             "a newer result is in the store; this attempt pushed nothing", bid)
        if record.status == "failed":
            reason = f" ({view.reason})" if view and view.reason else ""
            return JobStatus(jid, "failed", record.step,
                             f"exit code {record.exit_code} in step {record.step}{reason}", bid)
        if record.status == "cancelled":
            return JobStatus(jid, "cancelled", record.step, "", bid)
        if record.status == "running":
            if active:
                return JobStatus(jid, "running", record.step, "", bid)
            if cancel_requested:
                # stopped by the cancel before its own record said so (SIGKILL after the
                # scheduler's grace time, or killed between two writes): not a failure
                return JobStatus(jid, "cancelled", record.step,
                                 f"cancelled in step {record.step}", bid)
            if view and view.reason:
                return JobStatus(jid, "failed", record.step,
                                 f"{view.reason} in step {record.step}", bid)
            return JobStatus(jid, "lost", record.step,
                             f"stopped in step {record.step} on {record.host}, no longer running",
                             bid)
        # "done" without a branch: the result never reached the store
        return JobStatus(jid, "lost", record.step, "done recorded but no branch in the store",
                         bid)
    if sub:
        if cancel_requested and not active:
            return JobStatus(jid, "cancelled", "", "cancelled before it started", bid)
        if view and view.state == "queued":
            return JobStatus(jid, "queued", "", "", bid)
        if view and view.state == "running":
            return JobStatus(jid, "running", "start", "", bid)
        if view and view.reason:
            return JobStatus(jid, "failed", "", view.reason, bid)
        return JobStatus(jid, "lost", "", "submitted, never started, unknown to the backend", bid)
    return JobStatus(jid, "planned")


def report(jobs: Sequence[Job], finished: Finished, records: dict[str, JobRecord],
           subs: dict[str, Submission], views: dict[str, BackendView],
           cancelled: set[str] | frozenset[str] = frozenset()) -> StatusReport:
    rows = [classify(j, finished, records.get(j.job_id), subs.get(j.job_id),
                     views.get(j.job_id), j.job_id in cancelled) for j in jobs]
    counts = Counter(r.state for r in rows)
    planned = {j.job_id for j in jobs}
    return StatusReport({s: counts.get(s, 0) for s in STATES}, rows,
                        {jid: r for jid, r in records.items() if jid in planned})
