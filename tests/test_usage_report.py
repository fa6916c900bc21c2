"""Resource usage per job and ``fairbig report``, on a real job with a known appetite.

The pipeline allocates 200 MB (dd's buffer) and burns CPU until the kernel has counted
3 s of it, inside the container (bubblewrap, its own PID namespace); the job's state
record must carry both within 10 %. The report of that analysis is then opened in a
real headless chromium with no network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from fairbig import usage
from fairbig.jobstate import read_records

from .conftest import fairbig

BURN = """#!/bin/sh
# allocate 200 MB (dd's buffer, every page written), then burn CPU until the kernel has
# counted TICKS clock ticks of this script and its children together
set -eu
out=$1 ticks=$2
dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null
while :; do
    read -r stat </proc/self/stat
    set -- $stat
    [ $((${14} + ${15} + ${16} + ${17})) -lt "$ticks" ] || break
done
mkdir -p "$out"
echo "burnt $ticks ticks" >"$out/burn.txt"
"""
CPU_S = 3.0
MEM_MB = 200.0


def within(value: float, expected: float, share: float = 0.10) -> bool:
    return abs(value - expected) <= share * expected


def test_measure_counts_orphans_and_passes_the_exit_code(tmp_path):
    """A process that outlives the step's command (reparented to the measuring process,
    as git-annex's helpers are) is waited for and its CPU counted."""
    code = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    t = time.process_time()\n"
            "    while time.process_time() - t < 0.2: pass\n"
            "    os._exit(0)\n"
            "os._exit(3)\n")
    out = tmp_path / "usage"
    proc = subprocess.run([sys.executable, "-m", "fairbig.jobstep", "measure", "--step", "get",
                           "--usage", str(out), "--", sys.executable, "-c", code])
    assert proc.returncode == 3
    got = usage.read(out)["get"]
    assert got["cpu_s"] >= 0.2, got  # wall_s: until the command itself exited


def test_a_python_step_is_measured_in_a_forked_child(capfd):
    """A function measured without a Python start of its own: run in a forked child,
    its CPU counted, its exit code (or SystemExit's message and 1) passed on."""
    def busy() -> int:
        t = time.process_time()
        while time.process_time() - t < 0.2:
            pass
        return 4

    rc, used = usage.measure(busy)
    assert rc == 4 and used.cpu_s >= 0.2, used

    def refuses() -> int:
        raise SystemExit("fairbig job: no")

    rc, _ = usage.measure(refuses)
    assert rc == 1
    assert capfd.readouterr().err == "fairbig job: no\n"


def test_suggestion_is_the_99th_percentile_plus_a_margin():
    totals = [{"wall_s": float(n), "cpu_s": 1.0, "max_rss_mb": float(n)} for n in range(1, 101)]
    got = usage.suggest(totals)
    assert got is not None and (got.wall_s, got.max_rss_mb) == (99.0, 99.0)
    assert (got.time, got.mem) == ("00:03:00", "128M")  # 99 s and 99 MB plus 25 %, rounded up
    assert usage.slurm_time(2 * 86400 + 61) == "2-00:02:00"
    assert usage.suggest(totals[:2]) is None  # too few jobs to say


@pytest.fixture(scope="module")
def burnt(tmp_path_factory, ukb_input, image, lab_key):
    """One job of the burning pipeline, run, merged."""
    base = tmp_path_factory.mktemp("usage")
    code = base / "burn.sh"
    code.write_text(BURN)
    ticks = int(CPU_S * os.sysconf("SC_CLK_TCK"))
    ana = base / "analysis"
    fairbig("init", str(ana), "--input", ukb_input["url"], "--container", str(image),
            "--command", f"sh code/burn.sh {{output_dir}} {ticks}",
            "--input-store", f"{base}/in", "--output-store", f"{base}/out",
            "--encrypt-to", lab_key, "--code", str(code))
    job = ukb_input["ids"][0]
    fairbig("plan", "--only", job, cwd=ana)
    sub = fairbig("submit", cwd=ana)
    fairbig("merge", cwd=ana)
    return {"ana": ana, "job": job, "submit": sub, "base": base}


@pytest.mark.slow
def test_known_memory_and_cpu_are_in_the_record(burnt):
    rec = read_records(burnt["ana"] / ".fairbig" / "work" / "state")[burnt["job"]]
    assert rec.status == "done"
    u = rec.usage
    assert set(u) >= {"clone", "get", "run", "container", "push-content", "job"}, u
    cont = u["container"]
    assert within(cont["cpu_s"], CPU_S), cont
    assert within(cont["max_rss_mb"], MEM_MB), cont
    # the container call is part of the run step, and every step part of the job
    assert u["run"]["cpu_s"] >= cont["cpu_s"] and u["run"]["max_rss_mb"] >= cont["max_rss_mb"]
    assert u["job"]["cpu_s"] >= sum(u[s]["cpu_s"] for s in ("clone", "get", "run",
                                                           "push-content"))
    assert u["job"]["wall_s"] >= u["run"]["wall_s"] >= cont["wall_s"]
    # status shows it: --json per job, and the medians in words
    rep = json.loads(fairbig("status", "--json", cwd=burnt["ana"]).stdout)
    assert rep["usage"][burnt["job"]] == u
    assert rep["usage_summary"]["medians"]["merged"]["jobs"] == 1
    text = fairbig("status", cwd=burnt["ana"]).stdout
    assert "resource use per job (medians)" in text
    assert re.search(rf"most memory: {burnt['job']} 2\d\d MB", text), text


@pytest.mark.slow
def test_measured_job_reruns_identical(burnt):
    out = json.loads(fairbig("rerun", burnt["job"], "--json", cwd=burnt["ana"]).stdout)
    job = out["jobs"][0]
    assert job["ok"] and set(job["files"].values()) == {"identical"}, job


CHROMIUM = shutil.which("chromium")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")
def test_report_opens_in_a_browser_without_network(burnt):
    page = burnt["base"] / "report.html"
    out = json.loads(fairbig("report", "-o", str(page), "--json", cwd=burnt["ana"]).stdout)
    assert out["path"] == str(page) and out["jobs"] == 1 and page.stat().st_size == out["bytes"]
    html = page.read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html
    shot = burnt["base"] / "report.png"
    # no network at all: every host name resolves to nothing, no proxy reachable
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={burnt['base'] / 'chr'}"]
    start = time.monotonic()
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120)
    shot_run = subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}",
                               page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and shot_run.returncode == 0, dom.stderr[-2000:]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for err in (dom.stderr, shot_run.stderr):
        assert "Uncaught" not in err and "CONSOLE" not in err.upper().replace(
            "CONSOLE_", ""), err[-2000:]
    charts = re.findall(r'<svg class="chart ([a-z]+)"', dom.stdout)
    # throughput, running at once, a duration and a memory histogram per measured step,
    # jobs per host
    assert charts.count("histogram") == 2 * 6, charts
    assert {"throughput", "running", "hosts"} <= set(charts)
    assert dom.stdout.count("<rect") > 12
    for section in ("states", "throughput", "usage", "failures", "hosts", "merges",
                    "provenance"):
        assert f'id="{section}"' in dom.stdout
    assert burnt["job"] in dom.stdout
    assert time.monotonic() - start < 120


def test_throughput_counts_ends_before_starts_and_carries_running_jobs():
    """The running-at-once line of the report (issue 21: computed by bisecting sorted
    start and end times, no longer event by event): a job ending in the second another
    starts is not counted twice, a bucket without events shows what ran on through it,
    a job still running counts until the end."""
    from fairbig.commands.report import throughput
    from fairbig.jobstate import JobRecord

    def rec(j: str, status: str, started: int, updated: int) -> JobRecord:
        return JobRecord(j, status, "finished", 0, "h", 1, "b", started, updated, "w")

    records = {"a": rec("a", "done", 0, 10), "b": rec("b", "done", 10, 20),
               "c": rec("c", "running", 5, 6), "d": rec("d", "failed", 100, 100)}
    labels, series, running, width = throughput(records, {"a": "merged"})
    at = [int(t // width) for t in (0, 5, 10, 20, 50, 100)]
    # d ended in the second it started: ends count first, it never ran alongside c
    assert [running[i] for i in at] == [1, 2, 2, 2, 1, 1]
    assert len(labels) == len(running) and at[-1] == len(running) - 1
    assert {s: sum(v) for s, v in series.items()} == {"done": 1, "failed": 1, "merged": 1}
    assert series["merged"][at[2]] == 1 and series["failed"][-1] == 1
