#!/usr/bin/env python3
"""Reliability under load, repeated: what tests/test_reliability.py checks once.

Part 1, contention: ``--runs`` times (default 3) a fresh analysis of ``--subjects``
(64) jobs of a trivial pipeline, run ``-j`` (16) at once with ``fairbig submit`` into
one encrypted output store. Per run: lost branches (jobs without a branch), lost
keys (annex keys of job branches the output storage does not hold, asked of the
storage itself), then ``fairbig merge`` and ``git annex fsck --fast --from
output-storage`` of a fresh clone of the store. Goal: 0 lost, fsck clean.
Part 2, the push lock: ``--pushers`` (20) clones push distinct branches at once
under the store's flock, as job bodies do, ``--lock-rounds`` (50) times, while the
previous round's branches are deleted and refs packed (as ``fairbig merge`` does).

Real datalad, git-annex, gpg, bubblewrap; run by hand (several minutes):
``.venv/bin/python benchmarks/bench_reliability.py [--runs 3] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DATALAD_LOG_LEVEL", "warning")

from tests.conftest import make_key  # noqa: E402
from tests.test_reliability import (  # noqa: E402
    contention_losses,
    create_analysis,
    create_bids_input,
    fairbig,
    fresh_clone_fsck,
    locked_push_rounds,
    run_contention,
    states,
)


def contention_run(base: Path, input_url: str, image: Path, key: str, subjects: list[str],
                   parallel: int) -> dict:
    ana = create_analysis(base, input_url, image, key)
    out = run_contention(ana, parallel)
    lost_branches, lost_keys = contention_losses(ana, subjects)
    counts = {s: n for s, n in _counts(ana).items() if n}
    merge = fairbig("merge", "--json", cwd=ana, check=False)
    merged = len(json.loads(merge.stdout)["merged"]) if merge.returncode == 0 else 0
    fsck = fresh_clone_fsck(ana, base / "fresh-clone")
    return {"seconds": round(out["seconds"], 1), "submit_rc": out["submit"].returncode,
            "states": counts, "lost_branches": lost_branches, "lost_keys": lost_keys,
            "merged": merged, "merge_rc": merge.returncode,
            "fsck_ok": fsck.returncode == 0 and "fail" not in fsck.stdout.lower()}


def _counts(ana: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in states(ana).values():
        out[s] = out.get(s, 0) + 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--subjects", type=int, default=64)
    ap.add_argument("-j", "--parallel", type=int, default=16)
    ap.add_argument("--pushers", type=int, default=20)
    ap.add_argument("--lock-rounds", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    subjects = [f"sub-{i:02d}" for i in range(1, args.subjects + 1)]
    with tempfile.TemporaryDirectory(prefix="bench-reliability-") as tmp:
        base = Path(tmp)
        os.environ["GNUPGHOME"] = str(base / "gnupg")
        key = make_key(base / "gnupg")
        image = base / "image.tar"
        subprocess.run([str(REPO / "containers" / "build-image"), str(image)], check=True,
                       capture_output=True)
        inp = create_bids_input(base / "input", subjects)
        runs = []
        for r in range(1, args.runs + 1):
            res = contention_run(base / f"run{r}", inp["url"], image, key, subjects,
                                 args.parallel)
            runs.append(res)
            print(f"run {r}: {res['seconds']} s, states {res['states']}, lost branches "
                  f"{len(res['lost_branches'])}, lost keys {len(res['lost_keys'])}, "
                  f"merged {res['merged']}, fsck {'clean' if res['fsck_ok'] else 'FAILED'}",
                  file=sys.stderr)
        t0 = time.monotonic()
        lock = locked_push_rounds(base / "lock", args.pushers, args.lock_rounds)
        lock_s = time.monotonic() - t0
    result = {"contention": runs, "lock": {
        "pushers": args.pushers, "rounds": args.lock_rounds, "branches": lock["branches"],
        "lost": lock["lost"], "fsck_ok": lock["fsck"] == 0, "stale_locks": lock["locks"],
        "seconds": round(lock_s, 1)}}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"\ncontention: {args.subjects} jobs, -j {args.parallel}, one output store")
        print(f"{'run':>4} {'seconds':>8} {'done':>5} {'lost br.':>9} {'lost keys':>10} "
              f"{'merged':>7} {'fsck':>6}")
        for r, res in enumerate(runs, 1):
            print(f"{r:>4} {res['seconds']:>8} {res['states'].get('done', 0):>5} "
                  f"{len(res['lost_branches']):>9} {len(res['lost_keys']):>10} "
                  f"{res['merged']:>7} {'clean' if res['fsck_ok'] else 'FAIL':>6}")
        lk = result["lock"]
        print(f"\npush lock: {lk['pushers']} pushers x {lk['rounds']} rounds = "
              f"{lk['branches']} branches in {lk['seconds']} s: lost {len(lk['lost'])}, "
              f"fsck {'clean' if lk['fsck_ok'] else 'FAIL'}, stale locks {len(lk['stale_locks'])}")
    bad = any(r["lost_branches"] or r["lost_keys"] or not r["fsck_ok"] for r in runs) \
        or lock["lost"] or lock["fsck"] != 0
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
