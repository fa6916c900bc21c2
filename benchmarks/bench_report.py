#!/usr/bin/env python3
"""``fairbig report`` at UK Biobank scale (target ≤ 5 s and ≤ 5 MB for 42,715 jobs).

The analysis of ``bench_merge_full.py`` (fairbig init, encrypted output store, one
real job) plus N-1 synthetic job branches, merged with ``fairbig merge``; every job
gets a state record with resource usage per step (64 hosts, about a day of runs, 1 %
failed in step run with a log naming the cause, their branches deleted). Times the
report as a user runs it, twice (the first reads every record, the second the
records cache: fairbig.jobstate.read_records), as wall, CPU and peak RSS, and
checks its size.
Usage: ``python benchmarks/bench_report.py [--jobs N] [--json] [--keep PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench_merge_full import BIN, setup, sh, synthesize
from measure import load_average, measured

from fairbig.jobstate import JobRecord
from fairbig.usage import JOB, Usage, combine

FAILED_SHARE = 0.01
CAUSES = ("MemoryError: cannot allocate {n} bytes", "fairbig job: content not in output-storage: "
          "results/{j}/a.txt", "segmentation fault (core dumped) in step {n}")


def measured_as_jobs(*values: float | None) -> Usage:
    """A step's usage with the 3 decimals fairbig.usage.measure writes."""
    return Usage(*(None if v is None else round(v, 3) for v in values))


def step_usage(rng: random.Random, scale: float) -> dict[str, Usage]:
    u = measured_as_jobs
    steps = {"clone": u(rng.uniform(1.5, 4), rng.uniform(1, 2), rng.uniform(60, 90)),
             "get": u(rng.uniform(0.5, 3), rng.uniform(0.3, 1), rng.uniform(50, 80)),
             "container": u(scale, scale * 0.95, rng.lognormvariate(7.5, 0.3))}
    steps["run"] = combine([steps["container"], Usage(1.0, 0.9, 70)])
    steps["push-content"] = u(rng.uniform(0.3, 2), rng.uniform(0.2, 1), 60, 0.0, 30.0)
    return steps


def records(ana: Path, job_ids: list[str], failed: set[str], seed: int = 7) -> None:
    rng = random.Random(seed)
    plan = {f[0]: f[3] for f in (line.split("\t") for line in
                                 (ana / ".fairbig" / "plan.tsv").read_text().splitlines()[1:])}
    state_dir = ana / ".fairbig" / "work" / "state"
    log_dir = ana / ".fairbig" / "work" / "logs"
    state_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = 1_800_000_000
    written = time.time() - 60  # the last job wrote its record a minute before the report
    for n, j in enumerate(job_ids):
        steps = step_usage(rng, rng.lognormvariate(8, 0.25))
        wall = sum(u.wall_s for k, u in steps.items() if k != "container") + 1
        start = t0 + int(n * 86_400 / len(job_ids))
        total = asdict(combine([u for k, u in steps.items() if k != "container"]))
        usage = {k: asdict(u) for k, u in steps.items()} | {JOB: total | {"wall_s": wall}}
        bad = j in failed
        rec = JobRecord(j, "failed" if bad else "done", "run" if bad else "finished",
                        137 if bad else 0, f"node{n % 64:02d}", 1, str(n), start,
                        start + int(wall), "", plan[j], usage=usage)
        (state_dir / f"{j}.json").write_text(json.dumps(asdict(rec)))
        os.utime(state_dir / f"{j}.json", (written, written))
        if bad:
            cause = rng.choice(CAUSES).format(n=rng.randint(1, 10**9), j=j)
            (log_dir / f"{j}.log").write_text(
                f"=== attempt run-1 {n} 2027-01-15T08:00:00Z ===\n"
                f"2027-01-15T08:00:00Z fairbig[{j}] step run\n{cause}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=42_715, help="jobs in all (one of them real)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", type=Path, help="copy the report here")
    args = ap.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ana, store, target = setup(base)
        ids = synthesize(ana, store, [target], args.jobs - 1)
        failed = set(random.Random(3).sample(ids, int(len(ids) * FAILED_SHARE)))
        sh("git", f"--git-dir={store}", "update-ref", "--stdin",
           input="".join(f"delete refs/heads/job-{j}\n" for j in sorted(failed)).encode())
        merged = json.loads(sh(str(BIN / "fairbig"), "merge", "--json", cwd=ana))
        records(ana, ids, failed)
        page = base / "report.html"
        # the first report reads every record (what every report paid before the
        # records cache); the second only the cache and what changed since
        runs = {}
        for name in ("first", "second"):
            run = measured(str(BIN / "fairbig"), "report", "-o", str(page), "--json", cwd=ana)
            runs[name] = run.figures() | {"internal_s": json.loads(run.stdout)["seconds"]}
        out = json.loads(run.stdout)
        if args.keep:
            shutil.copy(page, args.keep)
        result = {"jobs": out["jobs"], "merged": len(merged["merged"]),
                  "failed": len(failed), "report_first": runs["first"],
                  "report_second": runs["second"],
                  "cpu_ratio_second_vs_first": round(
                      runs["second"]["cpu_s"] / runs["first"]["cpu_s"], 2),
                  "bytes": out["bytes"], "mib": round(out["bytes"] / 2**20, 2),
                  "svg_charts": page.read_text().count("<svg "),
                  "load_average": load_average()}
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
