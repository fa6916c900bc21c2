"""The test cluster itself: start, real sbatch jobs and arrays, MaxArraySize."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from .slurm_cluster import ensure_slurm, slurm_available

pytestmark = pytest.mark.slurm

# Jobs of other tests may hold the two CPUs for a while: generous limits.
JOB_TIMEOUT = 300


@pytest.fixture(scope="module")
def cluster() -> None:
    if not slurm_available():
        pytest.skip("needs root on Linux (to install and start slurm-wlm)")
    ensure_slurm(None)


def sbatch(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sbatch", "--parsable", f"--chdir={cwd}", "--output=/dev/null",
                           "--mem=50M", *args], capture_output=True, text=True,
                          timeout=JOB_TIMEOUT)


def config_value(key: str) -> str:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                         check=True).stdout
    found = re.search(rf"^{key}\s*=\s*(\S+)", out, re.MULTILINE)
    assert found, f"{key} not in scontrol show config"
    return found.group(1)


def daemon_pids() -> list[str]:
    base = Path("/var/tmp/fairbig-slurm")
    return [(base / f"{name}.pid").read_text().strip() for name in ("slurmctld", "slurmd")]


def test_start_is_idempotent(cluster):
    pids = daemon_pids()
    started = time.monotonic()
    ensure_slurm(None)
    assert time.monotonic() - started < 5
    assert daemon_pids() == pids
    state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True,
                           check=True).stdout.split()
    assert state and state[0] in {"idle", "mixed", "allocated", "completing"}


def test_job(cluster, tmp_path: Path):
    proc = sbatch("--wait", "--wrap", "echo hello > OUT", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().isdigit()
    assert (tmp_path / "OUT").read_text() == "hello\n"


def test_array_with_throttle(cluster, tmp_path: Path):
    proc = sbatch("--wait", "--array=0-3%2", "--wrap",
                  'echo "$SLURM_ARRAY_TASK_ID" > "task-$SLURM_ARRAY_TASK_ID"', cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {p.name: p.read_text() for p in tmp_path.glob("task-*")} == {
        f"task-{i}": f"{i}\n" for i in range(4)}


def test_max_array_size(cluster, tmp_path: Path):
    """MaxArraySize is enforced (a restart, not just reconfigure) and then restored.

    Also: a job running across that restart still completes.
    """
    running = sbatch("--wrap", "sleep 4; echo survived > RUNNING", cwd=tmp_path)
    assert running.returncode == 0, running.stderr
    try:
        ensure_slurm(max_array_size=5)
        assert config_value("MaxArraySize") == "5"
        refused = sbatch("--hold", "--array=0-7", "--wrap", "true", cwd=tmp_path)
        assert refused.returncode != 0, "an array of 8 passed MaxArraySize=5"
        assert "array" in refused.stderr.lower()
        accepted = sbatch("--hold", "--array=0-4", "--wrap", "true", cwd=tmp_path)
        assert accepted.returncode == 0, accepted.stderr
        subprocess.run(["scancel", accepted.stdout.strip()], check=True)
    finally:
        ensure_slurm(None)
    assert config_value("MaxArraySize") == "1001"
    restored = sbatch("--hold", "--array=0-7", "--wrap", "true", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    subprocess.run(["scancel", restored.stdout.strip()], check=True)
    deadline = time.monotonic() + JOB_TIMEOUT
    while not (tmp_path / "RUNNING").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (tmp_path / "RUNNING").read_text() == "survived\n"
