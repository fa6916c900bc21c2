#!/usr/bin/env python3
"""``fairbig merge`` at UK Biobank scale: the first full merge and a merge as results arrive.

A real analysis (fairbig init, encrypted output store, one real job), then a
plan of N jobs and N synthetic job branches written into the output store
with one ``git fast-import`` stream (three files each, one an annex symlink
to content that really is in the encrypted storage). Times ``fairbig merge``
as a user runs it twice: the first merge of all N branches (target ≤ 20 s
at 42,767), then, with main holding them, a merge of ``--new`` more branches
whose objects arrive loose, as small job pushes leave them (target ≤ 3 s for
1,000). ``--baseline-venv`` runs both merges first with another fairbig
(e.g. main's) on a snapshot of the same analysis and store (its results
checked out, as before init left them out), restored before this tree's
run, and reports each figure as a ratio to it; ``--layout`` and
``--baseline-layout`` choose the job branches' layout of each run (``job``:
the branch starts from the plan commit without ``results/``, as the job script
makes it; ``old``: every result merged before rides along in each branch). Separately: the
availability check for N distinct keys (the synthetic branches share one
key, which the merge checks once).
Usage: ``python benchmarks/bench_merge_full.py [--jobs N] [--new M]
[--baseline-venv DIR] [--json]``
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("FAIRBIG_VENV", REPO / ".venv")) / "bin"


def sh(*args: str, cwd: Path | None = None, input: bytes | None = None) -> str:
    return subprocess.run(args, cwd=cwd, input=input, check=True,
                          capture_output=True).stdout.decode()


def timed(*args: str, cwd: Path | None = None) -> float:
    t0 = time.perf_counter()
    sh(*args, cwd=cwd)
    return round(time.perf_counter() - t0, 2)


def setup(base: Path) -> tuple[Path, Path, str]:
    os.environ["GNUPGHOME"] = str(base / "gnupg")
    (base / "gnupg").mkdir(mode=0o700)
    sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "bench <b@b>", "default",
       "default", "never")
    fpr = next(line.split(":")[9] for line in sh("gpg", "--with-colons", "--list-keys")
               .splitlines() if line.startswith("fpr"))
    sh(str(REPO / "containers" / "build-image"), str(base / "img.tar"))
    spec = importlib.util.spec_from_file_location(
        "gen", REPO / "examples" / "ukb-mini" / "generate_input.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(base / "ukb", 1, 1, f"ria+file://{base}/in")
    ana = base / "ana"
    sh(str(BIN / "fairbig"), "init", str(ana), "--input", f"ria+file://{base}/in#~ukb",
       "--container", str(base / "img.tar"), "--input-store", f"{base}/in",
       "--output-store", f"{base}/out", "--encrypt-to", fpr, "--command",
       "sh code/process_subject.sh {input_dir} {output_dir}", "--code",
       str(REPO / "examples" / "ukb-mini" / "code" / "process_subject.sh"))
    sh(str(BIN / "fairbig"), "plan", cwd=ana)
    sh(str(BIN / "fairbig"), "submit", cwd=ana)
    dsid = sh("git", "config", "-f", str(ana / ".datalad" / "config"),
              "datalad.dataset.id").strip()
    store = base / "out" / dsid[:3] / dsid[3:]
    real = sh("git", f"--git-dir={store}", "for-each-ref", "--format=%(refname)",
              "refs/heads/job-*").split()[0]
    link = next(line for line in sh("git", f"--git-dir={store}", "ls-tree", "-r", real,
                                    "results").splitlines() if line.startswith("120000"))
    target = sh("git", f"--git-dir={store}", "cat-file", "blob", link.split()[2])
    return ana, store, target


def subject_only(job_id: str, state: str) -> str:
    """The commit message of a synthetic job: its subject line alone."""
    return f"[DATALAD RUNCMD] fairbig job {job_id} (input {state})"


def synthesize(ana: Path, store: Path, target: str, n: int,
               message: Callable[[str, str], str] = subject_only, first: int = 2_000_000,
               loose: bool = False, layout: str = "job") -> list[str]:
    """N planned jobs (IDs from ``first`` on) and their branches; ``message(job, input
    state)`` gives each commit message (the subject line is what fairbig reads back).
    ``loose``: the objects are unpacked, as a store's ``receive.unpackLimit`` leaves
    the small pushes of real jobs. ``layout``: ``job``, each branch starts with the
    plan commit without ``results/`` as the job script makes it (``jobstep base``);
    ``old``, the run commit directly on the plan commit, carrying every merged result
    (branches of jobs started before that change)."""
    plan = (ana / ".fairbig" / "plan.tsv").read_text().splitlines()
    ids = [str(first + i) for i in range(n)]
    rows = [f"{j}\t{j}\t\t{hashlib.sha1(j.encode()).hexdigest()}\tinputs/data/{j}\t"
            f"results/{j}\tsh code/process_subject.sh inputs/data/{j} results/{j}" for j in ids]
    (ana / ".fairbig" / "plan.tsv").write_text("\n".join(plan + rows) + "\n")
    sh(str(BIN / "datalad"), "save", "-m", "bench plan", ".fairbig/plan.tsv", cwd=ana)
    sh("git", "push", "-q", "output", "HEAD", cwd=ana)
    head = sh("git", "rev-parse", "HEAD", cwd=ana).strip()
    # dated after the plan commit, as jobs that ran are: with date 0 every history
    # walk from the store's main down to the fork point crosses all merged commits
    when = int(time.time())
    stream = []
    for j, row in zip(ids, rows, strict=True):
        msg = message(j, row.split("\t")[3])
        rel = "../../.git/annex/objects/" + target.split(".git/annex/objects/", 1)[1]
        start = f"from {head}\n"
        if layout == "job":
            first_msg = f"fairbig job {j}: start from plan commit {head[:12]}"
            stream.append(f"commit refs/heads/job-{j}\ncommitter b <b@b> {when} +0000\n"
                          f"data {len(first_msg)}\n{first_msg}\n{start}D results\n\n")
            start = ""
        stream.append(f"commit refs/heads/job-{j}\ncommitter b <b@b> {when} +0000\n"
                      f"data {len(msg)}\n{msg}\n{start}"
                      f"M 100644 inline results/{j}/a.txt\ndata 2\n{j[-1]}\n\n"
                      f"M 100644 inline results/{j}/b.txt\ndata 3\nb{j[-1]}\n\n"
                      f"M 120000 inline results/{j}/k.txt\ndata {len(rel)}\n{rel}\n")
    packs = set((store / "objects" / "pack").glob("*.pack"))
    sh("git", f"--git-dir={store}", "fast-import", "--quiet", input="".join(stream).encode())
    if loose:
        for pack in set((store / "objects" / "pack").glob("*.pack")) - packs:
            data = pack.read_bytes()
            for f in pack.parent.glob(pack.stem + ".*"):
                f.unlink()
            sh("git", f"--git-dir={store}", "unpack-objects", "-q", input=data)
    return ids


def merge_twice(fairbig: Path, ana: Path, store: Path, target: str, jobs: int,
                new: int, layout: str) -> dict:
    """The first merge of ``jobs`` branches, then of ``new`` more arriving loose."""
    figures = {}
    for case, n, first, loose in (("full", jobs, 2_000_000, False),
                                  ("incremental", new, 2_000_000 + jobs, True)):
        synthesize(ana, store, target, n, first=first, loose=loose, layout=layout)
        t0 = time.perf_counter()
        out = json.loads(sh(str(fairbig), "merge", "--json", cwd=ana))
        figures[case] = {"jobs": len(out["merged"]), "s": round(time.perf_counter() - t0, 2),
                         "phases_s": out["seconds"]}
        print(fairbig, case, json.dumps(figures[case]), file=sys.stderr, flush=True)
    return figures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=42_767)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--baseline-venv", type=Path,
                    help="another fairbig's virtualenv to measure first, e.g. main's .venv")
    ap.add_argument("--layout", choices=("job", "old"), default="job",
                    help="branch layout for this tree's run (see synthesize)")
    ap.add_argument("--baseline-layout", choices=("job", "old"), default="old",
                    help="branch layout for the baseline's run (old: what main's merge knows)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ana, store, target = setup(base)
        result: dict = {"jobs": args.jobs, "new": args.new}
        if args.baseline_venv:
            snap = base / "snapshot"
            for d in (ana, base / "out"):
                shutil.copytree(d, snap / d.name, symlinks=True)
            # as an analysis that checks its results out (before this tree's init left
            # them out) is: the baseline pays for writing them where it does
            sh("git", "sparse-checkout", "disable", cwd=ana)
            result["baseline"] = merge_twice(args.baseline_venv / "bin" / "fairbig", ana,
                                             store, target, args.jobs, args.new,
                                             args.baseline_layout)
            for d in (ana, base / "out"):
                shutil.rmtree(d)
                (snap / d.name).rename(d)
        clone_before = timed("git", "clone", "-q", "--no-local", "--no-checkout", str(store),
                             str(base / "c1"))
        result.update(merge_twice(BIN / "fairbig", ana, store, target, args.jobs, args.new,
                                  args.layout))
        for case in ("full", "incremental"):
            if "baseline" in result:
                result[case]["ratio_to_baseline"] = round(
                    result[case]["s"] / result["baseline"][case]["s"], 3)
        keys = "".join(f"MD5E-s1--{i:032x}\n" for i in range(args.jobs)).encode()
        t0 = time.perf_counter()
        subprocess.run(["git", "annex", "checkpresentkey", "--batch", "output-storage"],
                       cwd=ana, input=keys, capture_output=True, check=True)
        result["distinct_key_check_s"] = round(time.perf_counter() - t0, 2)
        result.update({
            "peak_child_rss_mib": round(
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            "log_1_s": timed("git", f"--git-dir={store}", "log", "-1", "HEAD"),
            "log_path_s": timed("git", f"--git-dir={store}", "log", "--oneline", "HEAD", "--",
                                f"results/{2_000_000 + args.jobs // 2}"),
            "clone_before_s": clone_before,
            "clone_after_s": timed("git", "clone", "-q", "--no-local", "--no-checkout",
                                   str(store), str(base / "c2")),
        })
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
