#!/usr/bin/env python3
"""What a job's checkout costs once the store's main holds every merged result.

After ``fairbig merge`` of a UK-Biobank-sized run, ``results/`` of main holds
42,715 jobs x 30 files; every job planned later (``plan --update``) clones
that commit. Times the checkout a job does (``git sparse-checkout`` of its own
``results/<job>/`` only, as ``templates/job.sh.j2``) against a full checkout,
and counts the files each leaves in the work tree. The store is synthetic
(:mod:`synthstore`, merged with :mod:`fairbig.treemerge`).

Usage: ``PYTHONPATH=.:benchmarks python benchmarks/bench_sparse_checkout.py
[--jobs N] [--files F] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench_merge import clocked, git, tree_merge
from synthstore import make_store


def checkout(store: Path, work: Path, job_id: str, sparse: bool) -> dict[str, float | int]:
    """Clone without checkout, then check out as a job does; seconds and files left."""
    git("clone", "-q", "--no-checkout", "--single-branch", "--branch", "main",
        f"file://{store}", work)
    if sparse:
        git("-C", work, "sparse-checkout", "set", "--no-cone", "/*", "!/results/*/",
            f"/results/{job_id}/")
    _, seconds = clocked(lambda: git("-C", work, "checkout", "-q", "-b", f"job-{job_id}",
                                     "main"))
    files = sum(len(names) for top, _, names in os.walk(work) if "/.git" not in top + "/")
    return {"seconds": seconds, "files": files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=42_715, help="merged jobs in main")
    parser.add_argument("--files", type=int, default=30, help="result files per job")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fairbig-bench-sparse-") as tmp:
        store = Path(tmp) / "store.git"
        synth, made = clocked(lambda: make_store(store, args.jobs,
                                                 files_per_branch=args.files))
        merged, merge_s = clocked(lambda: tree_merge(store))
        git(f"--git-dir={store}", "update-ref", "refs/heads/main", merged)
        job = synth.job_ids[len(synth.job_ids) // 2]
        out = {"jobs": args.jobs, "files_per_job": args.files, "store_s": made,
               "merge_s": merge_s,
               "full": checkout(store, Path(tmp) / "full", job, sparse=False),
               "sparse": checkout(store, Path(tmp) / "sparse", job, sparse=True)}
    out["speedup"] = round(out["full"]["seconds"] / max(out["sparse"]["seconds"], 1e-3), 1)
    if args.json:
        print(json.dumps(out))
        return
    print(f"main with {args.jobs:,} jobs x {args.files} files (store {made} s, merge "
          f"{merge_s} s)")
    for mode in ("full", "sparse"):
        print(f"  {mode:6} checkout: {out[mode]['seconds']:8.2f} s, "
              f"{out[mode]['files']:>9,} files in the work tree")
    print(f"  sparse is {out['speedup']}x faster than full")


if __name__ == "__main__":
    main()
