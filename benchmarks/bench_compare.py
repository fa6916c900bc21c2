#!/usr/bin/env python3
"""``fairbig compare`` at UK Biobank scale (targets: ≤ 10 s, ≤ 1 GiB peak memory).

Two computations of N subjects × F annexed files (symlinks into
``.git/annex/objects``), each a separate bare repository (as the git
repositories of two RIA output stores) written by ONE ``git fast-import``
stream; both are generated at once, one per core. The second differs from
the first in a few subjects: one file with another MD5E key, one re-keyed
as SHA256E with the same size, one subject missing, one extra subject and
one extra file. ``--noisy`` adds a ref to the second repository in which
every subject also has one differing file (say, a log with a time stamp),
so that no job folder can be skipped whole.

Each measurement runs in a fresh interpreter, so that its peak RSS is its
own; generation is not timed. ``compare`` is what ``fairbig compare A B``
runs (:func:`fairbig.commands.compare.compare_sides` and ``to_json``); ``--full-read``
also times reading every key of both sides and the pure ``compare`` (the
worst case, for reference only).

Usage: ``PYTHONPATH=. python benchmarks/bench_compare.py [--subjects N]
[--files F] [--noisy] [--full-read] [--json]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import resource
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

from fairbig.commands.compare import (
    DIFFERS,
    IDENTICAL,
    ONLY_A,
    ONLY_B,
    UNDECIDABLE,
    compare,
    compare_sides,
    read_results,
    resolve_side,
)

FIRST_ID = 1_000_000
BUCKETS = 100
COMMITTER = b"committer bench <bench@example.org> 1700000000 +0000\n"


def subject(i: int) -> str:
    return f"{FIRST_ID + 97 * i:07d}"


def name(f: int) -> str:
    return f"{'anat' if f % 2 else 'func'}/sub_feature-{f:02d}.nii.gz"


def key(seed: str, size: int, backend: str = "MD5E") -> bytes:
    if backend == "MD5E":
        return b"MD5E-s%d--%s.nii.gz" % (size, hashlib.md5(seed.encode()).hexdigest().encode())
    return b"SHA256E-s%d--%s.nii.gz" % (size, hashlib.sha256(seed.encode()).hexdigest().encode())


def link(k: bytes) -> bytes:
    """The symlink git-annex writes for a file two folders below ``results/<id>/``."""
    return b"../../../.git/annex/objects/%s/%s/%s/%s" % (k[-9:-7], k[-11:-9], k, k)


def _m(path: str, target: bytes) -> bytes:
    return b"M 120000 inline %s\ndata %d\n%s\n" % (path.encode(), len(target), target)


def stream(n: int, files: int, variant: bool, noisy: bool) -> bytes:
    """One fast-import stream: ``main`` (the computation) and, if ``noisy``, ``noisy``.

    Files go first into ``tmp/<bucket>/<id>/`` and each subject folder is then
    renamed into ``results/`` once: fast-import scans a folder linearly, so
    30 files straight into one folder of N subjects would take minutes.
    """
    ids = [subject(i) for i in range(n)]
    if variant:
        ids = [s for s in ids if s != subject(3)] + [subject(n)]   # one missing, one extra
    out = [b"commit refs/heads/main\n", COMMITTER, b"data 5\nbench\n"]
    for s in ids:
        bucket = f"tmp/{int(s) % BUCKETS:02d}/{s}"
        for f in range(files):
            k = key(f"{s}/{f}", 1000 + 37 * f)
            if variant and s == subject(1) and f == 0:
                k = key(f"{s}/{f}/other", 1000)                      # differs
            if variant and s == subject(2) and f == 0:
                k = key(f"{s}/{f}", 1000, "SHA256E")                 # undecidable
            out.append(_m(f"{bucket}/{name(f)}", link(k)))
        if variant and s == subject(4):
            out.append(_m(f"{bucket}/extra.nii.gz", link(key(f"{s}/extra", 5))))
    out += [b"R tmp/%02d/%s results/%s\n" % (int(s) % BUCKETS, s.encode(), s.encode())
            for s in ids]
    if noisy:
        out += [b"commit refs/heads/noisy\n", COMMITTER, b"data 5\nnoisy\nfrom refs/heads/main\n"]
        out += [_m(f"results/{s}/{name(0)}", link(key(f"{s}/noise", 1000))) for s in ids]
    return b"".join(out)


def generate(repo: Path, n: int, files: int, variant: bool, noisy: bool) -> None:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", f"--git-dir={repo}", "fast-import", "--quiet"],
                   input=stream(n, files, variant, noisy), check=True)


def _kib(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith(field))
    except (OSError, StopIteration):
        return 0   # the process has exited


class GitPeak:
    """The largest peak RSS of the git processes started while active.

    ``ru_maxrss`` cannot tell: Linux carries a peak over fork (vfork) and
    exec, so every git child would be charged its interpreter's peak. So
    Popen records each child and a thread samples their ``VmHWM``.
    """

    def __init__(self) -> None:
        self.kib = 0
        self._pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._popen = subprocess.Popen

    def __enter__(self) -> GitPeak:
        pids = self._pids

        class Tracked(self._popen):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, **kwargs)
                pids.add(self.pid)

        subprocess.Popen = Tracked
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        subprocess.Popen = self._popen

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.kib = max([self.kib, *(_kib(pid, "VmHWM:") for pid in list(self._pids))])


def measure(mode: str, a: str, b: str) -> dict:
    """One comparison in this (fresh) process: seconds and peak memory."""
    start = time.perf_counter()
    with GitPeak() as git_peak:
        if mode == "compare":
            comp = compare_sides(a, b)
            comp.to_json()
        else:
            comp = compare(read_results(resolve_side(a)), read_results(resolve_side(b)))
    seconds = time.perf_counter() - start
    own, kids = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                      resource.RUSAGE_CHILDREN))
    python_mib, git_mib = _kib("self", "VmHWM:") / 1024, git_peak.kib / 1024
    return {"seconds": round(seconds, 2),
            "cpu_seconds": round(own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime, 2),
            "peak_python_mib": round(python_mib), "peak_git_mib": round(git_mib),
            # an upper bound: the largest git process may not run at Python's peak
            "peak_total_mib": round(python_mib + git_mib), "summary": comp.summary}


def fresh(mode: str, a: str, b: str) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, mode, a, b).result()


def expected(n: int, files: int, noisy: bool) -> dict:
    """The summary the generated differences must give (subject 3 is only in A)."""
    if noisy:   # file 0 differs in every common subject, the SHA256E one included
        units, differs, undecidable = {IDENTICAL: 0, DIFFERS: n - 1, UNDECIDABLE: 0}, n - 1, 0
    else:       # subjects 1 and 4 differ, subject 2 is undecidable
        units, differs, undecidable = {IDENTICAL: n - 4, DIFFERS: 2, UNDECIDABLE: 1}, 1, 1
    return {"units": {**units, ONLY_A: 1, ONLY_B: 1},
            "files": {IDENTICAL: (n - 1) * files - differs - undecidable, DIFFERS: differs,
                      UNDECIDABLE: undecidable, ONLY_A: files, ONLY_B: files + 1}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--files", type=int, default=30)
    ap.add_argument("--noisy", action="store_true",
                    help="also compare against a ref where every subject differs")
    ap.add_argument("--full-read", action="store_true",
                    help="also time reading every key of both sides (worst case)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.subjects < 5:
        ap.error("--subjects must be at least 5 (the differences need five subjects)")
    n, files = args.subjects, args.files
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        a, b = Path(tmp) / "a.git", Path(tmp) / "b.git"
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda r: generate(*r), [(a, n, files, False, False),
                                                   (b, n, files, True, args.noisy)]))
        result = {"subjects": n, "files_per_subject": files, "files": n * files,
                  "generate_s": round(time.perf_counter() - start, 1)}
        runs = [("compare", f"{b}@main", expected(n, files, False))]
        if args.noisy:
            runs.append(("compare", f"{b}@noisy", expected(n, files, True)))
        if args.full_read:
            runs.append(("full-read", f"{b}@main", expected(n, files, False)))
        for mode, other, want in runs:
            label = mode if other.endswith("@main") else f"{mode} (noisy)"
            got = fresh(mode, str(a), other)
            if got["summary"] != want:
                raise SystemExit(f"{label}: wrong summary {got['summary']}, expected {want}")
            result[label] = got
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for label, value in result.items():
            if isinstance(value, dict):
                value = (f"{value['seconds']} s (cpu {value['cpu_seconds']} s), peak memory "
                         f"{value['peak_total_mib']} MiB (Python {value['peak_python_mib']},"
                         f" git {value['peak_git_mib']})")
            print(f"{label:>18}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
