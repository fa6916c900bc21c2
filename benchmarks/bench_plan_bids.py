#!/usr/bin/env python3
"""Plan of a BIDS dataset at UK Biobank scale, by session, with inheritance files
(issue 19 target: ≤ 5 s, ≤ 1 GiB).

Builds with one ``git fast-import`` stream a BIDS tree of N subjects × 2 sessions
(anat T1w, func bold, scans.tsv per session, sessions.tsv per subject; top-level
T1w.json, acq-mprage_T1w.json, task-rest_bold.json, task-rest_events.tsv, dwi.*,
participants.tsv with N rows; every file an annex-style symlink) and an analysis
repository recording it as ``inputs/data``; then times ``read_layout`` +
``make_jobs`` + ``render_tsv`` through fairbig's own functions.
Usage: ``python benchmarks/bench_plan_bids.py [--subjects N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from bench_plan_status import fast_import  # benchmarks/ is on the path when run as a script

from fairbig.jobtable import make_jobs, read_layout, render_tsv

CMD = "bids-app {input_dir} {output_dir} participant --participant-label {subject_label}"
TOP = ["CHANGES", "README", "dataset_description.json", "participants.json", "T1w.json",
       "acq-mprage_T1w.json", "task-rest_bold.json", "task-rest_events.tsv", "dwi.json",
       "dwi.bval", "dwi.bvec"]


def link(path: str) -> bytes:
    """An annexed file: a symlink into the annex (one shared link blob, mark :1; the
    plan reads names and tree ids, not what the links point to)."""
    return f"M 120000 :1 {path}\n".encode()


def build(base: Path, n: int) -> Path:
    ana, inp = base / "ana", base / "ana" / "inputs" / "data"
    for repo in (ana, inp):
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    who = b"committer b <b@b> 0 +0000\n"
    subjects = [f"sub-{i:07d}" for i in range(1, n + 1)]
    target = b".git/annex/objects/xx/yy/MD5E-s1--0123456789abcdef0123456789abcdef/x"
    parts = [b"blob\nmark :1\n", f"data {len(target)}\n".encode(), target, b"\n",
             b"commit refs/heads/master\n", who, b"data 5\nbids\n"]
    parts += [link(p) for p in [*TOP, "participants.tsv"]]
    for s in subjects:
        parts.append(link(f"{s}/{s}_sessions.tsv"))
        for ses in ("ses-1", "ses-2"):
            d = f"{s}/{ses}"
            parts += [link(f"{d}/anat/{s}_{ses}_acq-mprage_T1w.nii.gz"),
                      link(f"{d}/func/{s}_{ses}_task-rest_bold.nii.gz"),
                      link(f"{d}/{s}_{ses}_scans.tsv")]
    fast_import(inp, b"".join(parts))
    head = subprocess.run(["git", "-C", str(inp), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    fast_import(ana, b"".join([b"commit refs/heads/master\n", who, b"data 4\nana\n",
                               f"M 160000 {head} inputs/data\n".encode()]))
    return ana


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        ana = build(Path(tmp), args.subjects)
        setup = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        layout = read_layout(ana, "inputs/data", "auto", "session")
        jobs = make_jobs(layout.units, "inputs/data", "results", CMD)
        text = render_tsv(jobs)
        plan_s = time.perf_counter() - t0
        plan_cpu_s = time.process_time() - c0   # this process only; git's share is in plan_s
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inherited = len(jobs[0].inputs) - 1 if jobs else 0
    result = {"subjects": args.subjects, "jobs": len(jobs), "layout": layout.kind,
              "inputs_per_job": inherited + 1, "setup_s": round(setup, 2),
              "plan_s": round(plan_s, 2), "plan_cpu_s": round(plan_cpu_s, 2),
              "load_average": round(os.getloadavg()[0], 1), "plan_bytes": len(text),
              "peak_rss_mib": round(rss_mib)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['jobs']} session jobs of {args.subjects} subjects ({layout.kind}, "
              f"{result['inputs_per_job']} input paths each) planned in {result['plan_s']} s "
              f"({result['plan_cpu_s']} CPU-s, load {result['load_average']}), "
              f"peak RSS {result['peak_rss_mib']} MiB (setup {result['setup_s']} s)")
    ok = plan_s <= 5 and rss_mib <= 1024
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
