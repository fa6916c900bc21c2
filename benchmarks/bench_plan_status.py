#!/usr/bin/env python3
"""Plan and status at UK Biobank scale (issue targets: each ≤ 5 s, ≤ 1 GiB).

Builds, with one ``git fast-import`` stream each: an input superdataset of
N subject gitlinks, an analysis repository recording it as ``inputs/data``,
and an output store with a job branch per subject; writes N state records
and a submission log; then times planning and status through fairbig's own
functions. Usage: ``python benchmarks/bench_plan_status.py [--subjects N] [--json]``

``--slurm`` (root, the real cluster of scripts/slurm-up; run it under
``flock -o /tmp/fairbig-cluster.lock``) adds status against the scheduler: the
jobs' current attempts in arrays of MaxArraySize tasks (43 at 42,715 jobs), as
many of them held on the cluster as its MaxJobCount takes (the rest ended, their
records final, SLURM no longer knowing them), 10 earlier full resubmissions
behind them in the log, each with its old record; timed while the held arrays
are queued (first status: every array asked; second: only the held ones), then
once they ended (cancelled, records final): first status asks, the next asks
nothing.
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

from fairbig.backends.slurm import SlurmBackend, parse_max_array
from fairbig.commands.status import scheduler_views
from fairbig.config import Config
from fairbig.jobstate import (
    Submission,
    append_submissions,
    current_records,
    read_records,
    read_submissions,
)
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


RESUBMISSIONS = 10


def record(jid: str, status: str, backend_id: str, token: str) -> str:
    return json.dumps({"job_id": jid, "status": status, "step": "run", "exit_code": 0,
                       "host": "h", "pid": 1, "backend_id": backend_id, "started": 0,
                       "updated": 1, "workdir": "", "attempt": token})


def held_arrays(n: int) -> list[tuple[str, int, bool]]:
    """Arrays of MaxArraySize trivial tasks, held on the real cluster while it takes
    them (MaxJobCount), the rest with IDs SLURM does not know: (ID, tasks, held)."""
    most = parse_max_array(subprocess.run(["scontrol", "show", "config"], check=True,
                                          capture_output=True, text=True).stdout)
    out: list[tuple[str, int, bool]] = []
    full = False
    for off in range(0, n, most):
        count = min(most, n - off)
        res = None if full else subprocess.run(
            ["sbatch", "--parsable", "--hold", f"--array=0-{count - 1}", "--mem=10M",
             "--output=/dev/null", "--wrap=true"], capture_output=True, text=True)
        full = res is None or res.returncode != 0
        out.append((res.stdout.strip().split(";")[0], count, True) if not full
                   else (str(90_000 + off // most), count, False))
    return out


def slurm_status(base: Path, jobs, store: Path, ids: list[str]) -> dict:
    """Status at ``len(ids)`` jobs on the real cluster (see the module's docstring)."""
    state_dir, log, said = base / "slurm-state", base / "slurm-subs.jsonl", base / "said.json"
    state_dir.mkdir()
    for r in range(RESUBMISSIONS):
        append_submissions(log, [Submission(s, "slurm", f"{80_000 + r}_{i % 1001}", "t",
                                            token=f"old{r}") for i, s in enumerate(ids)])
    t0 = time.perf_counter()
    arrays = held_arrays(len(ids))
    submit_s = time.perf_counter() - t0
    subs: list[Submission] = []
    for array_id, count, held in arrays:
        for i in range(count):
            s = ids[len(subs)]
            subs.append(Submission(s, "slurm", f"{array_id}_{i}", "t", token="now"))
            (state_dir / f"{s}.json").write_text(
                record(s, "failed", "1_0", f"old{RESUBMISSIONS - 1}") if held
                else record(s, "done", f"{array_id}_{i}", "now"))
    append_submissions(log, subs)
    backend = SlurmBackend(Config())

    def timed() -> tuple[float, dict[str, int]]:
        t0 = time.perf_counter()
        latest = read_submissions(log)
        tokens = {jid: x.token for jid, x in latest.items()}
        records = current_records(read_records(state_dir), tokens)
        views = scheduler_views(said, latest, records, lambda name: backend)
        rep = report(jobs, read_finished(store, "master"), records, latest, views)
        return round(time.perf_counter() - t0, 2), rep.counts

    live = [a for a, _, held in arrays if held]
    try:
        queued_first_s, queued = timed()
        queued_next_s, _ = timed()
    finally:
        if live:
            subprocess.run(["scancel", *live], check=True)
    for x in subs:
        (state_dir / f"{x.job_id}.json").write_text(record(x.job_id, "done", x.backend_id,
                                                           "now"))
    ended_s, ended = timed()
    remembered_s, remembered = timed()
    assert remembered == ended
    return {"arrays": len(arrays), "arrays_held_on_slurm": len(live),
            "tasks_held": sum(c for _, c, h in arrays if h),
            "resubmissions_behind": RESUBMISSIONS,
            "log_lines": (RESUBMISSIONS + 1) * len(ids), "sbatch_s": round(submit_s, 2),
            "status_queued_first_s": queued_first_s, "status_queued_next_s": queued_next_s,
            "queued_counts": queued, "status_ended_first_s": ended_s,
            "status_ended_remembered_s": remembered_s, "ended_counts": ended}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--slurm", action="store_true",
                    help="also status against held arrays on the real SLURM cluster")
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
        on_slurm = slurm_status(base, jobs, store, ids) if args.slurm else {}
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"subjects": args.subjects, "setup_s": round(setup, 2), "plan_s": round(plan_s, 2),
              "plan_bytes": len(text), "done_in_store": len(finished.branches),
              "status_s": round(status_s, 2), "status_counts": rep.counts,
              "peak_rss_mib": round(rss_mib)} | on_slurm
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
