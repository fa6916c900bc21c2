#!/usr/bin/env python3
"""ukb-mini at N subjects through the real SLURM cluster: throughput, exact status, merge.

The figure that says fairbig holds a real cluster's load (issue 20 §4). The ukb-mini
example's input (``examples/ukb-mini/generate_input.py``, N subjects) and analysis go
through the single-node cluster of ``scripts/slurm-up``, restarted with a MaxArraySize
smaller than N (restored as found at the end) and a throttle. With a throttle the
backend puts the whole submission into ONE array ``%throttle`` whose tasks each run
``ceil(N / MaxArraySize)`` jobs one after another (``--throttle 0``: no throttle,
arrays of MaxArraySize one-job tasks, ``ceil(N / MaxArraySize)`` sbatch calls).

Checked, each a one-line failure and exit 1: every ``fairbig status --json`` poll
during the run (every ``--poll`` s) accounts for exactly N jobs and never shows more
running than the throttle, nor does ``squeue`` (sampled every second), nor do the jobs'
own records (started..updated overlaps); every job ends done; ``fairbig merge`` merges
all N; a fresh clone of the output store, with the lab's key, gets every result file
(``git annex get``, checksums verified) and holds one result folder per subject.

Printed: sbatch calls (counted by a pass-through ``sbatch`` first on PATH), wall time
from submit to the last job's end, jobs per minute, CPU and wall per job (medians of
the jobs' own usage records in ``fairbig status --json``), merge time, the time of
``fairbig status`` at the end, the most running seen, and the load average.

Not part of ``make test``. A job costs about 6.6 CPU-s here, so 1,000 subjects take
about an hour of both cores of a 2-core machine (and generating the input takes a
while too). Run it by hand; ``--lock`` holds the lock the cluster tests share while
the cluster is in use (not while the input is generated), progress goes to stderr:
``.venv/bin/python benchmarks/bench_slurm_1000.py --lock /tmp/fairbig-cluster.lock
[--subjects 1000] [--throttle 4] [--max-array-size M] [--json]``
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DATALAD_LOG_LEVEL", "warning")

from benchmarks.measure import load_average, measured  # noqa: E402
from fairbig import config as cfgmod  # noqa: E402
from fairbig import contract  # noqa: E402
from fairbig.backends.slurm import DEFAULT_MAX_ARRAY, parse_max_array  # noqa: E402
from tests.conftest import (  # noqa: E402
    BIN,
    fairbig,
    init_analysis,
    make_key,
    max_overlap,
)
from tests.slurm_cluster import SlurmClusterError, ensure_slurm  # noqa: E402
from tests.test_slurm_backend import RunningSampler  # noqa: E402

EXAMPLE = REPO / "examples" / "ukb-mini"
SEED = 20
PREPARED = "prepared.json"  # in --workdir: the analysis is made and has not run yet


class Failed(Exception):
    """A check of the benchmark failed: its message is the one line printed."""


def say(what: str) -> None:
    """Progress, on stderr (the table or JSON goes to stdout)."""
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def require(ok: bool, what: str) -> None:
    if not ok:
        raise Failed(what)


def sh(*cmd: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run a command that must succeed; its stdout (a failure is one line with its stderr)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise Failed(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {last}")
    return proc.stdout


def status_json(ana: Path) -> tuple[dict, float]:
    """``fairbig status --json`` and its wall time (it exits 3 while a job failed: read
    the JSON regardless)."""
    t0 = time.perf_counter()
    proc = fairbig("status", "--json", cwd=ana, check=False)
    wall = time.perf_counter() - t0
    try:
        return json.loads(proc.stdout), wall
    except json.JSONDecodeError:
        raise Failed(f"fairbig status --json printed no JSON: {proc.stderr.strip()}") from None


@contextlib.contextmanager
def cluster_lock(path: Path | None) -> Iterator[None]:
    """Hold ``path`` with flock(2), as ``flock -o PATH CMD`` would, while the cluster is
    used (the fd is not inherited: slurm-up's daemons must not keep the lock)."""
    if path is None:
        yield
        return
    with path.open("a") as fd:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield


def max_array_found() -> int | None:
    """The cluster's MaxArraySize now (None: SLURM's default, or the cluster is down and
    scripts/slurm-up would start it with the default), to put back at the end."""
    try:
        proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    most = parse_max_array(proc.stdout) if proc.returncode == 0 else DEFAULT_MAX_ARRAY
    return None if most == DEFAULT_MAX_ARRAY else most


def counting_sbatch(bin_dir: Path, calls: Path) -> None:
    """An ``sbatch`` that notes each call in ``calls`` and runs the real one."""
    real = shutil.which("sbatch")
    require(real is not None, "sbatch not found: is SLURM installed (scripts/slurm-up)?")
    bin_dir.mkdir()
    script = bin_dir / "sbatch"
    script.write_text(f'#!/bin/sh\necho "$*" >>"{calls}"\nexec "{real}" "$@"\n')
    script.chmod(0o755)


@dataclass
class Polls:
    """What every status poll during the run said, and which of them broke a rule."""

    n: int
    throttle: int
    walls: list[float] = field(default_factory=list)
    most_running: int = 0
    bad: list[str] = field(default_factory=list)

    def add(self, counts: dict[str, int], wall: float) -> None:
        self.walls.append(wall)
        self.most_running = max(self.most_running, counts["running"])
        if sum(counts.values()) != self.n:
            self.bad.append(f"poll {len(self.walls)} counts {sum(counts.values())} jobs, "
                            f"not {self.n}: {counts}")
        if self.throttle and counts["running"] > self.throttle:
            self.bad.append(f"poll {len(self.walls)} shows {counts['running']} running "
                            f"(throttle {self.throttle})")


def prepare(base: Path, n: int, key: str) -> Path:
    """The ukb-mini input of ``n`` subjects in an input store (made by the example's own
    generator, whose progress stays off stdout), the analysis dataset."""
    image = base / "ukb-mini.tar"
    sh(str(REPO / "containers" / "build-image"), str(image))
    store = f"ria+file://{base}/input-store"
    sh(str(BIN / "python"), str(EXAMPLE / "generate_input.py"), str(base / "ukb"),
       "--subjects", str(n), "--seed", str(SEED), "--store", store)
    return init_analysis(base, {"url": f"{store}#~ukb"}, image, key)


def prepared(base: Path, n: int) -> tuple[Path, float]:
    """The analysis of ``n`` subjects in ``base`` and the seconds it took to make: made
    now, or earlier by ``--prepare-only`` (its marker says how many subjects)."""
    marker = base / PREPARED
    if marker.exists():
        made = json.loads(marker.read_text())
        require(made["subjects"] == n, f"{base} was prepared for {made['subjects']} "
                f"subjects, not {n} (give --subjects {made['subjects']} or another --workdir)")
        return base / "analysis", made["setup_s"]
    require(not base.exists() or not any(base.iterdir()),
            f"{base} holds something else (an analysis that ran already?): remove it or "
            "give another --workdir")
    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    say(f"generating {n} subjects and the analysis in {base}")
    ana = prepare(base, n, make_key(base / "gnupg"))
    setup_s = round(time.perf_counter() - t0, 1)
    marker.write_text(json.dumps({"subjects": n, "setup_s": setup_s}) + "\n")
    return ana, setup_s


def configure(ana: Path, throttle: int) -> None:
    cfgmod.update_file(ana / "fairbig.yaml", {"backend.name": "slurm",
                                               "backend.slurm.mem": "300M",
                                               "backend.slurm.throttle": throttle})
    sh(str(BIN / "datalad"), "save", "-m", "slurm settings", cwd=ana)
    fairbig("plan", cwd=ana)


def run_jobs(ana: Path, base: Path, n: int, throttle: int, poll_s: float,
             timeout_s: float) -> dict:
    """Submit, poll status until nothing is queued or running, check every poll."""
    calls = base / "sbatch-calls"
    counting_sbatch(base / "bin", calls)
    env = {"PATH": f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    t0 = time.time()
    out = json.loads(fairbig("submit", "--json", cwd=ana, env=env).stdout)
    submit_s = time.time() - t0
    require(len(out["submitted"]) == n, f"submit sent {len(out['submitted'])} jobs, not {n}")
    arrays = json.loads((Path(out["run_dir"]) / "arrays.json").read_text())
    sampler = RunningSampler([a["array_id"] for a in arrays])
    sampler.start()
    say(f"submitted {n} jobs in {len(arrays)} array(s), polling status every {poll_s:g} s")
    polls = Polls(n, throttle)
    finished = False
    try:
        while time.time() - t0 < timeout_s:
            rep, wall = status_json(ana)
            c = rep["counts"]
            polls.add(c, wall)
            if c["queued"] + c["running"] == 0:
                finished = True
                break
            time.sleep(poll_s)
    finally:
        sampler.done.set()
        sampler.join()
        if not finished:
            subprocess.run(["scancel", *(a["array_id"] for a in arrays)], check=False)
    require(finished, f"jobs still queued or running after {timeout_s:.0f} s: {c}")
    failed = {k: v for k, v in c.items() if k != "done" and v}
    require(not failed, f"not every job is done: {c} (fairbig status -C {ana})")
    if polls.bad:
        raise Failed(f"{len(polls.bad)} status poll(s) broke a rule, first: {polls.bad[0]}")
    most_squeue = max(sampler.samples, default=0)
    require(not throttle or most_squeue <= throttle,
            f"squeue showed {most_squeue} tasks running (throttle {throttle})")
    state_dir = ana / contract.WORK_DIR / contract.STATE
    records = [json.loads(p.read_text()) for p in state_dir.glob("*.json")]
    require(len(records) == n, f"{len(records)} job records in {state_dir}, not {n}")
    overlap = max_overlap(records)
    require(not throttle or overlap <= throttle,
            f"the jobs' own records show {overlap} running at once (throttle {throttle})")
    wall_s = max(r["updated"] for r in records) - t0
    usage = rep["usage"]
    require(len(usage) == n, f"status has usage of {len(usage)} jobs, not {n}")
    return {"sbatch_calls": len(calls.read_text().splitlines()), "arrays": len(arrays),
            "tasks_x_jobs": [[math.ceil(a["count"] / a["per_task"]), a["per_task"]]
                             for a in arrays],
            "submit_s": round(submit_s, 2), "wall_s": round(wall_s, 1),
            "jobs_per_min": round(n / wall_s * 60, 2),
            "cpu_per_job_s": round(statistics.median(u["job"]["cpu_s"]
                                                     for u in usage.values()), 2),
            "cpu_per_job_mean_s": round(statistics.mean(u["job"]["cpu_s"]
                                                        for u in usage.values()), 2),
            "wall_per_job_s": round(statistics.median(u["job"]["wall_s"]
                                                      for u in usage.values()), 2),
            "status_polls": len(polls.walls),
            "status_poll_max_s": round(max(polls.walls), 2),
            "max_running_status": polls.most_running, "max_running_squeue": most_squeue,
            "squeue_samples": len(sampler.samples), "max_running_records": overlap}


def merge_and_clone(ana: Path, base: Path, n: int) -> dict:
    """Merge all N, then a fresh clone of the output store gets every result file."""
    say("all done: merging, then a fresh clone of the output store")
    merge = measured(str(BIN / "fairbig"), "merge", "--json", cwd=ana, check=False)
    require(merge.returncode == 0, f"fairbig merge failed: {merge.stderr.strip()}")
    merged = json.loads(merge.stdout)["merged"]
    require(len(merged) == n, f"fairbig merge merged {len(merged)} jobs, not {n}")
    end = measured(str(BIN / "fairbig"), "status", "--json", cwd=ana, check=False)
    counts = json.loads(end.stdout)["counts"]
    require(counts.get("merged") == n, f"status after the merge: {counts}")
    dsid = sh("git", "config", "-f", str(ana / ".datalad" / "config"),
              "datalad.dataset.id").strip()
    cfg = cfgmod.load(ana / "fairbig.yaml")
    clone = base / "fresh"
    sh(str(BIN / "datalad"), "clone", f"{cfg.stores.output}#{dsid}", str(clone))
    t0 = time.perf_counter()
    sh("git", "annex", "get", "--quiet", cfg.results, cwd=clone)
    get_s = time.perf_counter() - t0
    tree = sh("git", "ls-files", "-z", cfg.results, cwd=clone).split("\0")[:-1]
    here = sh("git", "annex", "find", "--in", "here", cfg.results,
              cwd=clone).splitlines()
    missing = sh("git", "annex", "find", "--not", "--in", "here", cfg.results,
                 cwd=clone).splitlines()
    require(not missing and len(here) == len(tree),
            f"the fresh clone got {len(here)} of {len(tree)} result files "
            f"(first missing: {missing[:1]})")
    folders = {Path(p).parts[1] for p in tree}
    require(len(folders) == n, f"the fresh clone holds {len(folders)} result folders, not {n}")
    return {"merge": merge.figures(), "status_end": end.figures(),
            "clone_files": len(here), "clone_get_s": round(get_s, 1)}


def table(r: dict) -> str:
    rows = [
        ("subjects", r["subjects"]),
        ("throttle / node CPUs", f"{r['throttle'] or 'none'} / {r['node_cpus']}"),
        ("MaxArraySize (set; restored to)", f"{r['max_array_size']}; "
                                            f"{r['restored_max_array'] or 'default'}"),
        ("sbatch calls / arrays", f"{r['sbatch_calls']} / {r['arrays']}"),
        ("tasks x jobs per task", ", ".join(f"{t}x{j}" for t, j in r["tasks_x_jobs"])),
        ("setup (input, init, plan)", f"{r['setup_s']:.0f} s"),
        ("submit", f"{r['submit_s']:.2f} s"),
        ("wall, submit to last job end", f"{r['wall_s']:.0f} s"),
        ("jobs per minute", f"{r['jobs_per_min']:.1f}"),
        ("CPU per job (median / mean)", f"{r['cpu_per_job_s']:.2f} / "
                                        f"{r['cpu_per_job_mean_s']:.2f} s"),
        ("wall per job (median)", f"{r['wall_per_job_s']:.2f} s"),
        ("status polls (max wall)", f"{r['status_polls']} ({r['status_poll_max_s']:.2f} s)"),
        ("max running: status / squeue / records", f"{r['max_running_status']} / "
                                                   f"{r['max_running_squeue']} / "
                                                   f"{r['max_running_records']}"),
        ("merge (wall / CPU)", f"{r['merge']['wall_s']:.2f} / {r['merge']['cpu_s']:.2f} s"),
        ("status at the end (wall / CPU)", f"{r['status_end']['wall_s']:.2f} / "
                                           f"{r['status_end']['cpu_s']:.2f} s"),
        ("fresh clone: files got (time)", f"{r['clone_files']} ({r['clone_get_s']:.1f} s)"),
        ("load average (1/5/15 min)", r["load_average"]),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=1000, metavar="N")
    ap.add_argument("--throttle", type=int, default=4, help="backend.slurm.throttle "
                    "(0: none, then several arrays); default 4")
    ap.add_argument("--max-array-size", type=int, metavar="M",
                    help="MaxArraySize while it runs; default: N/4 rounded up (at least 2)")
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between status polls")
    ap.add_argument("--timeout", type=float, help="give up (and scancel) after this many "
                    "seconds of running; default 300 + 30 per subject")
    ap.add_argument("--workdir", type=Path, help="where to build it (kept); default: a "
                    "temporary directory under /var/tmp, removed at the end")
    ap.add_argument("--lock", type=Path, help="hold this lock file (flock) while using the "
                    "cluster, e.g. /tmp/fairbig-cluster.lock where tests share the cluster; "
                    "the input is generated before, the fresh clone checked after")
    ap.add_argument("--prepare-only", action="store_true", help="only generate the "
                    "input and the analysis in --workdir (long at 1,000 subjects; no cluster "
                    "needed); a later run with that --workdir uses them")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    n = args.subjects
    if n < 2 or args.throttle < 0:
        ap.error("--subjects takes 2 or more, --throttle 0 or more")
    if args.prepare_only and not args.workdir:
        ap.error("--prepare-only needs --workdir (where the next run finds it)")
    most = args.max_array_size or max(2, math.ceil(n / 4))
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    base = (args.workdir.resolve() if args.workdir
            else Path(tempfile.mkdtemp(prefix="bench-slurm-", dir="/var/tmp")))
    os.environ["GNUPGHOME"] = str(base / "gnupg")
    try:
        ana, setup_s = prepared(base, n)
        if args.prepare_only:
            say(f"prepared {n} subjects in {base} ({setup_s:.0f} s): run again with "
                f"--workdir {base}")
            return 0
        (base / PREPARED).unlink()  # a used analysis is never reused
        configure(ana, args.throttle)
        say(f"waiting for {args.lock}" if args.lock else "using the cluster")
        with cluster_lock(args.lock):
            say(f"cluster: MaxArraySize={most}, throttle {args.throttle or 'none'}")
            found = max_array_found()
            ensure_slurm(most)
            try:
                cpus = sh("sinfo", "--noheader", "--format=%c").split()[0]
                ran = run_jobs(ana, base, n, args.throttle, args.poll,
                               args.timeout or 300 + 30 * n)
            finally:
                ensure_slurm(found)
        result = {"subjects": n, "throttle": args.throttle, "node_cpus": int(cpus),
                  "max_array_size": most, "restored_max_array": found,
                  "setup_s": setup_s, **ran, **merge_and_clone(ana, base, n),
                  "load_average": load_average()}
    except (Failed, AssertionError, SlurmClusterError) as exc:
        # one line: a failed fairbig call says which call, then its last line of output
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        said = lines[0] if len(lines) == 1 else f"{lines[0]} {lines[-1].strip()}"
        print(f"bench_slurm_1000: FAILED: {said}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], check=False, capture_output=True)
        if not args.workdir:
            subprocess.run(["chmod", "-R", "u+w", str(base)], check=False)
            shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
