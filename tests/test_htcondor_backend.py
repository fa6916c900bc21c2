"""The HTCondor backend against a real pool (scripts/condor-up): DAGs, throttles, resubmits."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fairbig import config as cfgmod

from .conftest import (
    BIN,
    UKB_COMMAND,
    fairbig,
    init_analysis,
    max_overlap,
    planned_sleeping_analysis,
    status,
    wait_idle,
)

pytestmark = [pytest.mark.htcondor, pytest.mark.slow]


@pytest.fixture(scope="module")
def pool():
    from .condor_pool import condor_available, ensure_condor

    if not condor_available():
        pytest.skip("needs root, namespaces and the htcondor bindings for the test pool")
    env = ensure_condor()
    old = os.environ.get("CONDOR_CONFIG")
    os.environ.update(env)
    yield env
    if old is None:
        os.environ.pop("CONDOR_CONFIG", None)
    else:
        os.environ["CONDOR_CONFIG"] = old


def configure(ana: Path, **settings: object) -> None:
    cfgmod.update_file(ana / "fairbig.yaml", {"backend.name": "htcondor",
                                               "backend.htcondor.request_memory": "300MB",
                                               "backend.htcondor.request_disk": "100MB",
                                               **settings})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "htcondor settings"], cwd=ana,
                   check=True, capture_output=True)


def test_ukb_mini_through_a_dag_with_throttle(pool, tmp_path, ukb_input, image, lab_key):
    ana = init_analysis(tmp_path, ukb_input, image, lab_key)
    configure(ana, **{"backend.htcondor.maxjobs": 2})
    fairbig("plan", cwd=ana)
    out = json.loads(fairbig("submit", "--json", cwd=ana).stdout)
    assert out["backend"] == "htcondor" and len(out["submitted"]) == 4
    dag = (Path(out["run_dir"]) / "fairbig.dag").read_text()
    assert all(f"JOB {j} job.sub" in dag for j in ukb_input["ids"])
    seen = wait_idle(ana, timeout=400)
    n = len(ukb_input["ids"])
    assert all(sum(c.values()) == n for c in seen)
    assert seen[-1]["done"] == n, seen
    state_dir = ana / ".fairbig" / "work" / "state"
    records = [json.loads(p.read_text()) for p in state_dir.glob("*.json")]
    assert len(records) == n and max_overlap(records) <= 2


@pytest.mark.long
def test_failed_node_resubmitted_alone(pool, tmp_path, ukb_input, image, lab_key):
    ids = ukb_input["ids"]
    cmd = f"sh -c '[ {{subject}} = {ids[0]} ] && exit 1; {UKB_COMMAND}'"
    ana = init_analysis(tmp_path, ukb_input, image, lab_key, command=cmd)
    configure(ana)
    fairbig("plan", cwd=ana)
    fairbig("submit", cwd=ana)
    wait_idle(ana)
    rep = status(ana)
    st = {j["job_id"]: j["state"] for j in rep["jobs"]}
    assert st[ids[0]] == "failed" and rep["failures"][ids[0]]
    assert [st[j] for j in ids[1:]] == ["done"] * 3
    cfgmod.update_file(ana / "fairbig.yaml", {"command": UKB_COMMAND})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "fix"], cwd=ana, check=True,
                   capture_output=True)
    fairbig("plan", cwd=ana)
    out = json.loads(fairbig("submit", "--failed", "--json", cwd=ana).stdout)
    assert out["submitted"] == [ids[0]]
    assert f"JOB {ids[1]} " not in (Path(out["run_dir"]) / "fairbig.dag").read_text()
    wait_idle(ana)
    assert status(ana)["counts"]["done"] == 4


# Loaded by the fairbig process through PYTHONPATH: the real bindings submit; the
# process is SIGKILLed just before or just after the schedd accepted the DAG (the
# HTCondor counterpart of test_exactly_once_slurm.py's stand-in sbatch).
KILLER = """\
import os, signal
import htcondor2
_real = htcondor2.Schedd.submit
def _submit(self, *args, **kwargs):
    if os.environ.get("FAIRBIG_TEST_AT") == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = _real(self, *args, **kwargs)
    if os.environ.get("FAIRBIG_TEST_AT") == "after":
        os.kill(os.getpid(), signal.SIGKILL)
    return result
htcondor2.Schedd.submit = _submit
"""


def live_dags(ana: Path) -> list[str]:
    """The DAGs of this analysis the schedd holds (DAGMan runs with the run dir as Iwd)."""
    import htcondor2

    ads = htcondor2.Schedd().query(constraint="FairbigAttempt =!= undefined",
                                   projection=["ClusterId", "Iwd"])
    return [str(ad["ClusterId"]) for ad in ads if str(ad.get("Iwd", "")).startswith(str(ana))]


@pytest.mark.long
@pytest.mark.parametrize(("point", "accepted"), [("before", 0), ("after", 4)])
def test_submit_killed_before_or_after_the_schedd_forgets_nothing(pool, tmp_path, ukb_input,
                                                                  image, lab_key, point,
                                                                  accepted):
    """Killed before the DAG reached the schedd: nothing is queued, status says so and a
    second submit queues all. Killed after (before fairbig recorded the DAG): status
    finds it by its token and shows every job queued, a second submit queues nothing
    twice, cancel reaches them all."""
    ana = planned_sleeping_analysis(tmp_path, ukb_input, image, lab_key, configure)
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(KILLER)
    n = len(ukb_input["ids"])
    try:
        proc = fairbig("submit", cwd=ana, check=False,
                       env={"PYTHONPATH": str(shim), "FAIRBIG_TEST_AT": point})
        assert proc.returncode == -9, (proc.stdout, proc.stderr)
        assert len(live_dags(ana)) == (1 if accepted else 0)
        c = status(ana)["counts"]
        assert c["queued"] + c["running"] == accepted, status(ana)["jobs"]
        out = json.loads(fairbig("submit", "--json", cwd=ana).stdout)
        assert (len(out["submitted"]), len(out["active"])) == (n - accepted, accepted)
        assert len(live_dags(ana)) == (1 if accepted in (0, n) else 2)
        cancelled = json.loads(fairbig("cancel", "--json", cwd=ana).stdout)["cancelled"]
        assert len(cancelled) == n
        wait_idle(ana)
        assert status(ana)["counts"]["cancelled"] == n, status(ana)["jobs"]
    finally:
        import htcondor2

        for dag in live_dags(ana):
            htcondor2.Schedd().act(htcondor2.JobAction.Remove, f"ClusterId == {dag}")
