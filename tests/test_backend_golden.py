"""Golden-file tests of what fairbig writes for a scheduler: the job body, the SLURM
header and array commands, the HTCondor submit description and DAG.

Pure rendering with fixed values: no cluster, no root, milliseconds. A template
or hook change shows as a diff against tests/golden/; when the change is meant,
regenerate with ``FAIRBIG_REGEN_GOLDEN=1 .venv/bin/python -m pytest -q
tests/test_backend_golden.py`` and review ``git diff tests/golden``.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest

from fairbig.backends import get_backend
from fairbig.backends.base import Batch, SubmitRequest
from fairbig.config import Config
from fairbig.jobstate import Submission
from fairbig.render import JobContext, job_body

GOLDEN = Path(__file__).parent / "golden"
RUN_DIR = Path("/data/ana/.fairbig/work/runs/20260101-120000-slurm")
WORK = RUN_DIR.parent.parent


def check_golden(name: str, text: str) -> None:
    """``text`` must equal tests/golden/``name`` (FAIRBIG_REGEN_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("FAIRBIG_REGEN_GOLDEN") == "1":
        path.write_text(text)
        return
    want = path.read_text() if path.exists() else ""
    if text != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                            f"golden/{name}", "rendered"))
        pytest.fail(f"{name} differs from its golden file (FAIRBIG_REGEN_GOLDEN=1 "
                    f"regenerates it if the change is meant):\n{diff}")


def request(job_ids: list[str], batches: list[Batch], run_dir: Path = RUN_DIR,
            dry_run: bool = True) -> SubmitRequest:
    return SubmitRequest(job_ids, batches, run_dir / "job.sh", run_dir, WORK / "logs",
                         WORK / "state", record=lambda subs: None, dry_run=dry_run)


def slurm_config() -> Config:
    cfg = Config()
    cfg.backend.name = "slurm"
    s = cfg.backend.slurm
    s.partition, s.account, s.qos = "short", "lab-42", "normal"
    s.time, s.mem, s.cpus, s.throttle = "02:30:00", "8G", 4, 2
    s.extra = ["#SBATCH --constraint=avx2"]
    return cfg


def htcondor_config() -> Config:
    cfg = Config()
    cfg.backend.name = "htcondor"
    h = cfg.backend.htcondor
    h.request_cpus, h.request_memory, h.request_disk, h.retry = 2, "6GB", "10GB", 2
    h.extra = ['requirements = (OpSysMajorVer == 9)']
    return cfg


# the second batch's tasks run two jobs each (a throttled array past MaxArraySize)
SLURM_BATCHES = [Batch("tok-a1", ["sub-01", "sub-02", "sub-03"], 0),
                 Batch("tok-b2", ["sub-04", "sub-05", "sub-06"], 3, per_task=2)]
SLURM_JOBS = [j for b in SLURM_BATCHES for j in b.job_ids]


def test_job_body_golden():
    ctx = JobContext(
        input_url="ria+file:///data/input-store#9e1bd1c2-1111-2222-3333-444455556666",
        input_git="/data/input-store/9e1/bd1c2-1111-2222-3333-444455556666",
        output_url="/data/output-store/9e1/bd1c2-1111-2222-3333-444455556666",
        storage="output-storage", lock_file="/data/output-store/.fairbig-push.lock",
        state_dir=str(WORK / "state"), log_dir=str(WORK / "logs"),
        plan_commit="0123456789abcdef0123456789abcdef01234567", results="results",
        container="code/containers/pipeline", workdir="/scratch/$USER",
        bindir="/opt/fairbig/.venv/bin", main_branch="main", push_lock_timeout=3600,
        env_setup=("module load apptainer", "export TMPDIR=/scratch/tmp"),
        run_id=RUN_DIR.name, header="#SBATCH --time=01:00:00\n",
        annex_bindir="/opt/fairbig/.venv/lib/python3.11/site-packages/git_annex",
        stores=("ria+file:///data/input-store", "ria+file:///data/output-store",
                "ria+file:///data/ukb store"), annex_version="10.20261026",
        container_image="code/containers/images/pipeline.sif")
    check_golden("job.sh", job_body(ctx))


def test_slurm_header_golden():
    backend = get_backend("slurm", slurm_config())
    check_golden("slurm-header.sh", backend.header(request(["sub-01"], SLURM_BATCHES)))


def test_slurm_array_commands_golden():
    """One ``sbatch`` per batch: its array (with the %throttle), its token as job name;
    the job list, offset, jobs per task and token as the script's arguments (so that
    any ``--export`` works); a task of two jobs gets twice the time."""
    backend = get_backend("slurm", slurm_config())
    req = request(SLURM_JOBS, SLURM_BATCHES)
    assert list(backend.files(req)) == ["submit.sh"]
    check_golden("slurm-submit.sh", backend.files(req)["submit.sh"])
    arrays = backend.record_files(req, ["101", "102"])["arrays.json"]
    check_golden("slurm-arrays.json", arrays)
    assert backend.record_files(req, [])["arrays.json"] == "[]\n"  # a dry run's


def test_htcondor_submit_description_and_dag_golden(monkeypatch):
    monkeypatch.setenv("HOME", "/home/lab")
    backend = get_backend("htcondor", htcondor_config())
    run_dir = RUN_DIR.with_name("20260101-120000-htcondor")
    req = request(["sub-01", "sub-02"], [Batch("tok-c3", ["sub-01", "sub-02"], 0)], run_dir)
    files = backend.files(req)
    assert list(files) == ["job.sub", "fairbig.dag"]
    check_golden("htcondor-job.sub", files["job.sub"])
    check_golden("htcondor.dag", files["fairbig.dag"])


@pytest.mark.parametrize("name", ["slurm", "htcondor"])
def test_dry_run_writes_the_hooks_files_and_submits_nothing(name, tmp_path, monkeypatch):
    """The base class writes exactly what the hooks rendered, and a dry run calls no
    scheduler: none is on PATH here, so a call would fail."""
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    cfg = slurm_config() if name == "slurm" else htcondor_config()
    backend = get_backend(name, cfg)
    batches = SLURM_BATCHES if name == "slurm" else [Batch("tok-c3", ["sub-01"], 0)]
    req = request([j for b in batches for j in b.job_ids], batches, tmp_path)
    assert backend.submit(req) == []
    wanted = {**backend.files(req), **backend.record_files(req, [])}
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == wanted


def test_submit_records_each_batch_with_the_parsed_ids(tmp_path):
    """The base class's submit: one hand-over per batch, recorded at once with the IDs
    the hooks make of the scheduler's handle (here a stand-in for sbatch)."""
    backend = get_backend("slurm", slurm_config())
    recorded: list[list[Submission]] = []
    handed = iter(["101", "102"])
    backend.hand_over = lambda req, batch: next(handed)  # type: ignore[method-assign]
    req = SubmitRequest(SLURM_JOBS, SLURM_BATCHES,
                        tmp_path / "job.sh", tmp_path, tmp_path, tmp_path,
                        record=recorded.append)
    subs = backend.submit(req)
    assert [[(s.job_id, s.backend_id, s.token) for s in part] for part in recorded] == [
        [("sub-01", "101_0", "tok-a1"), ("sub-02", "101_1", "tok-a1"),
         ("sub-03", "101_2", "tok-a1")],
        [("sub-04", "102_0", "tok-b2"), ("sub-05", "102_0", "tok-b2"),
         ("sub-06", "102_1", "tok-b2")]]
    assert subs == recorded[0] + recorded[1]
    arrays = json.loads((tmp_path / "arrays.json").read_text())
    assert [(a["array_id"], a["offset"], a["count"]) for a in arrays] == [
        ("101", 0, 3), ("102", 3, 3)]


def test_a_throttle_puts_the_whole_submission_in_one_array():
    """With ``throttle`` one array holds every job (%throttle then limits them all),
    tasks running several jobs once there are more than MaxArraySize; without it,
    arrays of MaxArraySize one-job tasks."""
    from fairbig.backends.base import Layout
    from fairbig.commands.submit import make_batches

    cfg = slurm_config()
    jobs = [f"sub-{i:05d}" for i in range(42_715)]
    assert get_backend("slurm", cfg).layout(True) == Layout(tasks=1001)
    [one] = make_batches(jobs, Layout(tasks=1001))
    assert (one.per_task, one.tasks, one.task(42_714)) == (43, 994, 993)
    cfg.backend.slurm.throttle = 0
    assert get_backend("slurm", cfg).layout(True) == Layout(batch=1001)
    many = make_batches(jobs, Layout(batch=1001))
    assert len(many) == 43 and {b.per_task for b in many} == {1}
    assert [b.offset for b in many[:2]] == [0, 1001] and many[-1].tasks == 673


def test_slurm_layout_reads_max_array_size_and_never_guesses_it(tmp_path, monkeypatch):
    """The arrays of a submission are cut at the MaxArraySize slurmctld reports now. When
    ``scontrol show config`` fails (slurmctld restarting, unreachable), submit stops with
    scontrol's own words instead of assuming SLURM's default 1001: on a cluster with a
    lower limit that guess makes one array where several are due (sbatch then refuses
    it with 'Invalid job array specification', which names no cause)."""
    from fairbig.backends.base import Layout
    from fairbig.errors import CommandError

    scontrol = tmp_path / "scontrol"
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    cfg = slurm_config()
    cfg.backend.slurm.throttle = 0
    scontrol.write_text("#!/bin/sh\necho 'MaxArraySize            = 3'\n")
    scontrol.chmod(0o755)
    assert get_backend("slurm", cfg).layout(False) == Layout(batch=3)
    scontrol.write_text("#!/bin/sh\necho 'slurm_load_ctl_conf error: Unable to contact slurm "
                        "controller (connect failure)' >&2\nexit 1\n")
    with pytest.raises(CommandError) as err:
        get_backend("slurm", cfg).layout(False)
    assert str(err.value) == ("`scontrol show config` failed with exit code 1: slurm_load_ctl_"
                              "conf error: Unable to contact slurm controller (connect failure)"
                              " (check that slurmctld answers ('scontrol ping') and submit again)")


def test_slurm_cancel_says_when_scancel_failed(tmp_path, monkeypatch):
    """scancel's answer when slurmctld is unreachable (captured from this cluster's scancel
    with a SLURM_CONF naming a closed port: exit 8 after 9 s of retries) is an error, not
    'cancelled'; IDs SLURM has forgotten (finished jobs) exit 0 and are no error."""
    from fairbig.errors import FairbigError

    scancel = tmp_path / "scancel"
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    sub = Submission("sub-01", "slurm", "12345_0", 0.0)
    scancel.write_text("#!/bin/sh\n")
    scancel.chmod(0o755)
    get_backend("slurm", slurm_config()).cancel([sub])
    scancel.write_text("#!/bin/sh\necho 'scancel: error: Kill job error on job id 12345_0: "
                       "Unable to contact slurm controller (connect failure)' >&2\nexit 8\n")
    with pytest.raises(FairbigError) as err:
        get_backend("slurm", slurm_config()).cancel([sub])
    assert err.value.message == (
        "SLURM did not cancel the jobs: scancel: error: Kill job error on job id 12345_0: "
        "Unable to contact slurm controller (connect failure)")
    assert err.value.hint.startswith("they are marked cancelled")
