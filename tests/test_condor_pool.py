"""The single-machine HTCondor pool itself: jobs, DAGs, and the tools fairbig
jobs need, run for real through the Python bindings (scripts/condor-up)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from .condor_pool import REPO, condor_available, condor_exec, ensure_condor, visible_in_pool

pytestmark = [
    pytest.mark.htcondor,
    pytest.mark.skipif(not condor_available(),
                       reason="no HTCondor test pool here (needs root, unshare, the htcondor "
                              "bindings; see tests/condor_pool.py)"),
]

JOB_TIMEOUT = 60
DAG_TIMEOUT = 120


@pytest.fixture
def htc(monkeypatch, tmp_path):
    """The bindings, configured for the pool; tmp_path must be visible to jobs."""
    env = ensure_condor()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    import htcondor2

    htcondor2.reload_config()
    if not visible_in_pool(tmp_path):
        pytest.skip(f"{tmp_path} is not visible inside the pool (use a basetemp under /tmp)")
    return htcondor2


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def wait_gone(htc, cluster: int, timeout: float) -> dict:
    """Wait until the cluster left the queue; return its history ad."""
    schedd = htc.Schedd()
    deadline = time.monotonic() + timeout
    while True:
        ads = schedd.query(constraint=f"ClusterId == {cluster}",
                           projection=["JobStatus", "HoldReason"])
        if not ads:
            break
        if time.monotonic() > deadline:
            schedd.act(htc.JobAction.Remove, f"ClusterId == {cluster}")
            raise AssertionError(f"cluster {cluster} still queued after {timeout}s: "
                                 f"{[dict(ad) for ad in ads]}")
        if ads[0].get("JobStatus") == 5:  # held: it will not run by itself
            schedd.act(htc.JobAction.Remove, f"ClusterId == {cluster}")
            raise AssertionError(f"cluster {cluster} held: {ads[0].get('HoldReason')}")
        time.sleep(0.1)
    for _ in range(50):  # the history file is written just after the job leaves the queue
        hist = list(schedd.history(constraint=f"ClusterId == {cluster}",
                                   projection=["ExitCode", "JobStatus", "ExitBySignal"],
                                   match=1))
        if hist:
            return dict(hist[0])
        time.sleep(0.1)
    raise AssertionError(f"cluster {cluster} left the queue but has no history record")


def submit_job(htc, tmp_path: Path, exe: Path, *args: str, env: str = "") -> int:
    desc = {
        "executable": str(exe),
        "arguments": " ".join(args),
        "initialdir": str(tmp_path),
        "output": str(tmp_path / "job.out"),
        "error": str(tmp_path / "job.err"),
        "log": str(tmp_path / "job.log"),
        "should_transfer_files": "NO",
        "transfer_executable": "false",
        "request_memory": "64MB",
        "request_disk": "1MB",
    }
    if env:
        desc["environment"] = env
    return htc.Schedd().submit(htc.Submit(desc)).cluster()


def job_output(tmp_path: Path) -> str:
    return "".join((tmp_path / n).read_text() for n in ("job.out", "job.err")
                   if (tmp_path / n).exists())


def test_job_writes_file(htc, tmp_path):
    exe = script(tmp_path / "write.sh", 'printf "%s from %s\\n" "$1" "$(id -u)" > "$2"\n')
    target = tmp_path / "result.txt"
    start = time.monotonic()
    cluster = submit_job(htc, tmp_path, exe, "hello", str(target))
    deadline = start + JOB_TIMEOUT
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    seen = time.monotonic() - start
    ad = wait_gone(htc, cluster, JOB_TIMEOUT)
    done = time.monotonic() - start
    assert target.exists(), f"the job did not write {target}; output: {job_output(tmp_path)}"
    assert target.read_text() == "hello from 2000\n"  # the pool's mapped user
    assert ad["ExitCode"] == 0
    print(f"job: file after {seen:.2f}s, out of the queue after {done:.2f}s")


def test_dag_runs_nodes_in_order(htc, tmp_path):
    order = tmp_path / "order.txt"
    exe = script(tmp_path / "node.sh", """\
set -e
if [ "$1" = B ] && [ ! -e A.done ]; then echo "B ran before A finished" >&2; exit 1; fi
sleep 0.2
echo "$1 $(date +%s.%N)" >> order.txt
touch "$1.done"
""")

    def node(name: str):
        return htc.Submit({"executable": str(exe), "arguments": name,
                           "output": f"{name}.out", "error": f"{name}.err",
                           "log": "nodes.log", "should_transfer_files": "NO",
                           "request_memory": "64MB", "request_disk": "1MB"})

    try:
        from htcondor2 import dags
    except ImportError:
        dags = None
    if dags is not None:
        dag = dags.DAG()
        dag.layer(name="A", submit_description=node("A")).child_layer(
            name="B", submit_description=node("B"))
        dag_file = dags.write_dag(dag, tmp_path, dag_file_name="two.dag")
    else:  # written by hand: the same two nodes
        for name in "AB":
            (tmp_path / f"{name}.sub").write_text(str(node(name)) + "\nqueue\n")
        dag_file = tmp_path / "two.dag"
        dag_file.write_text("JOB A A.sub\nJOB B B.sub\nPARENT A CHILD B\n")

    start = time.monotonic()
    sub = htc.Submit.from_dag(str(dag_file), {
        "DagmanPath": "/usr/bin/condor_dagman",
        "AddToEnv": f"CONDOR_CONFIG={os.environ['CONDOR_CONFIG']}",
    })
    # DAGMan runs in the submitter's cwd unless told otherwise, and resolves
    # the nodes' relative submit files there; the pool does not see /work.
    sub["initialdir"] = str(tmp_path)
    cluster = htc.Schedd().submit(sub).cluster()
    ad = wait_gone(htc, cluster, DAG_TIMEOUT)
    elapsed = time.monotonic() - start
    dagman_out = Path(f"{dag_file}.dagman.out")
    tail = dagman_out.read_text()[-3000:] if dagman_out.exists() else "(no dagman.out)"
    assert ad["ExitCode"] == 0, f"DAGMan failed: {tail}"
    lines = order.read_text().split()
    assert lines[0::2] == ["A", "B"], order.read_text()
    assert float(lines[1]) < float(lines[3])
    print(f"2-node DAG: {elapsed:.2f}s submit to done")


def run_checks(htc, tmp_path: Path, checks: dict[str, str], path: str) -> dict[str, dict]:
    """Run shell snippets in one job; return {name: {rc, out}} per check."""
    lines = ["#!/bin/bash", f"export PATH={path}", "cd \"$1\"", ": > report.tsv"]
    for name, cmd in checks.items():
        (tmp_path / f"check-{name}.sh").write_text(cmd + "\n")
        lines.append(
            f'out=$(bash check-{name}.sh 2>&1); rc=$?; '
            f'printf \'%s\\t%s\\t%s\\n\' {name} "$rc" "$(printf %s "$out" | head -c 2000 '
            f"| tr '\\n\\t' '  ')\" >> report.tsv")
    exe = tmp_path / "checks.sh"
    exe.write_text("\n".join(lines) + "\n")
    exe.chmod(0o755)
    cluster = submit_job(htc, tmp_path, exe, str(tmp_path))
    ad = wait_gone(htc, cluster, JOB_TIMEOUT)
    assert ad["ExitCode"] == 0, job_output(tmp_path)
    report = {}
    for line in (tmp_path / "report.tsv").read_text().splitlines():
        name, rc, out = line.split("\t", 2)
        report[name] = {"rc": int(rc), "out": out}
    return report


def test_tools_in_job(htc, tmp_path):
    checks = {
        "git": "git --version",
        "flock": "flock --version && flock lockfile true",
        "bwrap": "bwrap --version && bwrap --ro-bind / / true",
        # what fairbig's container wrapper does: own /proc, pid and net namespaces
        "bwrap_sandbox": 'mkdir -p w && bwrap --ro-bind /usr /usr --symlink usr/bin /bin '
                         '--symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc '
                         '--dev /dev --tmpfs /tmp --bind "$PWD/w" "$PWD/w" --chdir "$PWD/w" '
                         '--setenv HOME /tmp --die-with-parent --unshare-pid --unshare-net '
                         'sh -c "echo ok > out; test -d /proc/1"',
        "gpg": "gpg --version | head -1",
        "unzip": "unzip -v | head -1",
    }
    annex = shutil.which("git-annex") or "/tmp/venvtest/bin/git-annex"
    venv_bin = str(Path(annex).parent)
    have_annex = Path(annex).exists() and visible_in_pool(annex)
    if have_annex:
        checks["git_annex"] = f"{annex} version | head -1"
        checks["git_annex_via_git"] = "git annex version | head -1"  # venv bin on PATH
    report = run_checks(htc, tmp_path, checks, f"{venv_bin}:/usr/sbin:/usr/bin:/sbin:/bin")
    failed = {n: r for n, r in report.items() if r["rc"] != 0}
    assert not failed, "failed inside the job:\n" + json.dumps(failed, indent=1)
    assert set(report) == set(checks)
    assert (tmp_path / "w" / "out").read_text() == "ok\n"
    assert report["git"]["out"].startswith("git version")
    if have_annex:
        assert report["git_annex"]["out"].startswith("git-annex version: ")
    else:
        pytest.skip(f"git-annex not found (looked for {annex}); the other tools work")


def test_project_venv_in_job(htc, tmp_path):
    venv_python = REPO / ".venv" / "bin" / "python"
    if not venv_python.exists():
        pytest.skip(f"{venv_python} does not exist (make install creates it)")
    if not visible_in_pool(venv_python):
        pytest.fail(f"{venv_python} exists but is not bound into the pool; "
                    f"scripts/condor-up should have restarted it")
    report = run_checks(htc, tmp_path, {
        "venv_python": f"{venv_python} -c 'import sys, ssl, sqlite3, lzma; print(sys.prefix)'",
        # the job body runs `python -m fairbig.jobstep`: the editable install
        # imports from the repo, which must be visible too (CI failed on it)
        "fairbig_jobstep": f"{venv_python} -c 'import fairbig.jobstep'",
        "this_python": f"{sys.executable} -c 'import sys'" if visible_in_pool(sys.executable)
                       else "true",
    }, "/usr/bin:/bin")
    failed = {n: r for n, r in report.items() if r["rc"] != 0}
    assert not failed, json.dumps(failed, indent=1)
    assert report["venv_python"]["out"].strip() == str(REPO / ".venv")


def test_condor_exec_sees_the_pool(htc, tmp_path):
    proc = condor_exec("condor_q", "-totals", cwd=tmp_path)
    assert "Total for query" in proc.stdout
    assert condor_exec("pwd", cwd=tmp_path).stdout.strip() == str(tmp_path)
