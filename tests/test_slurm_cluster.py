"""The test cluster itself: real sbatch, arrays, MaxArraySize reconfiguration."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .slurm_cluster import ensure_slurm, slurm_available

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def cluster():
    if not slurm_available():
        pytest.skip("needs root on Linux")
    ensure_slurm(None)


def test_job_and_array(cluster, tmp_path: Path):
    subprocess.run(["sbatch", "--parsable", "--wait", f"--chdir={tmp_path}", "--output=/dev/null",
                    "--wrap", "echo hello > out"], check=True, capture_output=True)
    assert (tmp_path / "out").read_text() == "hello\n"
    task = "$SLURM_ARRAY_TASK_ID"
    subprocess.run(["sbatch", "--parsable", "--wait", "--array=0-3%2", f"--chdir={tmp_path}",
                    "--output=/dev/null", "--wrap", f"echo {task} > t{task}"],
                   check=True, capture_output=True)
    assert sorted(p.read_text() for p in tmp_path.glob("t*")) == ["0\n", "1\n", "2\n", "3\n"]


def test_max_array_size(cluster, tmp_path: Path):
    try:
        ensure_slurm(5)
        conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                              check=True).stdout
        assert re.search(r"^MaxArraySize\s*=\s*5$", conf, re.MULTILINE)
        refused = subprocess.run(["sbatch", "--array=0-7", "--output=/dev/null", "--wrap",
                                  "true"], capture_output=True, text=True)
        assert refused.returncode != 0
    finally:
        ensure_slurm(None)
