#!/usr/bin/env python3
"""``fairbig compare`` at UK Biobank scale (target: ≤ 10 s, ≤ 1 GiB).

Two synthetic computations of N subjects × F annexed files, each written
with one ``git fast-import`` stream; the second differs in a few subjects.
Usage: ``python benchmarks/bench_compare.py [--subjects N] [--files F] [--json]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from fairbig.compare import compare_sides


def make(repo: Path, n: int, files: int, differ: set[int]) -> None:
    """Ref ``a``: the computation; ref ``b``: the same with ``differ`` subjects changed."""
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    head = b"committer b <b@b> 0 +0000\ndata 1\nx\n"
    out = [b"commit refs/heads/a\n", head]
    changed = [b"commit refs/heads/b\n", head, b"from refs/heads/a\n"]
    for s in range(n):
        for f in range(files):
            target = _link(b"MD5E-s%d--%032x.txt" % (f + 10, s * 100 + f))
            out.append(b"M 120000 inline results/%d/f%02d.txt\ndata %d\n%s\n"
                       % (1_000_000 + s, f, len(target), target))
        if s in differ:
            target = _link(b"MD5E-s10--%032x.txt" % (s * 100 + 99))
            changed.append(b"M 120000 inline results/%d/f00.txt\ndata %d\n%s\n"
                           % (1_000_000 + s, len(target), target))
    subprocess.run(["git", f"--git-dir={repo}", "fast-import", "--quiet"],
                   input=b"".join(out + changed), check=True)


def _link(key: bytes) -> bytes:
    return b"../../.git/annex/objects/Xx/Yy/%s/%s" % (key, key)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    differ = {7, args.subjects // 2, args.subjects - 1}
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "store.git"
        t0 = time.perf_counter()
        make(repo, args.subjects, args.files, differ)
        gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        comp = compare_sides(f"{repo}@a", f"{repo}@b")
        secs = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = {"subjects": args.subjects, "files": args.subjects * args.files,
              "generate_s": round(gen, 1), "compare_s": round(secs, 2),
              "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "peak_child_rss_mib": round(children / 1024), "summary": comp.summary}
    assert comp.summary["units"]["differs"] == len(differ)
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
