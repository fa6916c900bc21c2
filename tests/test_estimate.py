"""The pilot run (``fairbig submit --pilot N``) and its estimate of the whole computation.

Unit tests of the pure parts (fairbig/estimate.py), then one run of the real thing on
the local backend and one on the real SLURM cluster (the long layer): a pilot of 3 on
an analysis of 6 ukb-mini subjects (two with a second imaging visit), the estimate,
the full submit of the other 3, the merge, a rerun of a pilot job, and the estimate
against the measured totals.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from fairbig import config as cfgmod
from fairbig.commands.estimate import pilot_file, read_pilot, record_pilot, withdraw_pilot
from fairbig.dataset import Analysis
from fairbig.estimate import Spread, estimate, pick_pilot, waves
from fairbig.jobtable import Job

from .conftest import BIN, fairbig, init_analysis, load_generator, status, wait_idle

# The measured totals of the e2e run must lie within this factor of the estimate's
# mean: each job here does the same work on inputs of 2 or 4 records, so the spread
# between jobs is small, but wall times of jobs this short (about 2 s) vary with the
# machine's load (2 cores shared) by up to about half.
FACTOR = 2.0


def job(jid: str, inputs: int, session: str = "") -> Job:
    return Job(jid, jid, session, "0" * 40, tuple(f"{jid}/r{i}" for i in range(inputs)),
               (f"results/{jid}",), "true")


def test_pilot_spreads_over_shapes_not_the_first_jobs():
    # 9 subjects with 2 records, 3 with 4 (a second visit): every third, as in ukb-mini
    jobs = [job(f"s{i:02d}", 4 if i % 3 == 2 else 2) for i in range(12)]
    got = pick_pilot(jobs, 3)
    assert got != ["s00", "s01", "s02"]
    shapes = [len(next(j for j in jobs if j.job_id == g).inputs) for g in got]
    assert sorted(set(shapes)) == [2, 4], got          # both shapes are in the pilot
    assert got == pick_pilot(jobs, 3)                  # deterministic
    assert got == sorted(got)                          # in plan order
    # the larger group gets the extra job, spread over it (not its first two)
    assert got == ["s03", "s08", "s09"], got
    assert pick_pilot(jobs, 1) == ["s08"]          # the middle of the larger shape's jobs
    assert pick_pilot(jobs, 20) == [j.job_id for j in jobs]


def test_pilot_with_fewer_jobs_than_shapes_spreads_over_the_shapes():
    jobs = [job(f"s{n}", n) for n in range(1, 6)]   # 5 shapes: 1 to 5 inputs
    assert pick_pilot(jobs, 2) == ["s2", "s4"]      # the middles of two halves
    assert pick_pilot(jobs, 3) == ["s1", "s3", "s5"]


def test_estimate_scales_the_pilot_to_every_job():
    totals = [{"wall_s": 60.0, "cpu_s": 30.0, "max_rss_mb": 100.0},
              {"wall_s": 120.0, "cpu_s": 60.0, "max_rss_mb": 300.0},
              {"wall_s": 90.0, "cpu_s": 90.0, "max_rss_mb": 200.0}]
    est = estimate(totals, [2**20, 3 * 2**20, 2 * 2**20], jobs=120, remaining=117,
                   at_once=10)
    assert est is not None
    assert est.cpu_hours == Spread(1.0, 2.0, 3.0)           # 120 × 30/60/90 s
    assert est.peak_mem_mb == Spread(100.0, 200.0, 300.0)
    assert est.wall_hours == Spread(0.2, 0.3, 0.4)          # 12 rounds of 60/90/120 s
    assert est.results_mb == Spread(120.0, 240.0, 360.0)
    # 10 jobs at once, each pushing once at its end: 10 per 60..120 s
    assert est.pushes_per_minute == Spread(5.0, 6.667, 10.0)
    assert est.request is not None and est.request.mem == "384M"   # 300 MB + 25 %
    assert "CPU-hours" in "\n".join(est.lines())
    assert json.loads(json.dumps(est.to_json()))["jobs"] == 120


def test_estimate_without_a_limit_runs_every_job_at_once():
    totals = [{"wall_s": 60.0, "cpu_s": 1.0, "max_rss_mb": 1.0}]
    est = estimate(totals, [], jobs=50, remaining=49, at_once=None)
    assert est is not None and est.wall_hours.mid == round(60 / 3600, 3)
    assert est.pushes_per_minute.mid == 50.0 and est.results_mb.mid == 0
    assert (waves(50, None), waves(50, 8), waves(0, 8)) == (1, 7, 0)
    assert est.request is None                      # one job is too few to suggest limits
    assert estimate([], [], jobs=50, remaining=50, at_once=None) is None


def span(ana: Path, job_ids: list[str]) -> float:
    """Seconds from the first of these jobs' start to the last one's end (own records)."""
    recs = [json.loads((ana / ".fairbig" / "work" / "state" / f"{j}.json").read_text())
            for j in job_ids]
    return max(r["updated"] for r in recs) - min(r["started"] for r in recs)


def stored_bytes(ana: Path) -> int:
    """Bytes of every annexed file under results/ on the output store's main, from the
    keys the symlinks point at (read with plain git, not fairbig's own code)."""
    store = Analysis.find(ana).output_git
    listing = subprocess.run(["git", "ls-tree", "-r", "main", "results"], cwd=store,
                             capture_output=True, text=True, check=True).stdout
    total = 0
    for line in listing.splitlines():
        mode, _, sha = line.split("\t")[0].split()
        if mode == "120000":
            target = subprocess.run(["git", "cat-file", "blob", sha], cwd=store,
                                    capture_output=True, text=True, check=True).stdout
            if m := re.search(r"-s(\d+)--", target.rsplit("/", 1)[-1]):
                total += int(m.group(1))
    return total


def test_pilot_file_adds_and_takes_back_jobs(tmp_path):
    """A second pilot adds to the first; a refused submit takes its jobs back, and the
    file goes with the last of them."""
    a = SimpleNamespace(work=tmp_path / "work")
    assert read_pilot(a) == []
    record_pilot(a, ["b", "a"])
    record_pilot(a, ["a", "c"])
    assert read_pilot(a) == ["b", "a", "c"]
    withdraw_pilot(a, {"a", "c"})
    assert read_pilot(a) == ["b"]
    withdraw_pilot(a, {"b"})
    assert not pilot_file(a).exists()


@pytest.fixture(scope="module", params=[
    "local", pytest.param("slurm", marks=[pytest.mark.slurm, pytest.mark.long])])
def six(request, tmp_path_factory, image, lab_key):
    """An analysis of 6 ukb-mini subjects (the 3rd and 6th with a second visit), on the
    local backend or on the test SLURM cluster with 2 jobs at once (its 2 cores)."""
    base = tmp_path_factory.mktemp(f"pilot-{request.param}")
    store = f"ria+file://{base}/input-store"
    ids = load_generator().generate(base / "ukb", 6, 7, store)
    ana = init_analysis(base, {"url": f"{store}#~ukb"}, image, lab_key)
    if request.param == "slurm":
        from .slurm_cluster import ensure_slurm, slurm_available

        if not slurm_available():
            pytest.skip("needs root on Linux to start the test cluster")
        ensure_slurm(None)
        cfgmod.update_file(ana / "fairbig.yaml", {"backend.name": "slurm",
                                                   "backend.slurm.mem": "300M",
                                                   "backend.slurm.throttle": 2})
        subprocess.run([str(BIN / "datalad"), "save", "-m", "slurm settings"], cwd=ana,
                       check=True, capture_output=True)
    fairbig("plan", cwd=ana)
    return {"ana": ana, "ids": ids, "backend": request.param}


def submit_and_wait(six: dict, *args: str) -> dict:
    """``fairbig submit --json``; on a scheduler, wait until its jobs have finished."""
    out = json.loads(fairbig("submit", "--json", *args, cwd=six["ana"]).stdout)
    if six["backend"] != "local":
        wait_idle(six["ana"], timeout=600)
    return out


@pytest.mark.slow
def test_estimate_without_a_pilot_is_one_line(six):
    ana = six["ana"]
    proc = fairbig("estimate", cwd=ana, check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") <= 1, proc.stderr
    assert "no pilot run yet" in proc.stderr


@pytest.mark.slow
def test_pilot_then_full_run_every_job_once_estimate_holds(six):
    ana, ids = six["ana"], six["ids"]
    pilot = submit_and_wait(six, "--pilot", "3")
    runs = [span(ana, pilot["submitted"])]
    assert pilot["pilot"] and len(pilot["submitted"]) == 3
    assert pilot["submitted"] != ids[:3]
    assert set(pilot["submitted"]) & {ids[2], ids[5]}, pilot   # a subject with 2 visits
    assert set(pilot["submitted"]) & (set(ids) - {ids[2], ids[5]}), pilot
    est = json.loads(fairbig("estimate", "--json", cwd=ana).stdout)
    # a local pilot has run when submit returns and prints the estimate itself
    assert pilot.get("estimate", est) == est
    assert ("estimate" in pilot) == (six["backend"] == "local")
    assert est["pilot_jobs"] == 3 and est["jobs"] == 6 and est["remaining"] == 3
    rep = status(ana)
    assert rep["pilot"] == pilot["submitted"] and rep["counts"]["done"] == 3
    assert "pilot run: 3 job(s)" in fairbig("status", cwd=ana).stdout

    full = submit_and_wait(six)
    assert not full["pilot"]
    runs.append(span(ana, full["submitted"]))
    assert sorted(full["submitted"]) == sorted(set(ids) - set(pilot["submitted"]))
    fairbig("merge", cwd=ana)
    rep = status(ana)
    assert rep["counts"]["merged"] == 6
    assert all(j["state"] == "merged" for j in rep["jobs"]), rep["jobs"]

    # every job ran once: one attempt each in the submission log
    subs = [json.loads(line)["job_id"] for line in
            (ana / ".fairbig" / "work" / "submissions.jsonl").read_text().splitlines()]
    assert sorted(subs) == sorted(ids)

    # measured totals against the pilot's estimate (at the jobs at once it assumed:
    # locally the cores, on SLURM the throttle of 2)
    totals = [u["job"] for u in rep["usage"].values()]
    cpu_h = sum(t["cpu_s"] for t in totals) / 3600
    peak = max(t["max_rss_mb"] for t in totals)
    assert est["cpu_hours"]["mid"] / FACTOR <= cpu_h <= est["cpu_hours"]["mid"] * FACTOR, \
        (cpu_h, est["cpu_hours"])
    assert est["peak_mem_mb"]["high"] / FACTOR <= peak <= est["peak_mem_mb"]["high"] * FACTOR
    wall_per_job = sum(t["wall_s"] for t in totals) / len(totals)
    assert (est["wall_per_job_s"]["mid"] / FACTOR <= wall_per_job
            <= est["wall_per_job_s"]["mid"] * FACTOR), (wall_per_job, est["wall_per_job_s"])
    # the whole computation: the two submits' runs, each from its first job's start to
    # its last job's end, at the backend's jobs at once the estimate assumed
    wall_h = sum(runs) / 3600
    assert est["wall_hours"]["mid"] / FACTOR <= wall_h <= est["wall_hours"]["mid"] * FACTOR, \
        (wall_h, est["wall_hours"])
    pushes = len(ids) / (sum(runs) / 60)
    assert (est["pushes_per_minute"]["mid"] / FACTOR <= pushes
            <= est["pushes_per_minute"]["mid"] * FACTOR), (pushes, est["pushes_per_minute"])
    stored_mb = stored_bytes(ana) / 2**20
    assert est["results_mb"]["mid"] / FACTOR <= stored_mb <= est["results_mb"]["mid"] * FACTOR, \
        (stored_mb, est["results_mb"])
    final = json.loads(fairbig("estimate", "--json", cwd=ana).stdout)
    assert final["results_mb"] == est["results_mb"]     # the same pilot jobs, now merged
    print(f"{six['backend']} estimate {json.dumps(est)}\n"
          f"measured: CPU-h {cpu_h:.4f}, peak {peak:.0f} MB, "
          f"wall per job {wall_per_job:.1f} s, wall {wall_h:.4f} h, pushes/min {pushes:.2f}, "
          f"results {stored_mb:.4f} MB")

    report = ana / "report.html"
    fairbig("report", "-o", str(report), cwd=ana)
    page = report.read_text()
    assert 'id="pilot"' in page and "CPU-hours" in page

    out = json.loads(fairbig("rerun", pilot["submitted"][0], "--json", cwd=ana).stdout)
    assert out["jobs"][0]["ok"] and set(out["jobs"][0]["files"].values()) == {"identical"}
