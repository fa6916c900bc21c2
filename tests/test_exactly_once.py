"""Exactly once on the submit side (issue 15; issue 14 §3), local backend, real tools.

Attempts are counted from the jobs' own logs: every attempt logs ``step clone``
once. The SLURM side is in test_exactly_once_slurm.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fairbig.backends.base import BackendView
from fairbig.jobstate import JobRecord, records_cache
from fairbig.jobtable import Job
from fairbig.states import INPUT_CHANGED, classify
from fairbig.storeview import Finished

from .conftest import BIN, UKB_COMMAND, fairbig, init_analysis, load_generator, status

SLURM_TOOLS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "sacct")


def attempts(ana: Path) -> dict[str, int]:
    """Attempts per job, from the jobs' logs (one ``step clone`` line per attempt)."""
    logs = ana / ".fairbig" / "work" / "logs"
    return {p.stem: p.read_text().count("] step clone") for p in logs.glob("*.log")}


def held_in_run_step(job: str) -> list[int]:
    """SIGSTOP the processes of ``job``'s run step (the ``slow`` pipeline's shell and
    the datalad call around it), so that a test can act while the job is surely still
    running however loaded the machine is; the caller sends SIGCONT."""
    found = subprocess.run(["pgrep", "-f", f"sleep 8; .*{job}"], capture_output=True,
                           text=True).stdout.split()
    pids = [int(p) for p in found]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def jobs_by_id(ana: Path) -> dict[str, dict]:
    return {j["job_id"]: j for j in status(ana)["jobs"]}


def path_without(tools: tuple[str, ...], where: Path) -> str:
    """A PATH like ours in which ``tools`` do not exist (a host without the scheduler),
    leaving the real cluster alone."""
    where.mkdir(parents=True, exist_ok=True)
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            link = where / name
            if name not in tools and not link.exists():
                link.symlink_to(Path(d) / name)
    return str(where)


def snapshot(ana: Path) -> dict[str, str]:
    """Every file under .fairbig/work (state records, claims, submission log, runs) and
    the plan, by content hash; not the readers' records cache, which any read refreshes
    as records age into it (it holds no state)."""
    cache = records_cache(ana / ".fairbig" / "work" / "state")
    files = [p for p in (ana / ".fairbig" / "work").rglob("*") if p.is_file()
             and p.name != "submit.lock" and p != cache]
    files.append(ana / ".fairbig" / "plan.tsv")
    return {str(p.relative_to(ana)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in files}


@pytest.fixture(scope="module")
def slow(tmp_path_factory, ukb_input, image, lab_key):
    """An analysis whose jobs spend 8 s in their run step (time to race them)."""
    base = tmp_path_factory.mktemp("once")
    ana = init_analysis(base, ukb_input, image, lab_key,
                        command="sh -c 'sleep 8; " + UKB_COMMAND + "'")
    fairbig("plan", cwd=ana)
    return ana


@pytest.fixture(scope="module")
def failing(tmp_path_factory, ukb_input, image, lab_key):
    """An analysis whose four jobs all failed (exit code 3 in step run)."""
    base = tmp_path_factory.mktemp("failing")
    ana = init_analysis(base, ukb_input, image, lab_key, command="sh -c 'exit 3'")
    fairbig("plan", cwd=ana)
    fairbig("submit", "-j", "4", cwd=ana, check=False)
    assert status(ana)["counts"]["failed"] == len(ukb_input["ids"])
    return ana


@pytest.mark.slow
def test_two_local_submits_at_once_run_each_job_once(slow, ukb_input):
    ids = ukb_input["ids"]
    cmd = [str(BIN / "fairbig"), "submit", "-j", "4"]
    procs = [subprocess.Popen(cmd, cwd=slow, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert attempts(slow) == {j: 1 for j in ids}
    # one submitted them all, the other says why it submitted nothing
    said = [[ln for ln in o.strip().splitlines() if not ln.startswith("suggested limits")]
            for o in outs]  # submit ends with its time/mem suggestion once jobs finished
    assert sorted(lines[-1].split(";")[0] for lines in said) == [
        f"nothing to submit: {len(ids)} job(s) already queued or running (see 'fairbig "
        "status')", f"submitted {len(ids)} job(s) to local"], outs
    assert status(slow)["counts"]["done"] == len(ids)


@pytest.mark.slow
def test_plan_update_while_a_job_runs_then_second_submit(slow, ukb_input):
    """The running job stays running ("input changed"), a second submit leaves it
    alone; once it ended the job is planned again and its next run is the result."""
    ana, gen = slow, load_generator()
    victim, record = ukb_input["ids"][1], "20252_2_0.zip"
    good = (ukb_input["path"] / victim / record).read_bytes()
    before = attempts(ana)[victim]
    try:
        gen.replace_record(ukb_input["path"], victim, record,
                           gen.make_record(record, victim, seed=97), "update")
        assert json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)["changed"] \
            == [victim]
        first = subprocess.Popen([str(BIN / "fairbig"), "submit"], cwd=ana, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600  # 2 cores shared with other test runs
        while not (held := held_in_run_step(victim)):
            assert time.monotonic() < deadline and first.poll() is None, jobs_by_id(ana)
            time.sleep(0.5)
        try:  # the job is held in its run step while the input changes again
            gen.replace_record(ukb_input["path"], victim, record,
                               gen.make_record(record, victim, seed=98), "update again")
            assert json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)[
                "changed"] == [victim]
            j = jobs_by_id(ana)[victim]
            assert (j["state"], j["detail"]) == ("running", INPUT_CHANGED)
            second = fairbig("submit", cwd=ana)
            assert "nothing to submit: 1 job(s) already queued or running" in second.stdout
        finally:
            for pid in held:
                os.kill(pid, signal.SIGCONT)
        first.communicate(timeout=300)
        assert attempts(ana)[victim] == before + 1
        assert jobs_by_id(ana)[victim]["state"] == "planned"  # its result is of the old input
        third = fairbig("submit", cwd=ana)
        assert "submitted 1 job(s)" in third.stdout
        assert attempts(ana)[victim] == before + 2
        assert jobs_by_id(ana)[victim]["state"] == "done"
    finally:
        gen.restore_record(ukb_input["path"], victim, record, good)


@pytest.mark.slow
def test_failed_submit_changes_nothing(failing, tmp_path):
    """`submit --failed --backend slurm` on a host without the SLURM tools: one line,
    the failed jobs stay failed with their step and exit code, nothing is written."""
    before, report = snapshot(failing), status(failing)
    runs = sorted(p.name for p in (failing / ".fairbig" / "work" / "runs").iterdir())
    out = fairbig("submit", "--failed", "--backend", "slurm", cwd=failing, check=False,
                  env={"PATH": path_without(SLURM_TOOLS, tmp_path / "bin")})
    assert out.returncode != 0
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("fairbig: error:") and "scontrol: command not found" in line
    assert snapshot(failing) == before
    assert sorted(p.name for p in (failing / ".fairbig" / "work" / "runs").iterdir()) == runs
    assert status(failing) == report
    assert {j["detail"] for j in report["jobs"]} == {"exit code 3 in step run"}


@pytest.mark.slow
def test_node_clock_behind_does_not_make_a_failed_job_lost(failing, ukb_input):
    """A node whose clock is 2 minutes behind the submit host writes records that look
    older than the submission: the attempt token, not the clock, says whose they are."""
    fairbig("submit", "--failed", "-j", "4", cwd=failing, check=False)
    state = failing / ".fairbig" / "work" / "state"
    for jid in ukb_input["ids"]:
        path = state / f"{jid}.json"
        rec = json.loads(path.read_text())
        rec.update(started=rec["started"] - 120, updated=rec["updated"] - 120)
        path.write_text(json.dumps(rec))
    rep = status(failing)
    assert rep["counts"]["failed"] == len(ukb_input["ids"]), rep["jobs"]
    assert {j["detail"] for j in rep["jobs"]} == {"exit code 3 in step run"}


def test_superseded_record_is_reported_not_lost():
    """A unit edge case: the job's own record says its push lost to a newer result."""
    job = Job("sub-1", "sub-1", "sub-1", "s2", ("in",), ("out",), "cmd")
    rec = JobRecord("sub-1", "superseded", "finished", 0, "n1", 1, "7_0", 0, 0, "", "s2",
                    "fairbig-abc")
    st = classify(job, Finished({}, {}), rec, None, None)
    assert st.state == "superseded"
    old = JobRecord("sub-1", "running", "run", None, "n1", 1, "7_0", 0, 0, "", "s1", "t")
    st = classify(job, Finished({}, {}), old, None, BackendView("running"))
    assert (st.state, st.detail) == ("running", INPUT_CHANGED)


def test_job_stopped_by_cancel_mid_step_is_cancelled_not_lost():
    """A unit edge case (the SLURM kill-point sweep, clean clone at 3ae3924: 2 of 4
    cancelled jobs shown otherwise): a cancel was asked, the scheduler no longer runs
    the job, and its own record still says running (killed before it wrote more)."""
    job = Job("sub-1", "sub-1", "sub-1", "s2", ("in",), ("out",), "cmd")
    rec = JobRecord("sub-1", "running", "get", None, "n1", 1, "7_0", 0, 0, "", "s2", "t")
    assert classify(job, Finished({}, {}), rec, None, None).state == "lost"
    st = classify(job, Finished({}, {}), rec, None, None, cancel_requested=True)
    assert (st.state, st.detail) == ("cancelled", "cancelled in step get")
    st = classify(job, Finished({}, {}), rec, None, BackendView("running"),
                  cancel_requested=True)
    assert st.state == "running"          # still running: the cancel has not landed yet
