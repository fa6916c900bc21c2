"""Parse tests of real scheduler answers, captured from this machine's SLURM cluster
and HTCondor pool (tests/fixtures/backends/README.md says how): no cluster, no root,
milliseconds. Each test feeds a captured answer to the backend's pure hook and
checks the views or IDs fairbig makes of it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairbig.backends import NAMES, get_backend, htcondor, slurm
from fairbig.backends.base import BackendView
from fairbig.config import Config
from fairbig.errors import FairbigError
from fairbig.jobstate import Claim, Submission

FIXTURES = Path(__file__).parent / "fixtures" / "backends"
SLURM = FIXTURES / "slurm"
CONDOR = FIXTURES / "htcondor"
TOKEN = "fairbig-capture-token"   # the captures' attempt token (job name, DAG attribute)


def captured(name: str) -> str:
    return (SLURM / name).read_text()


def array_id() -> str:
    return captured("sbatch-parsable.txt").strip()


def tasks(n: int = 10) -> dict[str, list[str]]:
    """The captured array's tasks as fairbig would have recorded them: task -> jobs."""
    return {f"{array_id()}_{i}": [f"sub-{i:02d}"] for i in range(n)}


def sub(job_id: str, backend_id: str, backend: str = "slurm") -> Submission:
    return Submission(job_id, backend, backend_id, "2026-01-01T00:00:00Z", token=TOKEN)


def test_registry_names_every_backend_once():
    assert NAMES == ("local", "slurm", "htcondor")
    assert [get_backend(n, Config()).name for n in NAMES] == list(NAMES)
    with pytest.raises(FairbigError, match="unknown backend 'pbs'"):
        get_backend("pbs", Config())


def test_sbatch_parsable_answer_and_its_refusal():
    assert slurm.parse_submit(captured("sbatch-parsable.txt")).isdigit()
    assert slurm.parse_submit("4242;cluster-b\n") == "4242"   # multi-cluster form
    with pytest.raises(FairbigError, match="sbatch printed no job ID"):
        slurm.parse_submit("sbatch: error: Batch job submission failed\n")


def test_scontrol_show_config_max_array_size():
    assert slurm.parse_max_array(captured("scontrol-show-config.txt")) == 1001
    assert slurm.parse_max_array("") == slurm.DEFAULT_MAX_ARRAY


def test_squeue_array_one_line_per_task():
    """What fairbig asks (``--array``): running tasks 2 and 4, pending 5-9; done (0, 1)
    and cancelled (3) tasks are absent."""
    by_task = tasks()
    subs = [sub(j, t) for t, js in by_task.items() for j in js]
    assert slurm.poll_argv(subs) == ["squeue", "--noheader", "--array", "--format=%i|%T",
                               f"--jobs={array_id()}"]
    views = slurm.parse_poll(captured("squeue-array.txt"), by_task)
    assert views == {**{f"sub-0{i}": BackendView("running") for i in (2, 4)},
                     **{f"sub-0{i}": BackendView("queued") for i in range(5, 10)}}


def test_squeue_compact_pending_range_expands():
    """Without ``--array`` squeue folds pending tasks into ``ID_[5-9%2]``: every task of
    the range is queued, the throttle is not a task."""
    views = slurm.parse_poll(captured("squeue-compact.txt"), tasks())
    assert "[" in captured("squeue-compact.txt")
    assert sorted(j for j, v in views.items() if v.state == "queued") == [
        f"sub-0{i}" for i in range(5, 10)]
    assert sorted(j for j, v in views.items() if v.state == "running") == ["sub-02", "sub-04"]
    assert slurm.parse_poll("77_[1,3-4]|PENDING\n", {"77_1": ["a"], "77_2": ["b"],
                                                    "77_4": ["c"]}) == {
        "a": BackendView("queued"), "c": BackendView("queued")}


def test_a_running_task_of_several_jobs_leaves_their_records_to_tell():
    """A throttled array's task runs its jobs one after another: SLURM's RUNNING says
    only that one of them may be running (the record of the one that is says so)."""
    views = slurm.parse_poll("77_0|RUNNING\n77_1|PENDING\n",
                             {"77_0": ["a", "b"], "77_1": ["c"]})
    assert views == {j: BackendView("queued") for j in "abc"}
    scontrol = "JobId=78 ArrayJobId=77 ArrayTaskId=0 JobState=TIMEOUT\n"
    assert slurm.parse_finished(scontrol, {"77_0": ["a", "b"]}) == {
        j: BackendView("finished", "TIMEOUT") for j in "ab"}


def test_scontrol_names_why_tasks_ended():
    """FAILED and CANCELLED tasks get their reason; completed, running and the pending
    range (``ArrayTaskId=5-9%2``) get nothing from scontrol."""
    views = slurm.parse_finished(captured("scontrol-show-job.txt"), tasks())
    assert views == {"sub-00": BackendView("finished", "FAILED"),
                     "sub-03": BackendView("finished", "CANCELLED")}


def test_squeue_finds_an_array_by_its_token():
    """A submit killed before it recorded the array finds it by job name (its token)."""
    assert slurm.find_argv([TOKEN]) == ["squeue", "--noheader", "--states=all", "--format=%F|%j",
                                  f"--name={TOKEN}"]
    found = slurm.parse_find(captured("squeue-find.txt"))
    assert found == {TOKEN: array_id()}   # the newest array of that name is the last line
    backend = get_backend("slurm", Config())
    assert backend.backend_id(found[TOKEN], 3, "sub-03") == f"{array_id()}_3"


def condor(name: str) -> dict:
    return json.loads((CONDOR / name).read_text())


def test_condor_q_views_of_dag_nodes():
    """The DAG's own ad and its nodes' ads: h held (finished, with the schedd's hold
    reason), a and b running, c idle (queued), d not submitted by DAGMan yet (no ad,
    its DAG alive: queued); x, of a DAG the schedd does not know, is absent."""
    poll = condor("poll.json")
    dag = poll["dag"]
    subs = [sub(j, f"{dag}:{j}", "htcondor") for j in ("h", "a", "b", "c", "d")]
    subs.append(sub("x", "999999:x", "htcondor"))
    assert htcondor.poll_constraint(subs) == (
        f"DAGManJobId == {dag} || ClusterId == {dag} || "
        "DAGManJobId == 999999 || ClusterId == 999999")
    statuses = {ad.get("DAGNodeName"): ad["JobStatus"] for ad in poll["ads"]}
    assert statuses == {None: htcondor.RUNNING, "h": htcondor.HELD, "a": htcondor.RUNNING,
                        "b": htcondor.RUNNING, "c": htcondor.IDLE}
    views = htcondor.parse_poll(poll["ads"], subs)
    assert views["a"] == views["b"] == BackendView("running")
    assert views["c"] == views["d"] == BackendView("queued")
    assert views["h"].state == "finished" and views["h"].reason.startswith("HELD: ")
    assert views["h"].reason != "HELD: "   # the schedd's reason, not an empty one
    assert "x" not in views


def test_condor_q_finds_a_dag_by_its_token():
    found = condor("recover.json")
    claims = [Claim("a", TOKEN, 0, "htcondor", "host", 1, ""),
              Claim("z", "fairbig-no-such-token", 0, "htcondor", "host", 1, "")]
    assert htcondor.find_constraint(claims) == ('FairbigAttempt == "fairbig-capture-token" || '
                                       'FairbigAttempt == "fairbig-no-such-token"')
    assert htcondor.parse_find(found["ads"], claims) == {"a": f"{found['dag']}:a"}
