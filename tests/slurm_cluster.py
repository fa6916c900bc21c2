"""The real single-node SLURM cluster of scripts/slurm-up, for tests; plain functions.

``ensure_slurm()`` starts the cluster (installing Debian's slurm-wlm and munge
the first time) or leaves a running one alone; ``ensure_slurm(5)`` sets
MaxArraySize=5 through ``scontrol reconfigure`` without disturbing running
jobs, and ``ensure_slurm(None)`` puts SLURM's default (1001) back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def ensure_slurm(max_array_size: int | None = None, timeout: float = 600) -> None:
    """Start (or reconfigure) the cluster; ``None`` means SLURM's default MaxArraySize."""
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


def stop_slurm() -> None:
    """Stop slurmd and slurmctld (scripts/slurm-down); munged keeps running."""
    proc = subprocess.run([str(SLURM_DOWN)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SlurmClusterError(proc.stderr.strip() or "scripts/slurm-down failed")
