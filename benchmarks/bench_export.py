#!/usr/bin/env python3
"""``fairbig export ro-crate`` at UK Biobank scale (target ≤ 30 s for 42,715 jobs).

The analysis of ``bench_merge_full.py`` (fairbig init, encrypted output store,
one real job), plus N-1 synthetic jobs whose commits carry datalad run records
like a real job's and whose state records sit in ``.fairbig/work/state``, all
merged with ``fairbig merge``. Times the export as a user runs it (wall, CPU and
peak RSS, with the load average), then reads
the crate back with the ``rocrate`` library.
Usage: ``python benchmarks/bench_export.py [--jobs N] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from bench_merge_full import BIN, setup, sh, synthesize
from measure import load_average, measured

from fairbig.jobstate import JobRecord

CMD = "sh code/process_subject.sh inputs/data/{j} results/{j}"


def run_record(job_id: str, state: str) -> str:
    """A commit message as ``datalad containers-run`` writes it for a fairbig job."""
    record = {"chain": [], "cmd": "sh containers/fairbig-container containers/images/"
              f"ukb-mini.tar '{CMD.format(j=job_id)}'", "dsid": "synthetic", "exit": 0,
              "extra_inputs": ["containers/images/ukb-mini.tar"],
              "inputs": [f"inputs/data/{job_id}"], "outputs": [f"results/{job_id}"],
              "pwd": "."}
    return (f"[DATALAD RUNCMD] fairbig job {job_id} (input {state})\n\n"
            "=== Do not change lines below ===\n" + json.dumps(record, indent=1)
            + "\n^^^ Do not change lines above ^^^\n")


def state_records(ana: Path, job_ids: list[str]) -> None:
    plan = {f[0]: f[3] for f in (line.split("\t") for line in
                                 (ana / ".fairbig" / "plan.tsv").read_text().splitlines()[1:])}
    state_dir = ana / ".fairbig" / "work" / "state"
    state_dir.mkdir(parents=True, exist_ok=True)
    for n, j in enumerate(job_ids):
        rec = JobRecord(j, "done", "finished", 0, f"node{n % 64:02d}", 1, f"{n}", 1_800_000_000
                        + n, 1_800_003_600 + n, "", plan[j])
        (state_dir / f"{j}.json").write_text(json.dumps(asdict(rec)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=42_715, help="jobs in all (one of them real)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        ana, store, target = setup(base)
        ids = synthesize(ana, store, [target], args.jobs - 1, message=run_record)
        state_records(ana, ids)
        merged = json.loads(sh(str(BIN / "fairbig"), "merge", "--json", cwd=ana))
        crate = base / "crate"
        run = measured(str(BIN / "fairbig"), "export", "ro-crate", str(crate), "--json",
                       cwd=ana)
        out = json.loads(run.stdout)
        from rocrate.rocrate import ROCrate

        t0 = time.perf_counter()
        back = ROCrate(crate)
        read_s = round(time.perf_counter() - t0, 2)
        actions = sum(1 for e in back.get_entities() if e.type == "CreateAction")
        result = {"jobs": args.jobs, "merged_now": len(merged["merged"]),
                  "export": run.figures(), "export_internal_s": out["seconds"],
                  "metadata_bytes": out["metadata_bytes"],
                  "metadata_mib": round(out["metadata_bytes"] / 2**20, 1),
                  "entities": out["entities"], "rocrate_read_s": read_s,
                  "rocrate_actions": actions, "load_average": load_average()}
    print(json.dumps(result, indent=2) if args.json else
          "\n".join(f"{k:>20}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
