"""The real single-node SLURM cluster of scripts/slurm-up, for tests; plain functions.

``ensure_slurm()`` starts the cluster (installing Debian's slurm-wlm and munge
the first time) or leaves a running one alone; ``ensure_slurm(5)`` sets
MaxArraySize=5 (scripts/slurm-up restarts the daemons, which keeps running jobs;
checked with ``scontrol show config``), and ``ensure_slurm(None)`` puts SLURM's
default (1001) back.

The machine has one cluster and several test sessions may run at once (the
helpers' worktrees, the lead's full suite): the first ``ensure_slurm`` of a
process takes the cluster for the rest of that process (``hold_cluster``), so a
session never reconfigures or restarts the cluster under another's test.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fairbig.backends.slurm import DEFAULT_MAX_ARRAY, parse_max_array

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SLURM_UP = SCRIPTS / "slurm-up"
SLURM_DOWN = SCRIPTS / "slurm-down"


class SlurmClusterError(RuntimeError):
    """scripts/slurm-up failed; the message is its one-line error (with the log's path)."""


def slurm_available() -> bool:
    """Whether the test cluster can be started here: root on Linux, SLURM or apt present."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    if shutil.which("slurmctld") and shutil.which("munged"):
        return True
    return shutil.which("apt-get") is not None


SLURM_DIR = Path(os.environ.get("FAIRBIG_SLURM_DIR", "/var/tmp/fairbig-slurm"))
SESSIONS_LOCK = SLURM_DIR / "sessions.lock"
_held: list[int] = []  # the lock's fd while this process holds the cluster


def hold_cluster(timeout: float = 3600) -> None:
    """Take the cluster for this process until it exits (once; later calls return).

    Why: ``ensure_slurm(None)`` in one session's fixture restarted the cluster with
    SLURM's default MaxArraySize in the middle of another session's kill-point sweep,
    which had set it to 3 (its later submits then made one array where two were due).
    The fd is not inherited (PEP 446), so slurm-up's daemons never keep the lock, and
    the lock is not /tmp/fairbig-cluster.lock, which a caller may hold around pytest.
    """
    if _held:
        return
    SLURM_DIR.mkdir(parents=True, exist_ok=True)
    fd = os.open(SESSIONS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
                os.close(fd)
                raise SlurmClusterError(
                    f"the test cluster is held by another test session (pid {holder or '?'}) "
                    f"for over {timeout:.0f} s; wait for it or stop it") from None
            time.sleep(1)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held.append(fd)


def reported_max_array() -> int:
    """The MaxArraySize slurmctld reports now (``scontrol show config``)."""
    proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        raise SlurmClusterError(f"scontrol show config failed: {proc.stderr.strip()}")
    return parse_max_array(proc.stdout)


def ensure_slurm(max_array_size: int | None = None, timeout: float = 600) -> None:
    """Start (or reconfigure) the cluster; ``None`` means SLURM's default MaxArraySize.
    Holds the cluster for this process first (``hold_cluster``) and checks that
    slurmctld reports the MaxArraySize asked for."""
    hold_cluster()
    args = [str(SLURM_UP)]
    if max_array_size is not None:
        args += ["--max-array-size", str(int(max_array_size))]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise SlurmClusterError(f"scripts/slurm-up did not finish within {timeout:.0f} s "
                                "(log: /var/tmp/fairbig-slurm/slurm-up.log)") from exc
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip() or f"exit code {proc.returncode}"
        raise SlurmClusterError(detail)
    wanted = DEFAULT_MAX_ARRAY if max_array_size is None else int(max_array_size)
    found = reported_max_array()
    if found != wanted:
        raise SlurmClusterError(f"scripts/slurm-up left MaxArraySize={found}, not {wanted} "
                                "(log: /var/tmp/fairbig-slurm/slurm-up.log)")


def stop_slurm() -> None:
    """Stop slurmd and slurmctld (scripts/slurm-down); munged keeps running."""
    hold_cluster()
    proc = subprocess.run([str(SLURM_DOWN)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SlurmClusterError(proc.stderr.strip() or "scripts/slurm-down failed")
