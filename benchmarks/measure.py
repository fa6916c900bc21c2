"""One measured command: wall, CPU and peak RSS of exactly that command's process tree.

Other work shares the benchmark machines, so wall time alone says little: CPU time
(user + system of the command and every child it waited for) is the load-independent
figure. The command runs under ``/usr/bin/time``, a small process, because Linux
charges a child its parent's peak RSS over (v)fork + exec; the benchmark's own
interpreter would otherwise be counted as the command's peak.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Measured:
    """What one command cost and said."""

    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def figures(self) -> dict[str, float]:
        """The three figures a benchmark reports, rounded for a table."""
        return {"wall_s": round(self.wall_s, 2), "cpu_s": round(self.cpu_s, 2),
                "peak_rss_mib": round(self.peak_rss_mib)}


def measured(*cmd: str, cwd: Path | None = None, input: str | None = None,
             check: bool = True) -> Measured:
    """Run CMD, return its output and cost (``check``: raise on a non-zero exit)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as usage:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-q", "-o", usage.name, "-f", "%U %S %M",
                               *cmd], cwd=cwd, input=input, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        user, system, kib = usage.read().split()[-3:]
    if check and proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return Measured(wall, float(user) + float(system), int(kib) / 1024, proc.returncode,
                    proc.stdout, proc.stderr)


def load_average() -> str:
    """The 1/5/15-minute load averages, to say how busy the machine was."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
