#!/usr/bin/env python3
"""Plan and status at UK Biobank scale (issue targets: each ≤ 5 s, ≤ 1 GiB).

Builds, with one ``git fast-import`` stream each: an input superdataset of
N subject gitlinks, an analysis repository recording it as ``inputs/data``,
and an output store with a job branch per subject; writes N state records
and a submission log; then times planning and status through fairbig's own
functions. Usage: ``python benchmarks/bench_plan_status.py [--subjects N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from fairbig.jobstate import Submission, append_submissions, read_records, read_submissions
from fairbig.jobtable import make_jobs, read_layout, render_tsv
from fairbig.states import report
from fairbig.storeview import read_finished

CMD = "sh code/process_subject.sh {input_dir} {output_dir}"


def fast_import(repo: Path, stream: bytes) -> None:
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=stream, check=True)


def build(base: Path, n: int) -> tuple[Path, Path, list[str]]:
    rng = random.Random(1)
    ids = sorted(str(i) for i in rng.sample(range(1_000_000, 6_000_000), n))
    ana, inp, store = base / "ana", base / "ana" / "inputs" / "data", base / "store.git"
    for repo in (ana, inp):
        repo.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(store)], check=True)
    who = b"committer b <b@b> 0 +0000\n"
    lines = [b"commit refs/heads/master\n", who, b"data 6\ninputs\n"]
    lines += [f"M 160000 {rng.getrandbits(160):040x} {s}\n".encode() for s in ids]
    fast_import(inp, b"".join(lines))
    inp_head = subprocess.run(["git", "-C", str(inp), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    fast_import(ana, b"".join([b"commit refs/heads/master\n", who, b"data 4\nana\n",
                               f"M 160000 {inp_head} inputs/data\n".encode()]))
    # output store: one branch per job with the commit subject fairbig reads
    layout = read_layout(ana, "inputs/data", "ukb", "subject")
    states = {u.subject: u.state for u in layout.units}
    stream = [b"blob\nmark :1\ndata 2\nx\n"]
    for s in ids:
        msg = f"[DATALAD RUNCMD] fairbig job {s} (input {states[s]})".encode()
        stream += [f"commit refs/heads/job-{s}\n".encode(), who,
                   f"data {len(msg)}\n".encode(), msg, b"\n",
                   f"M 100644 :1 results/{s}/out.txt\n".encode()]
    fast_import(store, b"".join(stream))
    return ana, store, ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        ana, store, ids = build(base, args.subjects)
        setup = time.perf_counter() - t0

        t0 = time.perf_counter()
        layout = read_layout(ana, "inputs/data", "auto", "subject")
        jobs = make_jobs(layout.units, "inputs/data", "results", CMD)
        text = render_tsv(jobs)
        finished = read_finished(store, "master")
        plan_s = time.perf_counter() - t0

        state_dir = base / "state"
        state_dir.mkdir()
        for i, s in enumerate(ids):
            status = "failed" if i % 100 == 0 else "done"
            (state_dir / f"{s}.json").write_text(json.dumps({
                "job_id": s, "status": status, "step": "run", "exit_code": 0, "host": "h",
                "pid": 1, "backend_id": "1", "started": 0, "updated": 9e9, "workdir": ""}))
        append_submissions(base / "subs.jsonl", [Submission(s, "local", "h:1", 0) for s in ids])

        t0 = time.perf_counter()
        rep = report(jobs, read_finished(store, "master"), read_records(state_dir),
                     read_submissions(base / "subs.jsonl"), {})
        status_s = time.perf_counter() - t0
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"subjects": args.subjects, "setup_s": round(setup, 2), "plan_s": round(plan_s, 2),
              "plan_bytes": len(text), "done_in_store": len(finished.branches),
              "status_s": round(status_s, 2), "status_counts": rep.counts,
              "peak_rss_mib": round(rss_mib)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
