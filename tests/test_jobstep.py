"""The job body's Python steps: the state record, output paths, the conditional push."""

from __future__ import annotations

import fcntl
import json
import marshal
import os
import subprocess
import sys
import time

import pytest

from fairbig import jobstep
from fairbig.jobstate import JobRecord, read_records, records_cache
from fairbig.jobstep import StoreView, output_problem, superseded_by


def jobstep_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fairbig.jobstep", *args],
                          capture_output=True, text=True, cwd=cwd)


def test_record_with_quote_in_workdir_is_valid_json(tmp_path):
    workdir = '/scratch/a "quoted" dir\\x/fairbig-job-1.abc'
    proc = jobstep_cli("record", str(tmp_path), "--job-id", "1", "--status", "running",
                       "--step", "get", "--exit-code", "", "--host", "node1", "--pid", "42",
                       "--backend-id", "7_1", "--started", "100", "--workdir", workdir,
                       "--input-state", "ab12", "--detail", "")
    assert proc.returncode == 0, proc.stderr
    raw = json.loads((tmp_path / "1.json").read_text())
    assert raw["workdir"] == workdir and raw["exit_code"] is None
    rec = read_records(tmp_path)["1"]
    assert (rec.status, rec.step, rec.pid, rec.started, rec.workdir) == (
        "running", "get", 42, 100, workdir)
    assert rec.updated >= int(time.time()) - 60
    # nothing but the record in the state directory (the readers' cache is beside it)
    assert [p.name for p in tmp_path.iterdir()] == ["1.json"]
    assert records_cache(tmp_path).parent == tmp_path.parent


def test_record_superseded_carries_why(tmp_path):
    jobstep_cli("record", str(tmp_path), "--job-id", "2", "--status", "superseded",
                "--step", "finished", "--exit-code", "0", "--host", "h", "--pid", "1",
                "--backend-id", "local", "--started", "1", "--workdir", "",
                "--input-state", "s1", "--detail", "the newest plan wants input s2")
    rec = read_records(tmp_path)["2"]
    assert (rec.status, rec.exit_code, rec.detail) == (
        "superseded", 0, "the newest plan wants input s2")


def test_read_records_rereads_only_changed_records(tmp_path):
    """A second read takes unchanged records from the cache; rewritten and deleted ones
    are seen (issue 21: reading 42,715 records cost 5.9 CPU-s on every report)."""
    old = {j: JobRecord(j, "running", "get", None, "h", 1, "b", 0, 0, "w") for j in "123"}
    for rec in old.values():
        jobstep.write_record(tmp_path, rec)
    settled = time.time() - 60  # as if written a minute ago: cacheable
    for rec in old.values():
        os.utime(tmp_path / f"{rec.job_id}.json", (settled, settled))
    assert read_records(tmp_path) == old
    # same inode, size and mtime, other bytes: only a cache hit returns the old record
    one = tmp_path / "1.json"
    one.write_text(one.read_text().replace('"get"', '"run"'))
    os.utime(one, (settled, settled))
    jobstep.write_record(tmp_path, done := JobRecord("2", "done", "finished", 0, "h", 1, "b",
                                                     0, 5, "w"))
    (tmp_path / "3.json").unlink()
    assert read_records(tmp_path) == {"1": old["1"], "2": done}
    records_cache(tmp_path).write_text("{not json")  # a broken cache costs a full read
    assert read_records(tmp_path)["1"].step == "run"


def test_records_cache_of_another_format_is_rebuilt(tmp_path):
    """A cache the reader cannot use (the JSON cache of earlier versions, a marshal of
    other record fields) is ignored, never believed, and replaced (issue 21: the JSON
    cache cost 1.5 CPU-s to decode at 42,715 jobs)."""
    rec = JobRecord("1", "running", "get", None, "h", 1, "b", 0, 0, "w")
    jobstep.write_record(tmp_path, rec)
    path = tmp_path / "1.json"
    settled = time.time() - 60
    os.utime(path, (settled, settled))
    st = path.stat()
    stale = json.dumps({"1.json": [st.st_ino, st.st_mtime_ns, st.st_size,
                                   {**rec.__dict__, "step": "stale"}]})
    old_json = records_cache(tmp_path).with_suffix(".json")
    for cache in (records_cache(tmp_path), old_json):
        cache.write_text(stale)
    assert read_records(tmp_path) == {"1": rec}
    assert not old_json.exists()  # the old format's file is removed, not left beside
    # the rebuilt cache is used: the same (inode, mtime, size) with other bytes reads cached
    path.write_text(path.read_text().replace('"get"', '"run"'))
    os.utime(path, (settled, settled))
    assert read_records(tmp_path)["1"].step == "get"
    head = ("fairbig records cache", 1, ("job_id",))  # a cache of other record fields
    records_cache(tmp_path).write_bytes(marshal.dumps((head, {"1.json": (
        st.st_ino, st.st_mtime_ns, st.st_size, ("1",))})))
    assert read_records(tmp_path)["1"].step == "run"


def escaping(tmp_path):
    """A host directory and a dataset whose code/escape is a symlink to it."""
    host = tmp_path / "host"
    (host / "x").mkdir(parents=True)
    ds = tmp_path / "ds"
    (ds / "code").mkdir(parents=True)
    (ds / "code" / "escape").symlink_to(host)
    return host, ds


def test_output_through_a_symlink_is_refused(tmp_path):
    host, ds = escaping(tmp_path)
    (ds / "results" / "1").mkdir(parents=True)
    (ds / "results" / "inner").symlink_to("1")
    problem = output_problem(ds, "code/escape/x")
    assert problem == (f"output path 'code/escape/x' goes through the symlink 'code/escape' "
                       f"(-> {host}); refused before deleting anything")
    assert "symlink 'results/inner'" in output_problem(ds, "results/inner/y")  # inside too
    assert "leaves the dataset" in output_problem(ds, "results/../../x")
    assert output_problem(ds, "results/1") is None
    assert output_problem(ds, "results/2/new") is None  # not there yet: fine


def git(cwd, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


RECORD = ("--job-id", "1", "--host", "node1", "--pid", "42", "--backend-id", "b",
          "--started", "100", "--workdir", "/w", "--input-state", "s1")


def test_checkout_records_the_step_checks_out_the_base_and_refuses_a_symlinked_output(
        tmp_path):
    """One call for step checkout: its running record, the branch at the plan commit
    without results/ (checked out), then the outputs checked there; a committed
    symlink on an output's way is refused (exit 2, one line) before anything is
    deleted."""
    host, ds = escaping(tmp_path)
    (ds / "results" / "0").mkdir(parents=True)
    (ds / "results" / "0" / "old").write_text("merged\n")
    git(tmp_path, "init", "-q", "ds")
    git(ds, "add", ".")
    git(ds, "commit", "-q", "-m", "plan")
    plan = git(ds, "rev-parse", "HEAD")
    state = tmp_path / "state"
    args = ("checkout", "--record", str(state), *RECORD, "--step", "checkout",
            "--plan-commit", plan, "--results", "results", "--branch", "job-1", "--")
    proc = jobstep_cli(*args, "results/1", "code/escape/x", cwd=ds)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (f"fairbig job: output path 'code/escape/x' goes through the "
                           f"symlink 'code/escape' (-> {host}); refused before deleting "
                           "anything\n")
    rec = read_records(state)["1"]
    assert (rec.status, rec.step, rec.input_state) == ("running", "checkout", "s1")
    assert (host / "x").is_dir()
    git(ds, "checkout", "-q", "--detach", plan)
    git(ds, "branch", "-D", "job-1")
    proc = jobstep_cli(*args, "results/1", cwd=ds)
    assert proc.returncode == 0, proc.stderr
    base = proc.stdout.strip()
    assert git(ds, "rev-parse", "HEAD", "job-1", "HEAD^") == f"{base}\n{base}\n{plan}"
    assert git(ds, "symbolic-ref", "HEAD") == "refs/heads/job-1"
    assert not (ds / "results").exists() and (ds / "code" / "escape").is_symlink()


def test_push_records_cleanup_as_running_once_superseded(tmp_path):
    """`push --record` writes its own step's running record and, pushed or superseded,
    the next step's (cleanup): the job body starts no Python for either."""
    store = tmp_path / "store"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", "store")
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "main", "work")
    (work / ".fairbig").mkdir()
    (work / ".fairbig" / "merged.tsv").write_text("job_id\tinput_state\n1\ts1\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "merged")
    git(work, "push", "-q", str(store), "main")
    state = tmp_path / "state"
    proc = jobstep_cli("push", "--record", str(state), *RECORD, "--step", "push-branch",
                       "--store", str(store), "--remote", str(store), "--lock-file",
                       str(tmp_path / "lock"), "--plan-commit", git(work, "rev-parse", "HEAD"),
                       "--main", "main", "--timeout", "5")
    assert (proc.returncode, proc.stdout) == (jobstep.SUPERSEDED,
                                              "a result for input s1 is already merged\n")
    rec = read_records(state)["1"]
    assert (rec.status, rec.step, rec.exit_code) == ("running", "cleanup", None)


def test_annexed_file_of_an_earlier_run_is_an_output(tmp_path):
    ds = tmp_path / "ds"
    obj = ds / ".git" / "annex" / "objects" / "Xx" / "Yy" / "KEY" / "KEY"
    (ds / "results" / "1").mkdir(parents=True)
    (ds / "results" / "1" / "out.txt").symlink_to("../../.git/annex/objects/Xx/Yy/KEY/KEY")
    assert not obj.exists()  # content-less, as in a job's clone
    assert output_problem(ds, "results/1/out.txt") is None


@pytest.mark.parametrize("view, why", [
    (StoreView("", "", "", "s1"), None),                        # first result
    (StoreView("", "", "", None), None),                        # no newer plan known
    (StoreView("t0", "s0", "", "s1"), None),                    # replaces a stale branch
    (StoreView("", "", "s0", "s1"), None),                      # re-run after a merge
    (StoreView("", "", "", "s2"), "the newest plan wants input s2"),
    (StoreView("t2", "s2", "", "s2"), "the newest plan wants input s2"),
    (StoreView("", "", "", ""), "the newest plan wants input nothing (the job left the plan)"),
    (StoreView("", "", "s1", "s1"), "a result for input s1 is already merged"),
    (StoreView("t1abcdefabcdef", "s1", "", "s1"),
     "a result for input s1 is already on the branch (t1abcdefabcd)"),
])
def test_superseded_by(view, why):
    assert superseded_by("s1", view) == why


def test_a_forced_attempt_replaces_the_result_for_its_input_state_only():
    """Snakemake -R (replace): the same input state's result gives way; a newer plan's
    does not, forced or not."""
    for same in (StoreView("", "", "s1", "s1"), StoreView("t1", "s1", "", "s1")):
        assert superseded_by("s1", same) and superseded_by("s1", same, replace=True) is None
    newer = StoreView("t2", "s2", "s1", "s2")
    assert superseded_by("s1", newer, replace=True) == "the newest plan wants input s2"


def test_push_lock_wait_is_logged_then_times_out(tmp_path, monkeypatch, capsys):
    lock = tmp_path / "fairbig-push.lock"
    lock.write_text("2026-01-01T00:00:00Z (job 9 on node7, pid 1)\n")
    holder = os.open(lock, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    monkeypatch.setattr(jobstep, "LOCK_NOTICE_AFTER", 0.5)
    start = time.monotonic()
    with pytest.raises(jobstep.LockTimeout, match="job 9 on node7"):
        jobstep.acquire(lock, 2.0, "3")
    assert 2.0 <= time.monotonic() - start < 5
    out = capsys.readouterr().err
    assert "fairbig[3] waiting for the push lock" in out
    assert "held since 2026-01-01T00:00:00Z (job 9 on node7, pid 1)" in out
    os.close(holder)
    fd = jobstep.acquire(lock, 1.0, "3")  # free now: taken at once, holder written
    assert "(job 3 on " in lock.read_text()
    os.close(fd)
