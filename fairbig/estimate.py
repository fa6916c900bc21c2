"""A pilot run's choice of jobs and its estimate of the whole computation (pure).

``fairbig submit --pilot N`` runs N ordinary jobs chosen across the input's shapes
(:func:`pick_pilot`); :func:`estimate` scales what they recorded (their state records'
usage, the sizes of the annex keys they stored) to every planned job. Each figure is
a :class:`Spread`: the whole computation if every job were like the pilot's smallest,
its mean and its largest job. The time and memory to request are the finished jobs'
99th percentile plus a margin, as ``fairbig submit`` suggests them (usage.suggest).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from .jobtable import Job
from .usage import Suggestion, suggest

MB = 2**20


def shape(job: Job) -> tuple[int, bool]:
    """What the plan says of a job's size without fetching anything: how many input
    paths it has (a subject with extra sessions or records has more) and whether it
    is one session of a subject."""
    return len(job.inputs), bool(job.session)


def _spread_over(items: Sequence, k: int) -> list:
    """``k`` of ``items`` evenly spread over them (the middles of k equal parts)."""
    m = len(items)
    return [items[(2 * i + 1) * m // (2 * k)] for i in range(k)]


def pick_pilot(jobs: Sequence[Job], n: int) -> list[str]:
    """The IDs of ``n`` jobs spread over the input, deterministically, in plan order.

    Jobs are grouped by :func:`shape`; each group gets at least one pilot job while
    ``n`` allows (with fewer: groups spread over the shapes, smallest to largest), the
    rest goes to the groups least represented yet; within a group the chosen jobs are
    spread over it, not its first ones.
    """
    if n >= len(jobs):
        return [j.job_id for j in jobs]
    groups: dict[tuple[int, bool], list[Job]] = {}
    for j in jobs:
        groups.setdefault(shape(j), []).append(j)
    keys = sorted(groups)
    if n < len(keys):
        keys = _spread_over(keys, n)
    share = dict.fromkeys(keys, 1)
    for _ in range(n - len(keys)):
        # the group whose jobs are least represented yet (ties: the larger shape)
        best = max((k for k in keys if share[k] < len(groups[k])),
                   key=lambda k: (len(groups[k]) / share[k], k))
        share[best] += 1
    chosen = {j.job_id for k in keys for j in _spread_over(groups[k], share[k])}
    return [j.job_id for j in jobs if j.job_id in chosen]


@dataclass(frozen=True)
class Spread:
    """A figure if every job were like the pilot's smallest, mean and largest one."""

    low: float
    mid: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float], scale: float = 1.0) -> Spread:
        return cls(round(min(values) * scale, 3),
                   round(sum(values) / len(values) * scale, 3),
                   round(max(values) * scale, 3))

    def map(self, f: Callable[[float], float]) -> Spread:
        """``f`` of each end; a decreasing ``f`` swaps them, so low stays the lowest."""
        a, b, c = f(self.low), f(self.mid), f(self.high)
        return Spread(round(min(a, c), 3), round(b, 3), round(max(a, c), 3))

    def text(self, fmt: str = ".1f") -> str:
        return f"{self.mid:{fmt}} ({self.low:{fmt}} to {self.high:{fmt}})"


@dataclass(frozen=True)
class Estimate:
    """The whole computation, scaled from the pilot's finished jobs."""

    pilot_jobs: int              # pilot jobs the figures come from (finished, measured)
    jobs: int                    # every planned job
    remaining: int               # planned jobs not run yet
    at_once: int | None          # jobs at once the configuration allows (None: no limit)
    cpu_hours: Spread
    wall_per_job_s: Spread
    peak_mem_mb: Spread          # per job: the largest process of any step
    wall_hours: Spread           # every job, at_once at a time
    results_mb: Spread           # annexed results in the output store
    pushes_per_minute: Spread    # branch pushes under the store's push lock
    request: Suggestion | None   # time/mem to ask the scheduler for

    def to_json(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        limit = f"{self.at_once} at once" if self.at_once else "all at once (no limit set)"
        out = [f"estimate of all {self.jobs} jobs ({self.remaining} not run yet) from "
               f"{self.pilot_jobs} pilot job(s); mean (smallest to largest pilot job):",
               f"  CPU time:        {self.cpu_hours.text('.3g')} CPU-hours",
               f"  wall per job:    {self.wall_per_job_s.text()} s",
               f"  peak memory:     {self.peak_mem_mb.text('.0f')} MB per job",
               f"  wall time:       {self.wall_hours.text('.3g')} h at {limit}",
               f"  results stored:  {self.results_mb.text('.3g')} MB (annexed, before "
               "encryption)",
               f"  push-lock load:  {self.pushes_per_minute.text()} pushes per minute"]
        if self.request:
            out.append(f"  request:         {self.request.line()}")
        return out


def waves(jobs: int, at_once: int | None) -> int:
    """Rounds of ``at_once`` jobs that ``jobs`` take (one round without a limit)."""
    return math.ceil(jobs / min(at_once or jobs, jobs)) if jobs else 0


def estimate(totals: Sequence[dict], result_bytes: Sequence[int], jobs: int, remaining: int,
             at_once: int | None) -> Estimate | None:
    """``totals``: the pilot's finished jobs' whole-job usage (usage.JOB records);
    ``result_bytes``: each such job's annexed results; None without any."""
    if not totals or jobs < 1:
        return None
    wall = Spread.of([t["wall_s"] for t in totals])
    running = min(at_once or jobs, jobs)
    return Estimate(
        pilot_jobs=len(totals), jobs=jobs, remaining=remaining, at_once=at_once,
        cpu_hours=Spread.of([t["cpu_s"] for t in totals], jobs / 3600),
        wall_per_job_s=wall,
        peak_mem_mb=Spread.of([t["max_rss_mb"] for t in totals]),
        wall_hours=wall.map(lambda s: s * waves(jobs, at_once) / 3600),
        results_mb=Spread.of(list(result_bytes) or [0], jobs / MB),
        pushes_per_minute=wall.map(lambda s: running * 60 / max(s, 1e-3)),
        request=suggest(totals))
