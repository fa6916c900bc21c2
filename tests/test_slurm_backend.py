"""The SLURM backend against a real single-node slurmctld/slurmd (scripts/slurm-up)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fairbig import config as cfgmod

from .conftest import (
    BIN,
    UKB_COMMAND,
    fairbig,
    init_analysis,
    load_generator,
    max_overlap,
    status,
    wait_idle,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm():
    from .slurm_cluster import ensure_slurm, slurm_available

    if not slurm_available():
        pytest.skip("needs root on Linux to start the test cluster")
    ensure_slurm(None)
    yield
    ensure_slurm(None)


def configure(ana: Path, **settings: object) -> None:
    cfgmod.update_file(ana / "fairbig.yaml", {"backend.name": "slurm",
                                               "backend.slurm.mem": "300M", **settings})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "slurm settings"], cwd=ana, check=True,
                   capture_output=True)


def counts(ana: Path) -> dict[str, int]:
    return status(ana)["counts"]


def test_ukb_mini_through_arrays_with_exact_counts(slurm, tmp_path, ukb_input, image, lab_key):
    ana = init_analysis(tmp_path, ukb_input, image, lab_key)
    configure(ana, **{"backend.slurm.throttle": 2})
    fairbig("plan", cwd=ana)
    out = json.loads(fairbig("submit", "--json", cwd=ana).stdout)
    assert out["backend"] == "slurm" and len(out["submitted"]) == 4
    assert len(out["backend_ids"]) == 4 and all("_" in b for b in out["backend_ids"])
    seen = wait_idle(ana)
    n = len(ukb_input["ids"])
    for c in seen:  # every view accounts for every job exactly once
        assert sum(c.values()) == n
        assert c["running"] <= 2  # the %2 throttle
    assert any(c["queued"] or c["running"] for c in seen)
    assert seen[-1]["done"] == n
    run_dir = Path(out["run_dir"])
    header = (run_dir / "job.sh").read_text()
    assert "#SBATCH --mem=300M" in header and "#SBATCH --array" not in header
    assert "--array=0-3%2" in (run_dir / "submit.sh").read_text()


@pytest.mark.long
def test_failure_timeout_cancel_then_resubmit(slurm, tmp_path, ukb_input, image, lab_key):
    ids = ukb_input["ids"]
    # job 0 fails (its command exits 1), job 1 sleeps past the 1-minute limit,
    # job 2 sleeps long and is cancelled, job 3 succeeds.
    cmd = ("sh -c 'case {subject} in " + f"{ids[0]}) exit 1;; {ids[1]}) sleep 150;; "
           f"{ids[2]}) sleep 300;; esac; " + UKB_COMMAND + "'")
    ana = init_analysis(tmp_path, ukb_input, image, lab_key, command=cmd)
    configure(ana, **{"backend.slurm.time": "00:01:00"})
    fairbig("plan", cwd=ana)
    fairbig("submit", cwd=ana)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        st = {j["job_id"]: j for j in status(ana)["jobs"]}
        if st[ids[2]]["state"] == "running" and st[ids[2]]["step"] == "run":
            break
        time.sleep(1)
    cancelled = json.loads(fairbig("cancel", ids[2], "--json", cwd=ana).stdout)["cancelled"]
    assert cancelled == [ids[2]]
    wait_idle(ana, timeout=240)
    rep = status(ana)
    st = {j["job_id"]: j for j in rep["jobs"]}
    assert st[ids[0]]["state"] == "failed" and rep["failures"][ids[0]]
    assert st[ids[1]]["state"] == "failed" and "TIMEOUT" in st[ids[1]]["detail"]
    assert st[ids[2]]["state"] == "cancelled"
    assert st[ids[3]]["state"] == "done"
    # a working pipeline and a sane time limit: only the three are resubmitted
    cfgmod.update_file(ana / "fairbig.yaml", {"command": UKB_COMMAND,
                                               "backend.slurm.time": "00:10:00"})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "fixed"], cwd=ana, check=True,
                   capture_output=True)
    fairbig("plan", cwd=ana)
    out = json.loads(fairbig("submit", "--failed", "--json", cwd=ana).stdout)
    assert sorted(out["submitted"]) == sorted(ids[:3])
    wait_idle(ana)
    assert counts(ana)["done"] == 4


class RunningSampler(threading.Thread):
    """The most tasks of the given arrays SLURM reports running, asked every second."""

    def __init__(self, arrays: list[str]) -> None:
        super().__init__(daemon=True)
        self.argv = ["squeue", "--noheader", "--array", "--states=RUNNING", "--format=%i",
                     f"--jobs={','.join(arrays)}"]
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            out = subprocess.run(self.argv, capture_output=True, text=True).stdout
            self.samples.append(len(out.split()))
            self.done.wait(1)


@pytest.mark.long
def test_throttle_holds_for_a_submission_past_max_array_size_under_export_none(
        slurm, tmp_path_factory, image, lab_key):
    """5 jobs and MaxArraySize=2 would be 3 arrays of %1 each (up to 2 running on this
    2-CPU node, where a throttle of 2 could not be exceeded): with the throttle ONE array
    holds them all, its tasks running jobs one after another, and never more than 1
    runs. ``--export=NONE`` hands the tasks no environment: every job still completes,
    and a rerun of a job that shared a task is IDENTICAL."""
    from .slurm_cluster import ensure_slurm

    base = tmp_path_factory.mktemp("split")
    gen = load_generator()
    store = f"ria+file://{base}/input-store"
    ids = gen.generate(base / "ukb", 5, 3, store)
    ana = init_analysis(base, {"url": f"{store}#~ukb"}, image, lab_key)
    configure(ana, **{"backend.slurm.throttle": 1,
                      "backend.slurm.extra": ["#SBATCH --export=NONE"]})
    fairbig("plan", cwd=ana)
    ensure_slurm(2)
    try:
        out = json.loads(fairbig("submit", "--json", cwd=ana).stdout)
        arrays = json.loads((Path(out["run_dir"]) / "arrays.json").read_text())
        sampler = RunningSampler([a["array_id"] for a in arrays])
        sampler.start()
        try:
            seen = wait_idle(ana, timeout=400)
        finally:
            sampler.done.set()
            sampler.join()
    finally:
        ensure_slurm(None)
    assert [(a["count"], a["per_task"]) for a in arrays] == [(5, 3)]
    assert "--array=0-1%1" in (Path(out["run_dir"]) / "submit.sh").read_text()
    assert max(sampler.samples) == 1 and len(sampler.samples) > 10, sampler.samples
    assert all(c["running"] <= 1 and sum(c.values()) == len(ids) for c in seen), seen
    state_dir = ana / ".fairbig" / "work" / "state"
    records = [json.loads(p.read_text()) for p in state_dir.glob("*.json")]
    assert len(records) == len(ids) and max_overlap(records) == 1
    assert counts(ana)["done"] == len(ids)
    fairbig("merge", cwd=ana)
    rerun = json.loads(fairbig("rerun", ids[1], "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"] and set(rerun["files"].values()) == {"identical"}, rerun
