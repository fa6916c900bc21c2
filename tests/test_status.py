"""What `fairbig status`, `cancel` and `check` tell a person when jobs fail (issue 14 §4 §5).

One analysis of four ukb-mini subjects, real jobs: two fail the same way in their
pipeline, two succeed. Later tests make one job fail before its log begins (a bad
`job.env_setup` line) under the local backend, SLURM and HTCondor, and expect the
scheduler's output of that attempt as the cause, never the old attempt's tail.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.backends.base import BackendView
from fairbig.states import STATES

from .conftest import BIN, UKB_COMMAND, fairbig, init_analysis, status, wait_idle

BAD_SETUP = "fairbig-no-such-tool load datalad"


@pytest.fixture(scope="module")
def ana(tmp_path_factory, ukb_input, image, lab_key) -> Path:
    ids = ukb_input["ids"]
    cmd = (f"sh -c 'case {{subject}} in {ids[0]}|{ids[1]}) "
           "echo pipeline: cannot read {subject} >&2; exit 1;; esac; " + UKB_COMMAND + "'")
    ana = init_analysis(tmp_path_factory.mktemp("status"), ukb_input, image, lab_key,
                        command=cmd)
    fairbig("plan", cwd=ana)
    fairbig("submit", cwd=ana, check=False)
    return ana


def save_config(ana: Path, settings: dict) -> None:
    cfgmod.update_file(ana / "fairbig.yaml", settings)
    subprocess.run([str(BIN / "datalad"), "save", "-m", "settings"], cwd=ana, check=True,
                   capture_output=True)


def log(ana: Path, jid: str) -> str:
    return f"{ana}/.fairbig/work/logs/{jid}.log"


def setup_line(run_dir: Path) -> int:
    """Line number of the bad env_setup line in the rendered job script."""
    lines = (run_dir / "job.sh").read_text().splitlines()
    return lines.index(BAD_SETUP) + 1


USAGE_HEADING = "resource use per job (medians)"


def problems_part(stdout: str) -> list[str]:
    """The lines before the resource-use section (tested in test_usage_report.py)."""
    lines = stdout.splitlines()
    return lines[:lines.index(USAGE_HEADING)] if USAGE_HEADING in lines else lines


def counts_line(c: dict[str, int]) -> list[str]:
    """The table's two lines; a state the test does not name counts 0."""
    return ["  ".join(STATES), "  ".join(str(c.get(s, 0)).ljust(len(s)) for s in STATES).rstrip()]


@pytest.mark.slow
def test_failures_grouped_by_cause_one_line_each_and_exit_3(ana, ukb_input):
    a, b = ukb_input["ids"][:2]
    proc = fairbig("status", cwd=ana, check=False)
    assert proc.returncode == 3, proc.stderr
    assert USAGE_HEADING in proc.stdout.splitlines()
    assert problems_part(proc.stdout) == [
        "fairbig status",
        *counts_line({"planned": 0, "queued": 0, "running": 0, "done": 2, "failed": 2,
                      "cancelled": 0, "lost": 0, "merged": 0}),
        "2 job(s) failed or lost, by cause:",
        f"2 failed in step run: pipeline: cannot read {a}",
        f"  {a}  log: {log(ana, a)}",
        f"  {b}  log: {log(ana, b)}",
    ]
    rep = status(ana)  # --json: same exit code, causes per job and the groups
    assert rep["causes"][b] == {"step": "run", "cause": f"pipeline: cannot read {b}",
                                "log": log(ana, b)}
    assert [(g["state"], g["step"], g["jobs"]) for g in rep["groups"]] == [
        ("failed", "run", [a, b])]
    assert not any("(ok)" in line for line in rep["failures"][a])  # datalad's results


@pytest.mark.slow
def test_state_filter_and_tail(ana, ukb_input):
    a, b, c, d = ukb_input["ids"]
    proc = fairbig("status", "--state", "failed", "--tail", "2", cwd=ana, check=False)
    assert proc.returncode == 3
    lines = problems_part(proc.stdout)[3:]
    assert lines[0] == f"{a}  failed in step run: pipeline: cannot read {a}  log: {log(ana, a)}"
    assert lines[1].startswith("    | ") and lines[2].startswith("    | ")
    assert lines[2].endswith("FAILED in step run (exit code 1)")
    assert lines[3] == f"{b}  failed in step run: pipeline: cannot read {b}  log: {log(ana, b)}"
    assert len(lines) == 6
    done = problems_part(fairbig("status", "--state", "done", cwd=ana, check=False).stdout)[3:]
    assert done == [f"{c}  done", f"{d}  done"]


@pytest.mark.slow
def test_cancel_refuses_unplanned_and_unsafe_ids(ana):
    for arg, line in (
            ("nosuch", "fairbig: error: not in the plan: nosuch "
                       "(check the IDs with 'fairbig status --all')"),
            ("../x", "fairbig: error: invalid job ID '../x': must be letters, digits, '.', "
                     "'_' or '-' and start with a letter or digit "
                     "(give job IDs as 'fairbig status --all' lists them)")):
        proc = fairbig("cancel", arg, cwd=ana, check=False)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", line + "\n")
    assert not list((ana / ".fairbig" / "work" / "state").glob("*.cancel"))


@pytest.mark.slow
def test_watch_refreshes_until_nothing_runs(ana, ukb_input):
    b = ukb_input["ids"][1]
    job = subprocess.Popen([str(BIN / "fairbig"), "submit", "--failed", "--only", b], cwd=ana,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while status(ana)["counts"]["running"] == 0:
            assert time.monotonic() < deadline and job.poll() is None, "job never ran"
            time.sleep(0.5)
        watch = fairbig("status", "--watch", "--interval", "0.5", cwd=ana, check=False)
    finally:
        job.wait(timeout=600)
    assert watch.returncode == 3
    views = watch.stdout.count("fairbig status\n")
    assert views >= 2, watch.stdout
    last = watch.stdout.split("fairbig status\n")[-1].splitlines()
    assert last[1].startswith("0        0       0        2     2"), last


def env_setup_failure(ana: Path, jid: str, backend: str, settings: dict | None = None
                      ) -> tuple[subprocess.CompletedProcess, dict, Path]:
    """Resubmit ``jid`` with a job.env_setup line that fails before the job's log begins."""
    save_config(ana, {"backend.name": backend, "job.env_setup": [BAD_SETUP],
                      **(settings or {})})
    try:
        out = json.loads(fairbig("submit", "--failed", "--only", jid, "--json", cwd=ana,
                                 check=False).stdout)
        wait_idle(ana, timeout=400)
    finally:
        save_config(ana, {"backend.name": "local", "job.env_setup": []})
    return fairbig("status", cwd=ana, check=False), status(ana), Path(out["run_dir"])


def assert_lost_before_log(proc, rep, jid: str, run_dir: Path, script: str, output: Path,
                           state: str = "lost"):
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    cause = f"{script}: line {setup_line(run_dir)}: fairbig-no-such-tool: command not found"
    at = lines.index(f"1 {state} before its log began: {cause}")
    assert lines[at + 1] == f"  {jid}  log: {output}"
    assert rep["causes"][jid] == {"step": "", "cause": cause, "log": str(output)}
    # the earlier attempt's failure is history, never shown as this one's
    assert not any("cannot read" in line for line in rep["failures"][jid])


@pytest.mark.slow
def test_env_setup_failure_local_shows_its_output_not_the_old_tail(ana, ukb_input):
    a = ukb_input["ids"][0]
    proc, rep, run_dir = env_setup_failure(ana, a, "local")
    assert_lost_before_log(proc, rep, a, run_dir, f"{run_dir}/job.sh", run_dir / f"{a}.out")


def test_options_after_subcommand_missing_config_and_yaml_error(tmp_path):
    ds = tmp_path / "ds"
    subprocess.run([str(BIN / "datalad"), "create", str(ds)], check=True, capture_output=True)
    proc = fairbig("status", "-C", str(ds), cwd=tmp_path, check=False)
    assert (proc.returncode, proc.stderr) == (
        1, f"fairbig: error: no fairbig.yaml in the dataset {ds} (restore it "
           "('git checkout -- fairbig.yaml') or create an analysis dataset with "
           "'fairbig init')\n")
    debug = fairbig("status", "--debug", "-C", str(ds), cwd=tmp_path, check=False)
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert debug.stderr.splitlines()[-1].startswith(
        f"fairbig.errors.FairbigError: no fairbig.yaml in the dataset {ds}")
    (ds / "fairbig.yaml").write_text("stores:\n  input: x\n   output: y\n")
    proc = fairbig("plan", "-C", str(ds), cwd=tmp_path, check=False)
    assert (proc.returncode, proc.stderr) == (
        1, f"fairbig: error: {ds}/fairbig.yaml is not valid YAML: line 3, column 10: "
           "mapping values are not allowed here (fix the syntax (indentation, quotes))\n")


def path_without(tools: tuple[str, ...], where: Path) -> str:
    """A PATH like this host's with the given tools missing (the cluster keeps running)."""
    where.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not Path(d).is_dir():
            continue
        for entry in Path(d).iterdir():
            link = where / entry.name
            if entry.name not in tools and not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    return str(where)


def assert_job_test_passes(ana: Path) -> None:
    """`check --job-test`: every step of a job ran on a node; nothing is left in the store."""
    from fairbig.jobtest import STEPS

    proc = fairbig("check", "--job-test", "--timeout", "600", cwd=ana, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = [": ".join(line.split(": ")[:2]) for line in proc.stdout.splitlines()
             if "job test" in line]
    assert steps == [f"ok   job test: {s}" for s in STEPS]
    store = subprocess.run(["git", "-C", str(ana), "config", "remote.output.url"],
                           capture_output=True, text=True).stdout.strip()
    refs = subprocess.run(["git", "ls-remote", store], capture_output=True, text=True).stdout
    assert "fairbig-job-test" not in refs


def check_line(ana: Path, env: dict | None = None) -> str:
    out = fairbig("check", cwd=ana, check=False, env=env).stdout.splitlines()
    return next(line for line in out if " scheduler: " in line)


@pytest.mark.slurm
@pytest.mark.slow
def test_slurm_check_and_env_setup_failure(ana, ukb_input, tmp_path):
    from fairbig.backends.slurm import TOOLS

    from .slurm_cluster import ensure_slurm, slurm_available

    if not slurm_available():
        pytest.skip("needs root on Linux to start the test cluster")
    ensure_slurm(None)
    save_config(ana, {"backend.name": "slurm"})
    try:
        line = check_line(ana)
        assert line.startswith("ok   scheduler: slurm: Slurmctld(primary) at ")
        assert line.endswith(" is UP; partitions: debug (up)")
        line = check_line(ana, {"PATH": path_without(TOOLS, tmp_path / "bin")})
        assert line == ("FAIL scheduler: SLURM command(s) not found: sbatch, squeue, scontrol, "
                        "scancel, sinfo (backend: slurm) (run fairbig on a login node of the "
                        "cluster, or put SLURM's bin directory on PATH (e.g. 'module load "
                        "slurm'))")
        save_config(ana, {"backend.slurm.mem": "300M"})
        assert_job_test_passes(ana)
    finally:
        save_config(ana, {"backend.name": "local"})
    b = ukb_input["ids"][1]
    proc, rep, run_dir = env_setup_failure(ana, b, "slurm", {"backend.slurm.mem": "300M"})
    task = json.loads((run_dir / "arrays.json").read_text())[0]["array_id"] + "_0"
    out = run_dir / f"slurm-{task}.out"
    script = out.read_text().split(": line ")[0]  # slurmd's copy of job.sh
    assert script.endswith("/slurm_script")
    # SLURM still remembers the task's exit (FAILED); the job never wrote a record
    assert_lost_before_log(proc, rep, b, run_dir, script, out, "failed")


@pytest.mark.htcondor
@pytest.mark.slow
def test_htcondor_check_and_env_setup_failure(ana, ukb_input, tmp_path):
    from .condor_pool import condor_available, ensure_condor

    if not condor_available():
        pytest.skip("needs root, namespaces and the htcondor bindings for the test pool")
    env = ensure_condor()
    old = os.environ.get("CONDOR_CONFIG")
    os.environ.update(env)
    try:
        save_config(ana, {"backend.name": "htcondor"})
        try:
            line = check_line(ana)
            assert line.startswith("ok   scheduler: htcondor: schedd answers (htcondor2 ")
            assert line.endswith(f"CONDOR_CONFIG={env['CONDOR_CONFIG']})")
            line = check_line(ana, {"CONDOR_CONFIG": str(tmp_path / "nosuch")})
            assert line == (f"FAIL scheduler: CONDOR_CONFIG points at {tmp_path}/nosuch, which "
                            "does not exist (set CONDOR_CONFIG to your pool's client "
                            "configuration)")
            save_config(ana, {"backend.htcondor.request_memory": "300MB",
                              "backend.htcondor.request_disk": "100MB"})
            assert_job_test_passes(ana)
        finally:
            save_config(ana, {"backend.name": "local"})
        b = ukb_input["ids"][1]
        proc, rep, run_dir = env_setup_failure(
            ana, b, "htcondor", {"backend.htcondor.request_memory": "300MB",
                                 "backend.htcondor.request_disk": "100MB"})
        assert_lost_before_log(proc, rep, b, run_dir, f"{run_dir}/job.sh",
                               run_dir / f"condor-{b}.out")
    finally:
        if old is None:
            os.environ.pop("CONDOR_CONFIG", None)
        else:
            os.environ["CONDOR_CONFIG"] = old


class CountingBackend:
    """Stands in for a scheduler in this unit test of what status asks: it answers
    from a fixed table and remembers which attempts it was asked about."""

    name = "slurm"

    def __init__(self, says: dict[str, BackendView]) -> None:
        self.says, self.asked = says, []

    def poll(self, subs):
        self.asked.append(sorted(s.job_id for s in subs))
        return {s.job_id: self.says[s.job_id] for s in subs if s.job_id in self.says}


def test_status_asks_the_scheduler_only_of_attempts_not_known_to_have_ended(tmp_path):
    """Ended attempts (own record final, scheduler no longer running them) are asked
    about once; what the scheduler said (TIMEOUT, or nothing) is remembered, and a
    resubmission (another backend ID) is asked about again."""
    from fairbig.commands.status import scheduler_views
    from fairbig.jobstate import JobRecord, Submission

    def sub(jid: str, bid: str) -> Submission:
        return Submission(jid, "slurm", bid, "2026-01-01T00:00:00Z", token="t")

    def rec(jid: str, status: str) -> JobRecord:
        return JobRecord(jid, status, "run", 0, "h", 1, "", 0, 0, "", attempt="t")

    subs = {j: sub(j, f"7_{i}") for i, j in enumerate("abcd")}
    records = {"a": rec("a", "done"), "b": rec("b", "failed"), "c": rec("c", "running")}
    backend = CountingBackend({"b": BackendView("finished", "TIMEOUT"),
                               "c": BackendView("running"), "d": BackendView("queued")})
    path = tmp_path / "said.json"
    ask = lambda: scheduler_views(path, subs, records, lambda name: backend)  # noqa: E731
    first = ask()
    assert ask() == first == {"b": BackendView("finished", "TIMEOUT"),
                              "c": BackendView("running"), "d": BackendView("queued")}
    assert backend.asked == [["a", "b", "c", "d"], ["c", "d"]]
    subs["b"] = sub("b", "9_0")   # resubmitted: its new attempt is asked about
    ask()
    assert backend.asked[-1] == ["b", "c", "d"]
