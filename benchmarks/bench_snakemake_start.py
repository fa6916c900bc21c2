#!/usr/bin/env python3
"""Snakemake starts at UK Biobank scale: workflows/Snakefile against the one it replaced.

Builds a real analysis (ukb-mini, 4 subjects: real stores, container, key), then
swaps in a plan of N synthetic jobs (default 42,715) and records in the output
store's main that every one of them is merged (``.fairbig/merged.tsv``), so
a start has nothing to do. Measured, for the Snakefile of this checkout and,
as the baseline, the Snakefile of a git revision (default ``1c2fc0d``, the
first one, which ``main`` still carried before the module rework):

- a start with nothing to do (``snakemake -n``, after one warm-up start),
- a verbose dry run with every job still to run (the merged record removed),
  its time, line count and longest line,
- the parse + DAG cost of one job as a cluster node pays it (``snakemake -n``
  of one job's marker), at N jobs and at smaller counts (``--counts``, the
  baseline at N only).

Each figure is wall time, CPU time (user + system of Snakemake and its children)
and peak RSS; the load average says how busy the machine was.

Usage: ``python benchmarks/bench_snakemake_start.py [--jobs N] [--counts N ...] [--baseline REV]
[--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from measure import load_average, measured  # noqa: E402

from fairbig.contract import PLAN_FILE  # noqa: E402
from fairbig.dataset import Analysis  # noqa: E402
from fairbig.jobtable import Job, render_tsv  # noqa: E402
from fairbig.storeview import MERGED_FILE  # noqa: E402
from tests.conftest import init_analysis, load_generator, make_key  # noqa: E402

BIN = Path(sys.executable).parent


def sh(*cmd: str, cwd: Path | None = None, input: str | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, text=True,
                          check=True).stdout


def build(base: Path) -> Path:
    home = base / "gnupg"
    fpr = make_key(home)
    os.environ["GNUPGHOME"] = str(home)
    image = base / "ukb-mini.tar"
    sh(str(REPO / "containers" / "build-image"), str(image))
    store = f"ria+file://{base}/input-store"
    load_generator().generate(base / "ukb", 4, 7, store)
    ana = init_analysis(base, {"url": f"{store}#~ukb"}, image, fpr)
    sh(str(BIN / "fairbig"), "plan", cwd=ana)
    return ana


def synthetic_plan(ana: Path, n: int) -> list[Job]:
    """N jobs shaped like ukb-mini's, committed as the plan."""
    jobs = [Job(f"{1_000_000 + i}", f"{1_000_000 + i}", "", f"{i:040x}",
                (f"inputs/data/{1_000_000 + i}",), (f"results/{1_000_000 + i}",),
                "sh code/process_subject.sh {inputs} {outputs}") for i in range(n)]
    (ana / PLAN_FILE).write_text(render_tsv(jobs))
    sh("git", "commit", "-qm", f"bench: plan of {n} jobs", "--", PLAN_FILE, cwd=ana)
    return jobs


def set_merged(store: Path, branch: str, jobs: list[Job] | None) -> None:
    """Record every job as merged on the store's main (None: take the record away)."""
    env = {**os.environ, "GIT_INDEX_FILE": str(store / "bench.index"),
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}

    def g(*args: str, input: str | None = None) -> str:
        return subprocess.run(["git", f"--git-dir={store}", *args], input=input, env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    g("read-tree", f"refs/heads/{branch}")
    text = "job_id\tinput_state\tcommit\n" + "".join(
        f"{j.job_id}\t{j.input_state}\t{'0' * 40}\n" for j in jobs or [])
    blob = g("hash-object", "-w", "--stdin", input=text)
    g("update-index", "--add", "--cacheinfo", f"100644,{blob},{MERGED_FILE}")
    tree = g("write-tree")
    commit = g("commit-tree", tree, "-p", f"refs/heads/{branch}", "-m", "bench: merged record")
    g("update-ref", f"refs/heads/{branch}", commit)
    (store / "bench.index").unlink()


def snakemake(snakefile: Path, ana: Path, cwd: Path, *args: str) -> tuple[dict, str, int]:
    """One Snakemake start: its figures (wall, CPU, peak RSS), output and exit code."""
    run = measured(str(BIN / "snakemake"), "-s", str(snakefile), "--config",
                   f"analysis={ana}", *args, cwd=cwd, check=False)
    return run.figures(), run.stdout + run.stderr, run.returncode


def say(what: str, figures: dict) -> None:
    """Each figure as soon as it is measured (a long run may be cut short)."""
    print(f"{what}: {figures} (load {load_average()})", file=sys.stderr, flush=True)


def measure(name: str, snakefile: Path, ana: Path, jobs: list[Job], work: Path) -> dict:
    a = Analysis(ana)
    store, branch = a.output_git, a.default_branch
    cwd = work / name
    cwd.mkdir()
    if name == "new":
        set_merged(store, branch, jobs)
    else:  # the baseline publishes the plan at every start: the store's main must follow
        sh("git", "push", "-qf", str(store), f"HEAD:refs/heads/{branch}", cwd=ana)
    snakemake(snakefile, ana, cwd, "-n")  # warm-up (the old Snakefile writes its markers here)
    plan_commit = sh("git", "log", "-1", "--format=%H", "--", PLAN_FILE, cwd=ana).strip()
    if name != "new":  # the old Snakefile's record of the merge of this plan
        (ana / ".fairbig" / "work" / "snakemake" / f"merged-{plan_commit}").touch()
    idle, out, rc = snakemake(snakefile, ana, cwd, "-n")
    assert rc == 0 and "Nothing to be done" in out, out[-2000:]
    say(f"{name} @ {len(jobs)} idle start", idle)
    marker = (ana / ".fairbig" / "work" / "snakemake" / plan_commit[:12] / "done" / jobs[7].job_id
              if name == "new" else ana / ".fairbig" / "work" / "snakemake" / "done"
              / jobs[7].job_id)
    if name == "new":
        set_merged(store, branch, None)
    one, out, rc = snakemake(snakefile, ana, cwd, "-n", str(marker))
    assert rc == 0, out[-2000:]
    say(f"{name} @ {len(jobs)} one job", one)
    verbose, out, rc = snakemake(snakefile, ana, cwd, "-n", "--verbose")
    assert rc == 0, out[-2000:]
    lines = out.splitlines()
    say(f"{name} @ {len(jobs)} verbose dry run", verbose)
    return {"idle_start": idle, "verbose_dry_run": verbose,
            "dry_run_lines": len(lines), "longest_line": max(map(len, lines)),
            "one_job_parse_dag": one}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=42_715)
    ap.add_argument("--baseline", default="1c2fc0d",
                    help="git revision whose workflows/Snakefile is the baseline")
    ap.add_argument("--counts", type=int, nargs="*", default=[40, 4_000],
                    help="smaller job counts to measure as well (per-job cost vs count)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="fairbig-bench-smk-") as tmp:
        base = Path(tmp)
        ana = build(base)
        old = base / "Snakefile.baseline"
        old.write_text(sh("git", "show", f"{args.baseline}:workflows/Snakefile", cwd=REPO))
        rows = {}
        for n in sorted({*args.counts, args.jobs}):
            jobs = synthetic_plan(ana, n)
            for name, snakefile in (("new", REPO / "workflows" / "Snakefile"),
                                    ("baseline", old))[:2 if n == args.jobs else 1]:
                work = base / f"run-{n}"
                work.mkdir(exist_ok=True)
                rows[f"{name} @ {n}"] = measure(name, snakefile, ana, jobs, work)
                print(f"{name} @ {n}: {rows[f'{name} @ {n}']}", file=sys.stderr, flush=True)
    load = {"before": load_before, "after": load_average()}
    if args.json:
        print(json.dumps({"rows": rows, "load_average": load}, indent=2))
        return 0
    timed = ["idle_start", "verbose_dry_run", "one_job_parse_dag"]
    print("Wall s / CPU s / peak RSS MiB; load average (1/5/15 min) before "
          f"{load['before']}, after {load['after']}")
    print("| Snakefile @ jobs | " + " | ".join(timed) + " | dry_run_lines | longest_line |")
    print("|---" * (len(timed) + 3) + "|")
    for name, r in rows.items():
        cells = [" / ".join(str(v) for v in r[c].values()) for c in timed]
        print(f"| {name} | " + " | ".join(cells)
              + f" | {r['dry_run_lines']} | {r['longest_line']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
