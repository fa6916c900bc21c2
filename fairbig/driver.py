"""fairbig for outside workflow engines (Snakemake, ``workflows/Snakefile``).

Two halves, kept apart on purpose: facts an engine reads while it plans its
DAG (which jobs still need a run, where their markers live), which never write
anything, so ``snakemake -n``/``--lint``/``--report`` leave stores and run
directories alone; and ``fairbig script`` (:mod:`fairbig.commands.script`), the
one step that writes (publish the dataset to both stores, render the job body
once per commit), run by the engine as its first job.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .commands.plan import current_jobs
from .contract import JOB_REF_PREFIX, LOGS, PLAN_FILE, REPLACE_ENV, RUNS
from .dataset import Analysis
from .errors import FairbigError
from .gitcmd import git
from .gittree import git_dir_of
from .states import classify
from .storeview import read_finished

DRIVER_SUFFIX = "driver"   # run directory of the job body drivers use: runs/<commit12>-driver
FAN_IN = 32                # markers per aggregate job: keeps every printed line a few KB


def plan_commit(a: Analysis) -> str:
    """The commit that last changed the plan: what a driver's run directory, job body
    and markers are keyed by. Not HEAD: ``fairbig merge`` moves HEAD (it brings the
    results in), and a start after a merge must find the markers and job body of the
    starts before it, or Snakemake sees every input set changed and redoes work."""
    commit = git(git_dir_of(a.root), "log", "-1", "--format=%H", "--", PLAN_FILE).stdout.strip()
    if not commit:
        raise FairbigError(f"no commit of {PLAN_FILE} in {a.root}",
                           "plan the jobs first: fairbig plan")
    return commit


def run_dir(a: Analysis, commit: str) -> Path:
    """One run directory per plan commit: every start of a driver reuses it."""
    return a.work / RUNS / f"{commit[:12]}-{DRIVER_SUFFIX}"


def script_path(a: Analysis, commit: str) -> Path:
    return run_dir(a, commit) / "job.sh"


@dataclass(frozen=True)
class Progress:
    """Where each planned job stands, from the plan and the output store alone."""

    todo: list[str]               # no result at the job's current input state
    unmerged: dict[str, str]      # done, not merged yet: job -> branch tip
    merged: list[str]


def progress(a: Analysis) -> Progress:
    finished = read_finished(a.output_git, a.default_branch)
    todo, unmerged, merged = [], {}, []
    for job in current_jobs(a):
        state = classify(job, finished, None, None, None).state
        if state == "merged":
            merged.append(job.job_id)
        elif state == "done":
            unmerged[job.job_id] = finished.branches[job.job_id][0]
        else:
            todo.append(job.job_id)
    return Progress(todo, unmerged, merged)


def digest(lines: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:12]


@dataclass
class SnakemakeView:
    """What ``workflows/Snakefile`` asks fairbig, evaluated lazily at DAG time.

    Parsing the Snakefile costs the same at 40 jobs and at 40,000: nothing is
    read until Snakemake asks for a rule's input, and copies of Snakemake that
    run one job on a cluster node only ever ask about that job.

    Markers (``.fairbig/work/snakemake/<commit12>/``): ``done/<job>`` holds the
    commit of the job's branch; when fairbig says a job with a marker has no
    result (its branch was deleted, the store reset), the job is asked for under
    ``again-<n>/<job>``, a marker that does not exist yet, so the engine runs
    it without anything being deleted at planning time. Jobs fairbig knows are
    done or merged are not in the DAG at all.
    """

    analysis: Analysis
    settings: Mapping[str, object] = field(default_factory=dict)
    workflow: object = None          # the Snakemake workflow: forced targets (-f, -R, -F)
    job_rule: str = "job"            # the job rule's name as the host workflow knows it

    @property
    def marks(self) -> Path:
        return self.analysis.work / "snakemake"

    @property
    def runs(self) -> Path:
        return self.analysis.work / RUNS

    @property
    def logs(self) -> Path:
        return self.analysis.work / LOGS

    @cached_property
    def commit(self) -> str:
        return plan_commit(self.analysis)

    @property
    def c12(self) -> str:
        return self.commit[:12]

    @cached_property
    def progress(self) -> Progress:
        return progress(self.analysis)

    def fairbig(self) -> str:
        """The fairbig CLI of the environment Snakemake runs in, never one from PATH."""
        return f"{sys.executable} -m fairbig"

    def output_git(self) -> str:
        return str(self.analysis.output_git)

    def script(self, commit12: str) -> str:
        return str(self.runs / f"{commit12}-{DRIVER_SUFFIX}" / "job.sh")

    def job_log(self, job: str) -> str:
        return str(self.logs / f"{job}.log")

    def marker(self, job: str, forced: bool = False) -> str:
        """The marker to ask for: the existing one if forced, else the first missing."""
        base = self.marks / self.c12
        path, n = base / "done" / job, 0
        while path.exists() and not forced:
            n += 1
            path = base / f"again-{n}" / job
        return str(path)

    @cached_property
    def _forced(self) -> tuple[bool, set[str]]:
        """-F, -R <job rule>, and marker files given to -R or to -f as targets (read once:
        every job's rule asks for its replace setting)."""
        ds = getattr(self.workflow, "dag_settings", None)
        if ds is None:
            return False, set()
        every = bool(ds.forceall) or self.job_rule in ds.forcerun
        files = set(ds.forcerun) | (set(ds.targets) if ds.forcetargets else set())
        prefix = str(self.marks / self.c12) + os.sep
        jobs = {Path(f).name for f in (os.path.abspath(f) for f in files)
                if f.startswith(prefix)}
        return every, jobs

    def replace_setting(self, job: str) -> str:
        """The job's environment setting that lets a forced run (-F, -R, -f on its marker)
        replace the result already stored for the same input state, which the job keeps
        otherwise (exactly once: the first result for an input state stays)."""
        every, forced = self._forced
        return f"{REPLACE_ENV}={'1' if every or job in forced else ''}"

    @cached_property
    def needed(self) -> dict[str, str]:
        """Job -> marker of every job this start must run."""
        every, forced = self._forced
        p = self.progress
        ids = [*p.todo, *p.unmerged, *p.merged] if every else [*p.todo, *sorted(forced)]
        return {j: self.marker(j, forced=every or j in forced) for j in dict.fromkeys(ids)}

    @cached_property
    def key(self) -> str:
        """Names the aggregate and merge markers after what they stand for, so a
        new situation never finds an old marker in its place."""
        return digest([*self.needed.values(),
                       *(f"{j} {t}" for j, t in sorted(self.progress.unmerged.items()))])

    @cached_property
    def _levels(self) -> list[list[str]]:
        """Markers per level: jobs, then aggregates of FAN_IN each, up to <= FAN_IN."""
        levels = [list(self.needed.values())]
        while len(levels[-1]) > FAN_IN:
            n = (len(levels[-1]) + FAN_IN - 1) // FAN_IN
            levels.append([self.batch(len(levels), i) for i in range(n)])
        return levels

    def batch(self, level: int, index: int) -> str:
        return str(self.marks / self.c12 / f"batch-{self.key}" / f"{level}-{index}")

    def batch_inputs(self, level: int, index: int) -> list[str]:
        return self._levels[level - 1][index * FAN_IN:(index + 1) * FAN_IN]

    def top(self) -> list[str]:
        """At most FAN_IN markers that stand for every needed job."""
        return self._levels[-1]

    def merged(self) -> str:
        return str(self.marks / self.c12 / f"merged-{self.key}")

    def everything(self) -> list[str]:
        """Target of ``all``: the merge when anything is to run or to merge; else the
        plan itself (a file that exists, so Snakemake reports nothing to be done)."""
        if self.needed or self.progress.unmerged:
            return [self.merged()]
        return [str(self.analysis.plan_file)]

    def rerun(self, sample: int, seed: int) -> str:
        return str(self.marks / self.c12 / f"rerun-sample{sample}-seed{seed}.json")

    def before_fetch(self, job: str) -> list[str]:
        """A job's result can be fetched once it is in the store: run it first if not.

        A job this start need not run is asked for by its existing marker, the same
        file its first fetch waited for, so the next start after the merge finds the
        fetch's input set unchanged and has nothing to do."""
        if job in self.needed:
            return [self.needed[job]]
        done = self.marks / self.c12 / "done" / job
        return [str(done)] if done.exists() else []

    def merge_args(self) -> str:
        shared = self.settings.get("merge_shared") or []
        if isinstance(shared, str):
            shared = [shared]
        import shlex

        args = [f"--shared {shlex.quote(str(p))}" for p in shared]
        if self.settings.get("keep_branches"):
            args.append("--keep-branches")
        return " ".join(args)


def branch_ref(job: str) -> str:
    return JOB_REF_PREFIX + job
