#!/usr/bin/env python3
"""Plan of a BIDS dataset at UK Biobank scale, by session, with inheritance files
(issue 19 target: ≤ 5 s, ≤ 1 GiB).

Builds with four ``git mktree --batch`` calls a BIDS tree of N subjects × 2 sessions
(anat T1w, func bold, scans.tsv per session, sessions.tsv per subject; top-level
T1w.json, acq-mprage_T1w.json, task-rest_bold.json, task-rest_events.tsv, dwi.*; every
file an annex-style symlink but participants.tsv, a file in git with N rows, read
row by row) and an analysis repository recording it as ``inputs/data``; then times
``read_layout`` + ``make_jobs`` + ``render_tsv`` through fairbig's own functions, each
step's wall/CPU time beside the total, and apart from it ``parse_tsv`` of the plan (what
the next plan and every other command pay to read it back).

The machine is shared, so the figures come with a baseline measured in the same run
on the same tree: ``git ls-tree -r -t`` of it to /dev/null, the one git call a plan
cannot avoid. ``ratio`` is plan / baseline (wall and CPU, git's CPU included).
Usage: ``python benchmarks/bench_plan_bids.py [--subjects N] [--dataset DIR] [--json]``
(``--dataset`` keeps the generated tree in DIR and reuses it on the next run: building
it takes minutes, the plan seconds, so profiling and before/after runs share one tree).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench_plan_status import fast_import  # benchmarks/ is on the path when run as a script

from fairbig.jobtable import Job, Layout, make_jobs, parse_tsv, read_layout, render_tsv

T = TypeVar("T")

CMD = "bids-app {input_dir} {output_dir} participant --participant-label {subject_label}"
TOP = ["CHANGES", "README", "dataset_description.json", "participants.json", "T1w.json",
       "acq-mprage_T1w.json", "task-rest_bold.json", "task-rest_events.tsv", "dwi.json",
       "dwi.bval", "dwi.bvec"]


def mktrees(repo: Path, trees: list[list[str]]) -> list[str]:
    """Tree objects from their ``ls-tree`` lines, one ``git mktree --batch`` for all
    (fast-import's linear search of a 42k-entry folder takes many minutes)."""
    text = "".join("".join(f"{e}\n" for e in t) + "\n" for t in trees)
    out = subprocess.run(["git", "-C", str(repo), "mktree", "--batch"], input=text,
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def build(base: Path, n: int) -> Path:
    """Every file an annexed file: a symlink into the annex, all of them one shared link
    blob (the plan reads names and tree ids, not what the links point to)."""
    ana, inp = base / "ana", base / "ana" / "inputs" / "data"
    for repo in (ana, inp):
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    target = ".git/annex/objects/xx/yy/MD5E-s1--0123456789abcdef0123456789abcdef/x"
    blob = subprocess.run(["git", "-C", str(inp), "hash-object", "-w", "--stdin"], input=target,
                          check=True, capture_output=True, text=True).stdout.strip()

    def link(name: str) -> str:
        return f"120000 blob {blob}\t{name}"

    subjects = [f"sub-{i:07d}" for i in range(1, n + 1)]
    pairs = [(s, ses) for s in subjects for ses in ("ses-1", "ses-2")]
    leaves = mktrees(inp, [[link(f"{s}_{ses}_{name}")] for s, ses in pairs
                           for name in ("acq-mprage_T1w.nii.gz", "task-rest_bold.nii.gz")])
    sessions = mktrees(inp, [[f"040000 tree {leaves[2 * i]}\tanat",
                              f"040000 tree {leaves[2 * i + 1]}\tfunc",
                              link(f"{s}_{ses}_scans.tsv")] for i, (s, ses) in enumerate(pairs)])
    subs = mktrees(inp, [[f"040000 tree {sessions[2 * i]}\tses-1",
                          f"040000 tree {sessions[2 * i + 1]}\tses-2",
                          link(f"{s}_sessions.tsv")] for i, s in enumerate(subjects)])
    rows = "participant_id\tage\n" + "".join(f"{s}\t{20 + i % 60}\n"
                                              for i, s in enumerate(subjects))
    participants = subprocess.run(["git", "-C", str(inp), "hash-object", "-w", "--stdin"],
                                  input=rows, check=True, capture_output=True,
                                  text=True).stdout.strip()
    top = mktrees(inp, [[*map(link, TOP), f"100644 blob {participants}\tparticipants.tsv",
                         *(f"040000 tree {t}\t{s}" for s, t in zip(subjects, subs, strict=True))]])
    who = b"committer b <b@b> 0 +0000\n"
    fast_import(inp, b"".join([b"commit refs/heads/master\n", who, b"data 5\nbids\n",
                               f"M 040000 {top[0]} \n".encode()]))
    # mktree leaves 300k loose objects; a dataset cloned from a store has them packed,
    # and reading loose ones was half of the plan's CPU time (and of the baseline's).
    subprocess.run(["git", "-C", str(inp), "repack", "-a", "-d", "-q"], check=True)
    head = subprocess.run(["git", "-C", str(inp), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    fast_import(ana, b"".join([b"commit refs/heads/master\n", who, b"data 4\nana\n",
                               f"M 160000 {head} inputs/data\n".encode()]))
    return ana


def timed(step: Callable[[], T]) -> tuple[T, float, float]:
    """``step()``, its wall time and its CPU time (this process and its children)."""
    def cpu() -> float:
        return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                   for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    t0, c0 = time.perf_counter(), cpu()
    value = step()
    return value, time.perf_counter() - t0, cpu() - c0


def plan(ana: Path, steps: dict[str, tuple[float, float]]) -> tuple[Layout, list[Job], str]:
    """The plan, each step's (wall, CPU) seconds put in ``steps``."""
    layout, *steps["read_layout"] = timed(lambda: read_layout(ana, "inputs/data", "auto",
                                                               "session"))
    jobs, *steps["make_jobs"] = timed(lambda: make_jobs(layout.units, "inputs/data",
                                                        "results", CMD))
    text, *steps["render_tsv"] = timed(lambda: render_tsv(jobs))
    return layout, jobs, text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--dataset", type=Path, help="build the tree here once, reuse it after")
    ap.add_argument("--plan-out", type=Path, help="write the plan text here (to compare runs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = args.dataset or Path(tmp)
        reuse = (base / "ana" / ".git" / "refs" / "heads" / "master").exists()  # built last
        ana, setup, _ = timed(lambda: base / "ana" if reuse else build(base, args.subjects))
        listing = ["git", "-C", str(ana / "inputs" / "data"), "ls-tree", "-r", "-t", "-z",
                   "--full-tree", "HEAD"]
        _, base_s, base_cpu = timed(lambda: subprocess.run(listing, check=True,
                                                           stdout=subprocess.DEVNULL))
        steps: dict[str, tuple[float, float]] = {}
        (layout, jobs, text), plan_s, plan_cpu_s = timed(lambda: plan(ana, steps))
        # not part of plan_s: what the next plan (its previous plan) and every other
        # command pay to read this plan back
        _, *steps["parse_tsv"] = timed(lambda: parse_tsv(text))
    if args.plan_out:
        args.plan_out.write_text(text)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inherited = len(jobs[0].inputs) - 1 if jobs else 0
    subjects = len({j.subject for j in jobs})    # a reused tree's, not --subjects
    result = {"subjects": subjects, "jobs": len(jobs), "layout": layout.kind,
              "inputs_per_job": inherited + 1, "setup_s": round(setup, 2),
              "plan_s": round(plan_s, 2), "plan_cpu_s": round(plan_cpu_s, 2),
              "baseline_ls_tree_s": round(base_s, 2), "baseline_cpu_s": round(base_cpu, 2),
              "ratio_wall": round(plan_s / base_s, 1), "ratio_cpu": round(plan_cpu_s / base_cpu, 1),
              "load_average": round(os.getloadavg()[0], 1), "plan_bytes": len(text),
              "peak_rss_mib": round(rss_mib),
              "steps_s_cpu_s": {k: [round(w, 2), round(c, 2)] for k, (w, c) in steps.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['jobs']} session jobs of {subjects} subjects ({layout.kind}, "
              f"{result['inputs_per_job']} input paths each) planned in {result['plan_s']} s "
              f"({result['plan_cpu_s']} CPU-s, load {result['load_average']}; "
              f"{result['ratio_wall']}x wall, {result['ratio_cpu']}x CPU of git ls-tree -r "
              f"alone: {result['baseline_ls_tree_s']} s), "
              f"peak RSS {result['peak_rss_mib']} MiB (setup {result['setup_s']} s); "
              + ", ".join(f"{k} {w} s/{c} CPU-s" for k, (w, c) in
                          result["steps_s_cpu_s"].items()))
    ok = plan_s <= 5 and rss_mib <= 1024
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
