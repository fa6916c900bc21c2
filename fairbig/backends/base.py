"""The backend interface: small enough to read in one screen.

A backend turns "run these jobs with this script" into scheduler work and
reports what the scheduler still knows about. Whether a job *succeeded* is
never the scheduler's word: jobs write their own state records, and the
output store is the final truth.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..jobstate import Claim, Submission


@dataclass(frozen=True)
class Batch:
    """Jobs handed to the scheduler in one call (a SLURM array), under one token."""

    token: str
    job_ids: Sequence[str]
    offset: int             # of the first job in the run's jobs.txt


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

    state: str              # queued | running | finished | unknown
    reason: str = ""        # e.g. TIMEOUT, OUT_OF_MEMORY, NODE_FAIL


class Backend(ABC):
    name: str = ""

    @abstractmethod
    def submit(self, req: SubmitRequest) -> list[Submission]:
        """Hand the jobs to the scheduler (or run them, for ``local``)."""

    @abstractmethod
    def poll(self, subs: Sequence[Submission]) -> dict[str, BackendView]:
        """Scheduler view of the given submissions, by job ID (absent = not known)."""

    @abstractmethod
    def cancel(self, subs: Sequence[Submission]) -> None:
        """Stop the given jobs; the jobs record themselves as cancelled."""

    def batch_size(self, dry_run: bool) -> int | None:
        """Most jobs one scheduler call may take (None: no limit); a dry run asks no
        scheduler."""
        return None

    def recover(self, claims: Sequence[Claim]) -> dict[str, str] | None:
        """Backend IDs of claimed jobs whose submit died before recording them, found by
        the claim's token; jobs absent were never accepted. None: the scheduler could
        not be asked (then nobody may assume the jobs were not accepted)."""
        return {}

    def header(self, req: SubmitRequest) -> str:
        """Scheduler directives placed at the top of the job script."""
        return ""

    def check(self) -> str:
        """That the scheduler's tools are here and the scheduler answers (for ``fairbig
        check``); raises FairbigError naming what is missing and how to fix it."""
        return "jobs run as processes on this machine"

    def output_file(self, run_dir: Path, sub: Submission) -> Path | None:
        """The file the scheduler writes the job's own output to: it holds what a job
        printed before its log began (a failing ``job.env_setup`` line, a tool missing
        on the node, the scheduler's own complaint)."""
        return None


def get_backend(name: str, config: object) -> Backend:
    if name == "local":
        from .local import LocalBackend
        return LocalBackend(config)
    if name == "slurm":
        from .slurm import SlurmBackend
        return SlurmBackend(config)
    if name == "htcondor":
        from .htcondor import HTCondorBackend
        return HTCondorBackend(config)
    from ..errors import FairbigError
    raise FairbigError(f"unknown backend '{name}'", "use local, slurm or htcondor")
