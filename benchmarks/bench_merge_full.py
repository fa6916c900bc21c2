#!/usr/bin/env python3
"""``fairbig merge`` at UK Biobank scale: the first full merge and a merge as results arrive.

A real analysis (fairbig init, encrypted output store, one real job), then a
plan of N jobs and N synthetic job branches written into the output store
with one ``git fast-import`` stream (three files each, one an annex symlink
to content that really is in the encrypted storage). Times ``fairbig merge``
as a user runs it twice: the first merge of all N branches (target ≤ 20 s
at 42,767; they all link the real job's one key, or with ``--full-keys
distinct`` each a key of its own, stored first as below), then, with main holding them, a merge of
``--new`` more branches whose objects arrive loose, as small job pushes leave
them, each linking a key of its own whose content was copied into the
encrypted storage beforehand (untimed; ``new_keys_setup_s``), so the merge's
availability check costs what it does for real results (target ≤ 3 s for
1,000). ``--baseline-venv`` runs both merges first with another fairbig
(e.g. main's) on a snapshot of the same analysis and store (its results
checked out, as before init left them out), restored before this tree's
run, and reports each figure as a ratio to it; ``--layout`` and
``--baseline-layout`` choose the job branches' layout of each run (``job``:
the branch starts from the plan commit without ``results/``, as the job script
makes it; ``old``: every result merged before rides along in each branch). Separately: the
availability check for N distinct keys through ``annexkeys.missing_in`` (what the
merge calls, one process per CPU) beside one ``checkpresentkey`` process, same run.
Usage: ``python benchmarks/bench_merge_full.py [--jobs N] [--new M]
[--full-keys shared|distinct] [--baseline-venv DIR] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Callable, Sequence
from pathlib import Path

from fairbig.annexkeys import check_workers, missing_in
from fairbig.contract import OUTPUT_STORAGE

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
    """A real analysis with one real job; its store and the object path
    (``Xx/Yy/KEY/KEY``) of that job's annexed result."""
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
    with contextlib.redirect_stdout(sys.stderr):  # datalad's results, not --json's
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
    return ana, store, target.split(".git/annex/objects/", 1)[1]


def stored_keys(ana: Path, n: int) -> tuple[list[str], dict]:
    """Object paths (``Xx/Yy/KEY/KEY``) of ``n`` distinct keys whose content is in
    the encrypted output storage and not in the analysis, which has no record of them
    either, as jobs leave their results; and how long storing them took (setup, not
    part of any merge)."""
    scratch = ana / "bench-new"
    scratch.mkdir()
    for i in range(n):
        (scratch / str(i)).write_text(f"bench result {i}\n")
    records = sh("git", "rev-parse", "refs/heads/git-annex", cwd=ana).strip()
    t0 = time.perf_counter()
    keys = [json.loads(line)["key"] for line in
            sh("git", "annex", "add", "--force-large", "--json", scratch.name,
               cwd=ana).splitlines()]
    t1 = time.perf_counter()
    sh("git", "annex", "copy", f"-J{os.cpu_count() or 1}", "--to", OUTPUT_STORAGE,
       scratch.name, cwd=ana)
    t2 = time.perf_counter()
    sh("git", "annex", "drop", "--force", scratch.name, cwd=ana)
    sh("git", "rm", "-r", "-q", "--cached", scratch.name, cwd=ana)
    shutil.rmtree(scratch)
    # As for real results, the analysis does not know where they are: the jobs' clones
    # that stored them recorded it in git-annex branches that are never pushed; the
    # merge writes the records. git-annex rebuilds its index from the branch.
    sh("git", "update-ref", "refs/heads/git-annex", records, cwd=ana)
    for name in ("index", "index.lck"):
        (ana / ".git" / "annex" / name).unlink(missing_ok=True)
    objects = sh("git", "annex", "examinekey", "--batch", "--format=${hashdirmixed}${key}/${key}\n",
                 cwd=ana, input="".join(k + "\n" for k in keys).encode()).split()
    assert len(set(objects)) == n, "stored keys are not distinct"
    return objects, {"keys": n, "add_s": round(t1 - t0, 2), "copy_s": round(t2 - t1, 2)}


def subject_only(job_id: str, state: str) -> str:
    """The commit message of a synthetic job: its subject line alone."""
    return f"[DATALAD RUNCMD] fairbig job {job_id} (input {state})"


def synthesize(ana: Path, store: Path, objects: Sequence[str], n: int,
               message: Callable[[str, str], str] = subject_only, first: int = 2_000_000,
               loose: bool = False, layout: str = "job") -> list[str]:
    """N planned jobs (IDs from ``first`` on) and their branches, the i-th linking
    ``objects[i % len(objects)]``; ``message(job, input state)`` gives each commit
    message (the subject line is what fairbig reads back).
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
    for i, (j, row) in enumerate(zip(ids, rows, strict=True)):
        msg = message(j, row.split("\t")[3])
        rel = "../../.git/annex/objects/" + objects[i % len(objects)]
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


def merge_twice(fairbig: Path, ana: Path, store: Path, full: list[str], distinct: list[str],
                jobs: int, layout: str) -> dict:
    """The first merge of ``jobs`` branches linking the ``full`` objects, then of
    one more branch per ``distinct`` object, arriving loose."""
    figures = {}
    for case, objects, n, first, loose in (
            ("full", full, jobs, 2_000_000, False),
            ("incremental", distinct, len(distinct), 2_000_000 + jobs, True)):
        synthesize(ana, store, objects, n, first=first, loose=loose, layout=layout)
        t0 = time.perf_counter()
        out = json.loads(sh(str(fairbig), "merge", "--json", cwd=ana))
        figures[case] = {"jobs": len(out["merged"]), "s": round(time.perf_counter() - t0, 2),
                         "distinct_keys": len(set(objects[:n])), "phases_s": out["seconds"]}
        print(fairbig, case, json.dumps(figures[case]), file=sys.stderr, flush=True)
    return figures


def distinct_key_check(ana: Path, n: int) -> dict:
    """The availability check of ``n`` distinct keys, as the merge runs it
    (``missing_in``: one process per CPU) and in one process, in the order one,
    parallel, parallel, one (so a load that drifts during the run weighs on both
    alike); the mean of each."""
    keys = [f"MD5E-s1--{i:032x}" for i in range(n)]

    def serial() -> None:
        subprocess.run(["git", "annex", "checkpresentkey", "--batch", OUTPUT_STORAGE],
                       cwd=ana, input="".join(k + "\n" for k in keys).encode(),
                       capture_output=True, check=True)

    def parallel() -> None:
        assert len(missing_in(ana, OUTPUT_STORAGE, keys)) == n

    took: dict[str, list[float]] = {"serial": [], "parallel": []}
    for check in (serial, parallel, parallel, serial):
        t0 = time.perf_counter()
        check()
        took[check.__name__].append(time.perf_counter() - t0)
    mean = {k: sum(v) / len(v) for k, v in took.items()}
    return {"distinct_key_check_keys": n, "distinct_key_check_workers": check_workers(n),
            "distinct_key_check_s": round(mean["parallel"], 2),
            "distinct_key_check_serial_s": round(mean["serial"], 2),
            "distinct_key_check_ratio": round(mean["parallel"] / mean["serial"], 3),
            "distinct_key_check_runs_s": {k: [round(t, 2) for t in v]
                                          for k, v in took.items()}}


def uptime() -> str:
    """The load averages, printed beside the figures (the machine is shared)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


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
    ap.add_argument("--full-keys", choices=("shared", "distinct"), default="shared",
                    help="the full merge's branches link one key (default) or each its own, "
                         "stored first in the encrypted storage (42,767: about 7 min here)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    result: dict = {"jobs": args.jobs, "new": args.new, "uptime_before": uptime()}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ana, store, target = setup(base)
        distinct, result["new_keys_setup_s"] = stored_keys(ana, args.new)
        full = [target]
        if args.full_keys == "distinct":
            full, result["full_keys_setup_s"] = stored_keys(ana, args.jobs)
        if args.baseline_venv:
            snap = base / "snapshot"
            for d in (ana, base / "out"):
                shutil.copytree(d, snap / d.name, symlinks=True)
            # as an analysis that checks its results out (before this tree's init left
            # them out) is: the baseline pays for writing them where it does
            sh("git", "sparse-checkout", "disable", cwd=ana)
            result["baseline"] = merge_twice(args.baseline_venv / "bin" / "fairbig", ana,
                                             store, full, distinct, args.jobs,
                                             args.baseline_layout)
            for d in (ana, base / "out"):
                shutil.rmtree(d)
                (snap / d.name).rename(d)
        clone_before = timed("git", "clone", "-q", "--no-local", "--no-checkout", str(store),
                             str(base / "c1"))
        result.update(merge_twice(BIN / "fairbig", ana, store, full, distinct, args.jobs,
                                  args.layout))
        for case in ("full", "incremental"):
            if "baseline" in result:
                result[case]["ratio_to_baseline"] = round(
                    result[case]["s"] / result["baseline"][case]["s"], 3)
        result.update(distinct_key_check(ana, args.jobs))
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
    result["uptime_after"] = uptime()
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
