"""The backend interface: pure hooks per scheduler, the effects done once here.

A backend turns "run these jobs with this script" into scheduler work and
reports what the scheduler still knows about. Whether a job *succeeded* is
never the scheduler's word: jobs write their own state records, and the
output store is the final truth.

As in submitit and dask-jobqueue, a scheduler's class fills small pure hooks
(the files it submits, the submit call, the scheduler's answer parsed into an
ID, the poll call, the poll answer parsed into views), which tests check
against golden files and captured real answers without a cluster.
``Backend.submit`` does the writing, calling, recording and dry run once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..config import Config
from ..jobstate import Claim, Submission, now
from ..proc import run


@dataclass(frozen=True)
class Batch:
    """Jobs handed to the scheduler in one call (a SLURM array), under one token."""

    token: str
    job_ids: Sequence[str]
    offset: int             # of the first job in the run's jobs.txt
    per_task: int = 1       # jobs each task runs one after another (a throttled SLURM array)

    @property
    def tasks(self) -> int:
        return -(-len(self.job_ids) // self.per_task)

    def task(self, index: int) -> int:
        """The task that runs the batch's ``index``-th job."""
        return index // self.per_task


@dataclass(frozen=True)
class Layout:
    """How a submission is cut for the scheduler: at most ``batch`` jobs per scheduler
    call (None: one call for all), at most ``tasks`` tasks per call (None: one job per
    task; else jobs share tasks so that one call holds the batch)."""

    batch: int | None = None
    tasks: int | None = None


@dataclass(frozen=True)
class SubmitRequest:
    job_ids: Sequence[str]
    batches: Sequence[Batch]
    script: Path            # the rendered, scheduler-agnostic job body
    run_dir: Path           # where this submission's files and logs go
    log_dir: Path
    state_dir: Path
    record: Callable[[list[Submission]], None]   # called as soon as IDs are known
    dry_run: bool = False


@dataclass(frozen=True)
class BackendView:
    """What the scheduler says about one job it still knows."""

    state: str              # queued | running | finished
    reason: str = ""        # e.g. TIMEOUT, OUT_OF_MEMORY, NODE_FAIL


@dataclass(frozen=True)
class Call:
    """One scheduler command: its argv and the environment it adds."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    hint: str = ""          # how to fix it when the command fails


class Backend(ABC):
    """One scheduler. Subclasses fill the pure hooks; ``submit`` is the same for all."""

    name: ClassVar[str] = ""

    def __init__(self, config: Config) -> None:
        self.config = config

    # -- pure hooks: values in, text or argv or views out ----------------------------
    def header(self, req: SubmitRequest) -> str:
        """Scheduler directives placed at the top of the job script."""
        return ""

    def files(self, req: SubmitRequest) -> dict[str, str]:
        """Submission files by name in the run directory (written on a dry run too)."""
        return {}

    def submit_call(self, req: SubmitRequest, batch: Batch) -> Call:
        """The command that hands one batch to the scheduler."""
        raise NotImplementedError(f"the {self.name} backend submits without a command")

    def parse_submit(self, stdout: str) -> str:
        """The scheduler's handle of a batch (array ID, DAG cluster) from its answer."""
        raise NotImplementedError(f"the {self.name} backend submits without a command")

    def backend_id(self, handle: str, index: int, job_id: str) -> str:
        """The ID the scheduler knows the ``index``-th job of a batch by."""
        raise NotImplementedError

    def record_files(self, req: SubmitRequest, handles: Sequence[str]) -> dict[str, str]:
        """Files that record what the scheduler accepted, written after the submit."""
        return {}

    def layout(self, dry_run: bool) -> Layout:
        """How this scheduler takes a submission (a dry run asks no scheduler)."""
        return Layout()

    def at_once(self) -> int | None:
        """Jobs the configuration lets run at once (None: no limit of fairbig's; the
        cluster's capacity decides), for the estimate of a pilot run."""
        return None

    def output_file(self, run_dir: Path, sub: Submission) -> Path | None:
        """The file the scheduler writes the job's own output to: it holds what a job
        printed before its log began (a failing ``job.env_setup`` line, a tool missing
        on the node, the scheduler's own complaint)."""
        return None

    # -- effects, once for every scheduler --------------------------------------------
    def submit(self, req: SubmitRequest) -> list[Submission]:
        """Write the submission files, hand each batch over and record its jobs as soon
        as the scheduler named them; a dry run only writes the files."""
        write_files(req.run_dir, self.files(req))
        handles: list[str] = []
        subs: list[Submission] = []
        for batch in () if req.dry_run else req.batches:
            handle = self.hand_over(req, batch)
            handles.append(handle)
            part = [Submission(jid, self.name, self.backend_id(handle, batch.task(i), jid), now(),
                               token=batch.token) for i, jid in enumerate(batch.job_ids)]
            req.record(part)
            subs += part
        write_files(req.run_dir, self.record_files(req, handles))
        return subs

    def hand_over(self, req: SubmitRequest, batch: Batch) -> str:
        """Run the batch's submit command; the scheduler's handle of it."""
        call = self.submit_call(req, batch)
        return self.parse_submit(run(call.argv, env=dict(call.env), hint=call.hint).stdout)

    @abstractmethod
    def poll(self, subs: Sequence[Submission]) -> dict[str, BackendView]:
        """Scheduler view of the given submissions, by job ID (absent = not known)."""

    @abstractmethod
    def cancel(self, subs: Sequence[Submission]) -> None:
        """Stop the given jobs; the jobs record themselves as cancelled."""

    def recover(self, claims: Sequence[Claim]) -> dict[str, str] | None:
        """Backend IDs of claimed jobs whose submit died before recording them, found by
        the claim's token; jobs absent were never accepted. None: the scheduler could
        not be asked (then nobody may assume the jobs were not accepted)."""
        return {}

    def check(self) -> str:
        """That the scheduler's tools are here and the scheduler answers (for ``fairbig
        check``); raises FairbigError naming what is missing and how to fix it."""
        return "jobs run as processes on this machine"


def write_files(directory: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text)
