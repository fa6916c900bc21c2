#!/usr/bin/env python3
"""Reading the plan (issue 20 §5): every command (merge, status, submit, ...) parses
``.fairbig/plan.tsv`` with ``jobtable.parse_tsv``, which checks every job ID and every
path before a job script may see them.

Measured in the same run, interleaved, for two plan shapes of N rows (default 43,767):

- ``merge``: bench_merge_full.py's plan, two distinct paths per row
  (``inputs/data/<id>``, ``results/<id>``);
- ``bids``: a BIDS plan by session, eleven paths per row of which nine are the
  dataset's top-level files that every row inherits;

``parse_tsv`` as it is (all IDs and paths checked at once, row by row only to name
a bad row) against ``parse_tsv`` with that check forced row by row (the code before),
and the two checks alone. Wall and CPU (process time) are medians of ``--repeats``
runs; the load average says how busy the machine was. Target: parse_tsv of the merge
plan ≤ 0.1 s. Usage: ``python benchmarks/bench_plan_parse.py [--rows N] [--repeats R]
[--json]``
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from unittest import mock

from fairbig import jobtable
from fairbig.jobtable import Job, parse_tsv, render_tsv

INHERITED = ("CHANGES", "README", "dataset_description.json", "participants.json",
             "participants.tsv", "task-rest_bold.json", "T1w.json", "dwi.json", "T2w.json")


def plan(shape: str, n: int) -> str:
    """The plan text of ``n`` rows of ``shape``."""
    jobs = []
    for i in range(n):
        j = str(1_000_000 + i)
        state = hashlib.sha1(j.encode()).hexdigest()
        if shape == "merge":
            jobs.append(Job(j, j, "", state, (f"inputs/data/{j}",), (f"results/{j}",),
                            f"sh code/process_subject.sh inputs/data/{j} results/{j}"))
        else:
            sub, ses = f"sub-{j}", f"ses-{i % 2 + 1}"
            jobs.append(Job(f"{sub}_{ses}", sub, ses, state,
                            (f"inputs/data/{sub}/{ses}", f"inputs/data/{sub}/{sub}_scans.tsv",
                             *(f"inputs/data/{f}" for f in INHERITED)),
                            (f"results/{sub}/{ses}",), "bids-app {input_dir} {output_dir}"))
    return render_tsv(jobs)


@contextmanager
def row_by_row() -> Iterator[None]:
    """parse_tsv as before: the all-at-once check never passes, so every row is checked
    by the row loop (which finds nothing) and the jobs are built as usual."""
    with mock.patch.object(jobtable, "_rows_valid", lambda rows: False):
        yield


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of one call; what it built is freed outside the timing."""
    gc.collect()
    w, c = time.perf_counter(), time.process_time()
    result = fn()
    w, c = time.perf_counter() - w, time.process_time() - c
    del result
    return w, c


def measure(text: str, repeats: int) -> dict[str, dict[str, float]]:
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    cases: dict[str, Callable[[], object]] = {
        "parse_tsv": lambda: parse_tsv(text),
        "check_all_at_once": lambda: jobtable._rows_valid(rows),
        "check_row_by_row": lambda: jobtable._refuse_first_bad_row(rows),
    }

    def before() -> object:
        with row_by_row():
            return parse_tsv(text)
    cases["parse_tsv_row_by_row"] = before
    assert before() == parse_tsv(text) and jobtable._rows_valid(rows)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(repeats):        # interleaved: a change of load hits every case alike
        for name, fn in cases.items():
            runs[name].append(timed(fn))
    out = {name: {"wall_s": round(statistics.median(w for w, _ in r), 4),
                  "cpu_s": round(statistics.median(c for _, c in r), 4)}
           for name, r in runs.items()}
    out["ratio"] = {
        "parse_tsv": round(out["parse_tsv"]["cpu_s"] / out["parse_tsv_row_by_row"]["cpu_s"], 2),
        "check": round(out["check_all_at_once"]["cpu_s"] / out["check_row_by_row"]["cpu_s"], 2)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=43_767)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    result = {shape: measure(plan(shape, args.rows), args.repeats) for shape in ("merge", "bids")}
    report = {"rows": args.rows, "repeats": args.repeats,
              "load": [round(load_before, 2), round(os.getloadavg()[0], 2)], **result}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"plan of {args.rows} rows, medians of {args.repeats}, load {report['load']}")
    for shape in ("merge", "bids"):
        print(f"  {shape}:")
        for name, fig in result[shape].items():
            if name != "ratio":
                print(f"    {name:22s} wall {fig['wall_s']:.4f} s  cpu {fig['cpu_s']:.4f} s")
        ratio = result[shape]["ratio"]
        print(f"    CPU ratio, all at once / row by row: parse_tsv {ratio['parse_tsv']}"
              f", check alone {ratio['check']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
