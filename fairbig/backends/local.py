"""The local backend: jobs as separate processes on this machine, N at a time."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .. import ui
from ..config import Config
from ..jobstate import Submission, now
from .base import Backend, BackendView, SubmitRequest

GRACE_SECONDS = 30
OUTPUT = "{job_id}.out"  # in the run directory; a job's output before its log starts


class LocalBackend(Backend):
    """Not a scheduler: ``submit`` itself runs the jobs, N at a time, and records each as
    it starts (so it replaces the base class's hand-over of whole batches)."""

    name = "local"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.max_jobs = config.backend.local.jobs or os.cpu_count() or 1

    def at_once(self) -> int:
        return self.max_jobs

    def submit(self, req: SubmitRequest) -> list[Submission]:
        if req.dry_run:
            return []
        host = socket.gethostname()
        (batch,) = req.batches
        pending = list(batch.job_ids)
        running: dict[str, subprocess.Popen] = {}
        subs: list[Submission] = []
        failed = 0
        with ui.progress(len(pending), "jobs") as bar:
            try:
                while pending or running:
                    while pending and len(running) < self.max_jobs:
                        jid = pending.pop(0)
                        if (req.state_dir / f"{jid}.cancel").exists():
                            bar.advance(1)  # cancelled while waiting here: never starts
                            continue
                        proc = self._start(req, jid, batch.token)
                        running[jid] = proc
                        sub = Submission(jid, self.name, f"{host}:{proc.pid}", now(),
                                         token=batch.token)
                        subs.append(sub)
                        req.record([sub])
                    for jid, proc in list(running.items()):
                        if proc.poll() is not None:
                            del running[jid]
                            failed += proc.returncode != 0
                            bar.advance(1, f"({failed} failed)" if failed else "")
                    time.sleep(0.05)
            except KeyboardInterrupt:
                ui.step(f"interrupted: stopping {len(running)} running job(s)")
                self._stop(req, running)
                raise
        return subs

    def _start(self, req: SubmitRequest, jid: str, token: str) -> subprocess.Popen:
        log = (req.run_dir / OUTPUT.format(job_id=jid)).open("ab")
        try:
            return subprocess.Popen(["bash", str(req.script), jid], stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True,
                                    env={**os.environ, "FAIRBIG_BACKEND_ID": f"local-{jid}",
                                         "FAIRBIG_ATTEMPT": token})
        finally:
            log.close()

    def _stop(self, req: SubmitRequest, running: dict[str, subprocess.Popen]) -> None:
        for jid, proc in running.items():
            (req.state_dir / f"{jid}.cancel").touch()
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.time() + GRACE_SECONDS
        for proc in running.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()

    def poll(self, subs: Sequence[Submission]) -> dict[str, BackendView]:
        host = socket.gethostname()
        out = {}
        for s in subs:
            sub_host, _, pid = s.backend_id.rpartition(":")
            if sub_host == host and pid.isdigit() and alive(int(pid)):
                out[s.job_id] = BackendView("running")
        return out

    def output_file(self, run_dir: Path, sub: Submission) -> Path:
        return run_dir / OUTPUT.format(job_id=sub.job_id)

    def cancel(self, subs: Sequence[Submission]) -> None:
        for pid in (int(s.backend_id.rpartition(":")[2]) for s in subs):
            _signal_group(pid, signal.SIGTERM)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
