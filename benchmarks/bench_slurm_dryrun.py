#!/usr/bin/env python3
"""``fairbig submit --backend slurm --dry-run`` for 42,715 jobs (target ≤ 10 s).

Reuses the synthetic analysis of bench_plan_status (subject gitlinks, an
output store) with no job done yet, and times status + rendering + the
array bookkeeping; counts the sbatch calls the submission would make.
Usage: ``python benchmarks/bench_slurm_dryrun.py [--subjects N] [--max-array-size M]``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_plan_status import build

from fairbig import config as cfgmod
from fairbig.backends import slurm
from fairbig.commands.submit import submit
from fairbig.dataset import Analysis
from fairbig.jobtable import make_jobs, read_layout, render_tsv

DSID = "0123abcd-1111-2222-3333-444455556666"
FPR = "C920D3743AA4E88DF7F4DDC20C7B3A10CECB38A4"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=42_715)
    ap.add_argument("--max-array-size", type=int, default=slurm.DEFAULT_MAX_ARRAY)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ana, _, _ = build(base, args.subjects)
        out = base / "out" / DSID[:3]
        out.mkdir(parents=True)
        (out.parent / "ria-layout-version").write_text("1\n")
        subprocess.run(["git", "init", "-q", "--bare", str(out / DSID[3:])], check=True)
        (ana / ".datalad").mkdir()
        (ana / ".datalad" / "config").write_text(f'[datalad "dataset"]\n\tid = {DSID}\n')
        (ana / "fairbig.yaml").write_text(cfgmod.render({
            "stores.input": f"ria+file://{base}/in", "stores.output": f"ria+file://{base}/out",
            "encryption.keys": [FPR], "container": "containers/ukb-mini",
            "command": "sh code/process_subject.sh {input_dir} {output_dir}",
            "backend.name": "slurm", "backend.slurm.throttle": 500}))
        jobs = make_jobs(read_layout(ana, "inputs/data", "ukb", "subject").units,
                         "inputs/data", "results", "sh code/p.sh {input_dir} {output_dir}")
        (ana / ".fairbig").mkdir()
        (ana / ".fairbig" / "plan.tsv").write_text(render_tsv(jobs))
        a = Analysis(ana)
        t0 = time.perf_counter()
        with mock.patch.object(slurm, "DEFAULT_MAX_ARRAY", args.max_array_size):
            outcome = submit(a, "slurm", dry_run=True)
        secs = time.perf_counter() - t0
        calls = (Path(outcome.run_dir) / "submit.sh").read_text().count("sbatch ")
    print(f"jobs: {len(outcome.submitted)}  dry-run submit: {secs:.2f} s  "
          f"sbatch calls: {calls} (MaxArraySize {args.max_array_size})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
