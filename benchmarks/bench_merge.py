#!/usr/bin/env python3
"""The plumbing tree merge against ``git merge`` octopus, and at UK Biobank scale.

Part 1, N = 1,000 job branches of a synthetic store (``--full``: also
5,000): list refs + compute + write with :mod:`fairbig.treemerge` against
``git merge --no-edit -q`` octopus in batches of 5,000 on a work clone (the
FAIRly big reference recipe); the two trees must be identical.
Part 2, 42,767 branches (the UK Biobank merge took 4.7 h as octopus): tree
merge time and peak memory (merge process + its git children), ``git log``
on the result, clone time before and after deleting the merged job refs,
``pack-refs`` and ``repack`` (what ``fairbig merge`` does after merging).

Usage: ``PYTHONPATH=. python benchmarks/bench_merge.py [--full] [--scale N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

from synthstore import make_store

from fairbig import treemerge as tm

PREFIX = "refs/heads/job-"
OCTOPUS_BATCH = 5000
UKB_BRANCHES = 42_767
IDENT = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_AUTHOR_DATE": "@1700000000 +0000",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.org",
    "GIT_COMMITTER_DATE": "@1700000000 +0000",
}
T = TypeVar("T")


def git(*args: str | os.PathLike[str], input: str | None = None) -> str:
    return subprocess.run(["git", *map(os.fspath, args)], input=input, check=True, text=True,
                          capture_output=True, env={**os.environ, **IDENT}).stdout.strip()


def clocked(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    result = fn()
    return result, round(time.monotonic() - start, 3)


def tree_merge(git_dir: Path) -> str:
    """What ``fairbig merge`` runs on the store: every job ref, computed, written."""
    branches = [tm.JobBranch(ref.removeprefix(PREFIX), ref, sha,
                             (f"results/{ref.removeprefix(PREFIX)}/",))
                for ref, sha in tm.list_refs(git_dir, PREFIX).items()]
    comp = tm.compute_merge(git_dir, "main", branches)
    if comp.conflicts:
        raise SystemExit(f"unexpected conflicts: {comp.conflicts[:3]}")
    return tm.write_merge(git_dir, "main", comp, ident=IDENT,
                          message=lambda bs: f"merge {len(bs)} job(s)\n")


def measured_merge(git_dir: Path) -> tuple[str, float, int]:
    """:func:`tree_merge` in a fresh process, so that peak RSS is the merge's own.

    Returns the commit, seconds, and the process's peak RSS plus the largest
    peak of its git children (KiB): an upper bound, since they run one at a time.
    """
    new, seconds = clocked(lambda: tree_merge(git_dir))
    rss = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
           + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return new, seconds, rss


def octopus(store: Path, work: Path) -> tuple[str, float]:
    """``git merge`` octopus in batches; branch names fed through xargs (argument limits)."""
    git("clone", "-q", "--no-local", store, work)
    names = work.with_suffix(".branches")
    names.write_text("".join(f"origin/{ref.removeprefix('refs/heads/')}\n"
                             for ref in sorted(tm.list_refs(store, PREFIX))))
    _, seconds = clocked(lambda: subprocess.run(
        ["xargs", "-a", str(names), "-x", "-s", "1000000", "-n", str(OCTOPUS_BATCH),
         "git", "-C", str(work), "merge", "--no-edit", "-q"],
        check=True, stdout=subprocess.DEVNULL, env={**os.environ, **IDENT}))
    return git("-C", work, "rev-parse", "HEAD^{tree}"), seconds


def compare(n: int, tmp: Path) -> dict:
    store = make_store(tmp / f"compare-{n}.git", n)
    new, ours = clocked(lambda: tree_merge(store.git_dir))
    tree, theirs = octopus(store.git_dir, tmp / f"compare-{n}-work")
    same = tree == git("--git-dir", store.git_dir, "rev-parse", f"{new}^{{tree}}")
    if not same:
        raise SystemExit(f"N={n}: trees differ")
    return {"n": n, "treemerge_s": ours, "octopus_s": theirs,
            "ratio": round(theirs / ours), "same_tree": same}


def at_scale(n: int, tmp: Path, loose: bool) -> dict:
    store, synth = clocked(lambda: make_store(tmp / "scale.git", n, loose=loose))
    g = store.git_dir
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        new, seconds, rss = pool.submit(measured_merge, g).result()
    tm.update_ref(g, "refs/heads/main", new, store.base)
    one = store.job_ids[len(store.job_ids) // 2]
    _, log1 = clocked(lambda: git("--git-dir", g, "log", "-1", "main"))
    hits, log_path = clocked(lambda: git("--git-dir", g, "log", "--oneline", "main", "--",
                                         f"results/{one}"))
    loose = int(dict(line.split(": ") for line in
                     git("--git-dir", g, "count-objects", "-v").splitlines())["count"])
    _, clone_before = clocked(lambda: git("clone", "-q", "--no-local", "--no-checkout", g,
                                          tmp / "clone-before"))
    refs = tm.list_refs(g, PREFIX)
    _, delete_refs = clocked(lambda: git("--git-dir", g, "update-ref", "--stdin", input="".join(
        f"delete {ref} {sha}\n" for ref, sha in refs.items())))
    _, pack_refs = clocked(lambda: git("--git-dir", g, "pack-refs", "--all"))
    _, repack = clocked(lambda: git("--git-dir", g, "repack", "-adq", "--write-bitmap-index"))
    _, clone_after = clocked(lambda: git("clone", "-q", "--no-local", "--no-checkout", g,
                                         tmp / "clone-after"))
    return {"n": n, "synthstore_s": synth, "treemerge_s": seconds,
            "peak_rss_mib": round(rss / 1024), "log_1_s": log1,
            "log_path_s": log_path, "log_path_commits": len(hits.splitlines()),
            "loose_objects": loose, "clone_before_s": clone_before,
            "delete_refs_s": delete_refs, "pack_refs_s": pack_refs, "repack_s": repack,
            "clone_after_s": clone_after}


def table(rows: list[dict], scale: dict | None) -> str:
    out = ["tree merge vs git merge octopus (batches of 5,000)",
           f"{'N':>8} {'treemerge':>10} {'octopus':>9} {'ratio':>7}  same tree"]
    out += [f"{r['n']:>8,} {r['treemerge_s']:>9.2f}s {r['octopus_s']:>8.1f}s "
            f"{r['ratio']:>6}x  {'yes' if r['same_tree'] else 'NO'}" for r in rows]
    if scale:
        s = scale
        steps = [
            ("synthetic store (fast-import)", f"{s['synthstore_s']:.2f} s", ""),
            ("tree merge (refs+compute+write)", f"{s['treemerge_s']:.2f} s",
             f"peak RSS {s['peak_rss_mib']} MiB"),
            ("git log -1", f"{s['log_1_s']:.2f} s", ""),
            ("git log --oneline -- results/<id>", f"{s['log_path_s']:.2f} s",
             f"{s['log_path_commits']} commit(s)"),
            ("clone --no-checkout, before", f"{s['clone_before_s']:.2f} s",
             f"{s['loose_objects']:,} loose objects"),
            ("delete refs, pack-refs, repack", f"{s['delete_refs_s']:.2f} s",
             f"+ {s['pack_refs_s']:.2f} s + {s['repack_s']:.2f} s"),
            ("clone --no-checkout, after", f"{s['clone_after_s']:.2f} s", ""),
        ]
        out.append(f"{s['n']:,} job branches")
        out += [f"  {what:<34} {value:>8}  {note}".rstrip() for what, value, note in steps]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also compare at N=5,000 (~8 min)")
    parser.add_argument("--scale", type=int, default=UKB_BRANCHES,
                        help="branches for part 2 (0: skip it)")
    parser.add_argument("--loose", action="store_true",
                        help="part 2 on loose objects, as real job pushes leave them (+30 s)")
    parser.add_argument("--workdir", type=Path, help="keep the stores here (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmpdir:
        tmp = args.workdir or Path(tmpdir)
        tmp.mkdir(parents=True, exist_ok=True)
        rows = [compare(n, tmp) for n in ([1000, 5000] if args.full else [1000])]
        scale = at_scale(args.scale, tmp, args.loose) if args.scale else None
    if args.json:
        print(json.dumps({"compare": rows, "scale": scale}, indent=2))
    else:
        print(table(rows, scale))


if __name__ == "__main__":
    main()
