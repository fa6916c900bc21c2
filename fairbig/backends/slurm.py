"""SLURM: job arrays through the CLI (``sbatch --parsable``, ``squeue``, ``scontrol``).

The CLI is the one interface every SLURM site has; pyslurm only exists for
some versions. Whether a job succeeded comes from its own state record, so
no accounting database (``sacct``) is needed; ``scontrol`` adds the reason
(TIMEOUT, OUT_OF_MEMORY, NODE_FAIL) while SLURM still remembers the job.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..errors import CommandError, FairbigError
from ..jobstate import Claim, Submission
from ..proc import run
from ..render import render
from ..usage import slurm_seconds, slurm_time
from .base import Backend, BackendView, Batch, Call, Layout, SubmitRequest

QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "SUSPENDED", "RESIZING"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
FAILURE_REASONS = {"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
                   "DEADLINE", "FAILED", "CANCELLED"}
DEFAULT_MAX_ARRAY = 1001
JOB_NAME = "fairbig"        # in the header; each array is renamed to its token on submit
TOOLS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")
OUTPUT = "slurm-%A_%a.out"  # in the run directory; %A_%a is the task's backend ID


def array_spec(count: int, throttle: int) -> str:
    return f"0-{count - 1}" + (f"%{throttle}" if throttle else "")


def task_argv(req: SubmitRequest, batch: Batch) -> list[str]:
    """What an array task is told on its command line, never through the environment
    (``--export=NONE`` empties that): the job list, the batch's first line in it, the
    jobs per task and the attempt's token (templates/job.sh.j2 reads them)."""
    return [str(req.script), "--array", str(req.run_dir / "jobs.txt"), str(batch.offset),
            str(batch.per_task), batch.token]


class SlurmBackend(Backend):
    name = "slurm"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.cfg = config.backend.slurm
        self.gpus = config.runtime.gpus

    def header(self, req: SubmitRequest) -> str:
        return render("slurm-header.j2", cfg=self.cfg, job_name=JOB_NAME, gpus=self.gpus)

    def files(self, req: SubmitRequest) -> dict[str, str]:
        """``submit.sh``: the submit commands, to read or to run by hand."""
        lines = [shlex.join(self.submit_call(req, batch).argv) for batch in req.batches]
        return {"submit.sh": "#!/bin/sh\n" + "\n".join(lines) + "\n"}

    def submit_call(self, req: SubmitRequest, batch: Batch) -> Call:
        return Call(submit_argv(batch, req, self.cfg.throttle, self.cfg.time), {},
                    "check the SLURM settings in fairbig.yaml (partition, account, time, mem)")

    def parse_submit(self, stdout: str) -> str:
        return parse_submit(stdout)

    def backend_id(self, handle: str, index: int, job_id: str) -> str:
        return f"{handle}_{index}"

    def record_files(self, req: SubmitRequest, handles: Sequence[str]) -> dict[str, str]:
        """``arrays.json``: which array holds which slice of ``jobs.txt`` (none after a
        dry run, which has no handles)."""
        arrays = [{"array_id": h, "offset": b.offset, "count": len(b.job_ids),
                   "per_task": b.per_task, "token": b.token}
                  for h, b in zip(handles, req.batches, strict=False)]
        return {"arrays.json": json.dumps(arrays, indent=1) + "\n"}

    def at_once(self) -> int | None:
        return self.cfg.throttle or None

    def layout(self, dry_run: bool) -> Layout:
        """Arrays of at most MaxArraySize tasks. With a throttle, ONE array holds the
        whole submission, so that ``%throttle`` limits all of it: when it has more jobs
        than MaxArraySize, each task runs several jobs one after another."""
        most = DEFAULT_MAX_ARRAY
        if not dry_run:
            # never guessed: SLURM's default where the cluster's limit is lower makes one
            # array where several are due, which sbatch refuses without naming the cause
            res = run(["scontrol", "show", "config"],
                      hint="check that slurmctld answers ('scontrol ping') and submit again")
            most = parse_max_array(res.stdout)
        return Layout(tasks=most) if self.cfg.throttle else Layout(batch=most)

    def recover(self, claims: Sequence[Claim]) -> dict[str, str] | None:
        tokens = sorted({c.token for c in claims})
        try:
            res = run(find_argv(tokens), check=False)
        except CommandError:
            return None
        if res.returncode != 0:
            return None
        arrays = parse_find(res.stdout)
        return {c.job_id: f"{arrays[c.token]}_{c.index}" for c in claims if c.token in arrays}

    def poll(self, subs: Sequence[Submission]) -> dict[str, BackendView]:
        """``squeue`` for what is queued or running; ``scontrol`` says why finished jobs
        ended, while SLURM still knows them (MinJobAge)."""
        if not subs:
            return {}
        by_task: dict[str, list[str]] = {}
        for s in subs:
            by_task.setdefault(s.backend_id, []).append(s.job_id)
        out = parse_poll(run(poll_argv(subs), check=False).stdout, by_task)
        gone = [s for s in subs if s.job_id not in out]
        for array in arrays_of(gone):
            res = run(["scontrol", "--oneliner", "show", "job", array], check=False)
            out.update(parse_finished(res.stdout, by_task))
        return out

    def check(self) -> str:
        missing = [t for t in TOOLS if not shutil.which(t)]
        if missing:
            raise FairbigError(
                f"SLURM command(s) not found: {', '.join(missing)} (backend: slurm)",
                "run fairbig on a login node of the cluster, or put SLURM's bin directory "
                "on PATH (e.g. 'module load slurm')")
        ping = run(["scontrol", "ping"], check=False)
        said = " ".join((ping.stdout + ping.stderr).split())
        if ping.returncode != 0 or " is UP" not in said:
            raise FairbigError(f"slurmctld does not answer: {said or 'no output'}",
                               "check that the cluster is up ('scontrol ping', 'sinfo')")
        info = run(["sinfo", "--noheader", "--format=%P %a"],
                   hint="check that the cluster is up ('sinfo')").stdout.split("\n")
        parts = {p.split()[0].rstrip("*"): p.split()[1] for p in info if len(p.split()) == 2}
        if self.cfg.partition and parts.get(self.cfg.partition) != "up":
            raise FairbigError(
                f"partition '{self.cfg.partition}' is "
                f"{'not up' if self.cfg.partition in parts else 'unknown'} "
                f"(partitions: {', '.join(sorted(parts)) or 'none'})",
                "set backend.slurm.partition in fairbig.yaml")
        return f"{said}; partitions: {', '.join(f'{p} ({s})' for p, s in parts.items())}"

    def output_file(self, run_dir: Path, sub: Submission) -> Path:
        return run_dir / OUTPUT.replace("%A_%a", sub.backend_id)

    def cancel(self, subs: Sequence[Submission]) -> None:
        """scancel of IDs SLURM forgot (finished jobs) exits 0; any other failure (the
        controller unreachable) must not read as a cancel that happened."""
        if not subs:
            return
        proc = run(["scancel", *sorted(s.backend_id for s in subs)], check=False)
        if proc.returncode:
            said = (proc.stderr.strip() or f"exit code {proc.returncode}").splitlines()[-1]
            raise FairbigError(f"SLURM did not cancel the jobs: {said}",
                               "they are marked cancelled and record it if they start; run "
                               "'fairbig cancel' again once 'scontrol ping' answers")


def submit_argv(batch: Batch, req: SubmitRequest, throttle: int, time: str) -> list[str]:
    """One array per batch; its job name is the batch's token, so a submit killed before
    it read the array ID finds the array again (``squeue --name``). A task that runs
    several jobs gets their time limits added up."""
    # the log path goes on the command line, not into a #SBATCH line: sbatch
    # splits those at spaces, and a newline in a path would end the comment
    limit = ([f"--time={slurm_time(slurm_seconds(time) * batch.per_task)}"]
             if batch.per_task > 1 else [])
    return ["sbatch", "--parsable", f"--job-name={batch.token}",
            f"--array={array_spec(batch.tasks, throttle)}", *limit,
            f"--output={req.run_dir / OUTPUT}", *task_argv(req, batch)]


def parse_submit(stdout: str) -> str:
    """The array ID from ``sbatch --parsable`` (``ID`` or ``ID;cluster``)."""
    array_id = stdout.strip().split(";")[0]
    if not array_id.isdigit():
        raise FairbigError(f"sbatch printed no job ID: {stdout.strip()!r}",
                           "check that sbatch works on this machine")
    return array_id


def parse_max_array(stdout: str) -> int:
    """MaxArraySize from ``scontrol show config`` (SLURM's default if it says none)."""
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", stdout, re.MULTILINE)
    return int(m.group(1)) if m else DEFAULT_MAX_ARRAY


def arrays_of(subs: Sequence[Submission]) -> list[str]:
    """The array IDs the submissions' tasks (``ARRAY_TASK``) belong to."""
    return sorted({s.backend_id.split("_")[0] for s in subs})


def poll_argv(subs: Sequence[Submission]) -> list[str]:
    return ["squeue", "--noheader", "--array", "--format=%i|%T",
            f"--jobs={','.join(arrays_of(subs))}"]


def find_argv(tokens: Sequence[str]) -> list[str]:
    return ["squeue", "--noheader", "--states=all", "--format=%F|%j",
            f"--name={','.join(tokens)}"]


def parse_find(stdout: str) -> dict[str, str]:
    """Array ID by job name (token) from ``squeue --format=%F|%j``."""
    out = {}
    for line in stdout.splitlines():
        array_id, _, name = line.strip().partition("|")
        if array_id.isdigit() and name:
            out[name] = array_id
    return out


def parse_poll(stdout: str, by_task: dict[str, list[str]]) -> dict[str, BackendView]:
    """Views by job ID from ``squeue --array --format=%i|%T``. The jobs of a running
    task that runs several are queued as far as SLURM can tell: the one running says so
    in its own record."""
    out: dict[str, BackendView] = {}
    for line in stdout.splitlines():
        task, _, state = line.partition("|")
        for tid in _expand(task):
            jobs = by_task.get(tid, [])
            view = "queued" if state in QUEUED or (state in RUNNING and len(jobs) > 1) \
                else "running" if state in RUNNING else "finished"
            out.update((jid, BackendView(view, "" if view != "finished" else state))
                       for jid in jobs)
    return out


def parse_finished(stdout: str, by_task: dict[str, list[str]]) -> dict[str, BackendView]:
    """Views of tasks that ended for a reason worth showing (TIMEOUT, OUT_OF_MEMORY, ...),
    by job ID, from ``scontrol --oneliner show job ARRAY``."""
    out: dict[str, BackendView] = {}
    for line in stdout.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        tid = f"{f.get('ArrayJobId', f.get('JobId'))}_{f.get('ArrayTaskId', '')}"
        state = f.get("JobState", "")
        if state in FAILURE_REASONS:
            out.update((jid, BackendView("finished", state)) for jid in by_task.get(tid, []))
    return out


def _expand(task: str) -> list[str]:
    """squeue prints pending array tasks compactly, e.g. ``12_[3-5,7%2]``."""
    m = re.match(r"^(\d+)_\[([^\]]+)\]$", task)
    if not m:
        return [task]
    base, spec = m.group(1), m.group(2).split("%")[0]
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out

