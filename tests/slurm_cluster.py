"""The real single-node SLURM cluster for tests (scripts/slurm-up); plain helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def slurm_available() -> bool:
    """Root on Linux with apt (to install) or slurm already installed."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    return bool(shutil.which("slurmctld") or shutil.which("apt-get"))


def ensure_slurm(max_array_size: int | None = None) -> None:
    """Start (or reconfigure) the cluster; ``None`` means SLURM's default MaxArraySize."""
    args = [str(SCRIPTS / "slurm-up")]
    if max_array_size:
        args += ["--max-array-size", str(max_array_size)]
    proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or "scripts/slurm-up failed")
