#!/usr/bin/env python3
"""Per-job overhead: fairbig's job body against the FAIRly big paper's participant_job.

Both jobs run one at a time, interleaved (reference, fairbig, reference, ...), on the
same analysis, stores, container and machine, for ``--pairs`` pairs (default 5) after
one warm-up pair. The pipeline is ukb-mini's non-deterministic variant (0.1 s), so
every job uploads new content, as a real one does.

The reference job does what the ``participant_job`` that FAIRly big's
``bootstrap_ukb_cat.sh`` writes does, in that order: ``datalad clone`` of the analysis
from the input store, ``git remote add outputstore``, its own branch,
``datalad get -n`` of the subject, ``datalad containers-run --explicit``,
``datalad push --to output-storage``, ``flock LOCK git push outputstore``. Adapted
only to reach the encrypted store: the lab's public key imported into a GNUPGHOME of
its own and the special remotes verified (the pinned git-annex refuses writes to
unverified ones), as fairbig's job does.

Each job runs under ``python -m fairbig.jobstep measure``, a child subreaper: the CPU
of the whole process tree is counted, the git-annex helpers that outlive their
parent included. Printed: per-job wall and CPU, their medians, the ratios, and the
median of every step of fairbig's job (its usage file, written by ``measure``).

Run by hand (a few minutes): ``.venv/bin/python benchmarks/bench_job_overhead.py
[--pairs 5] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DATALAD_LOG_LEVEL", "warning")

from fairbig import contract  # noqa: E402
from fairbig.commands.submit import job_context  # noqa: E402
from fairbig.dataset import Analysis  # noqa: E402
from fairbig.jobtable import HEADER, LIST_SEP  # noqa: E402
from fairbig.render import job_body  # noqa: E402
from tests.conftest import BIN, fairbig, init_analysis, load_generator, make_key  # noqa: E402

COMMAND = "sh code/process_subject_nondeterministic.sh {input_dir} {output_dir}"

# The reference job: participant_job of bootstrap_ukb_cat.sh, step by step, plus the two
# adaptations an encrypted store needs (key import, remote verification).
REFERENCE_JOB = r"""#!/bin/bash
set -e -u
dssource=$1 pushgitremote=$2 subid=$3 container=$4 message=$5 input=$6 output=$7 cmd=$8
datalad clone "$dssource" ds
cd ds
git remote add outputstore "$pushgitremote"
git checkout -b "ref-$JOBID"
datalad get -n "inputs/data/$subid"
# adaptation: the lab's public key and the verified special remotes
mkdir -m 700 "$GNUPGHOME"
echo no-autostart >"$GNUPGHOME/gpg.conf"
gpg --batch --quiet --import "$PUBKEY" 2>/dev/null || true
git config annex.gnupg-options "--trust-model always"
for remote in $(git config --name-only --get-regexp '^remote\..*\.annex-externaltype$' \
                | sed 's/^remote\.//; s/\.annex-externaltype$//'); do
    id=$(git annex verifyremote "$remote" 2>&1 | sed -n 's/.*--safe \([^ ]*\).*/\1/p' | head -n 1)
    if [ -n "$id" ]; then git annex verifyremote "$remote" --safe "$id" >/dev/null; fi
done
datalad containers-run -n "$container" --explicit -m "$message" -i "$input" -o "$output" \
    -- "$cmd"
datalad push --to output-storage
flock "$DSLOCKFILE" git push outputstore
echo SUCCESS
"""


def constants(job_sh: Path) -> dict[str, str]:
    """The ``name=value`` constants the rendered job body starts with."""
    out: dict[str, str] = {}
    for line in job_sh.read_text().splitlines():
        name, eq, value = line.partition("=")
        if line.startswith("# -- which job"):
            break
        if eq and name.isidentifier():
            try:
                parsed = shlex.split(value) if value else [""]
            except ValueError:
                continue
            if len(parsed) == 1:
                out.setdefault(name, parsed[0])
    return out


def measure(cmd: list[str], cwd: Path, env: dict[str, str], usage: Path) -> dict:
    """Run ``cmd`` under the job steps' own measurer (a child subreaper); its usage."""
    usage.unlink(missing_ok=True)
    proc = subprocess.run([str(BIN / "python"), "-m", "fairbig.jobstep", "measure",
                           "--step", "job", "--usage", str(usage), "--", *cmd],
                          cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:2]} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return json.loads(usage.read_text().splitlines()[-1])


def fairbig_steps(usage_file: Path) -> dict[str, dict]:
    steps: dict[str, dict] = {}
    for line in usage_file.read_text().splitlines():
        data = json.loads(line)
        steps[data["step"]] = data
    return steps


def setup(base: Path) -> tuple[Path, str]:
    """An analysis of ukb-mini (2 subjects) planned and run once (the warm-up); kept in
    ``base`` and reused when it is there already (``--base``)."""
    if (base / "done").exists():
        os.environ["GNUPGHOME"] = str(base / "gnupg")
        return base / "analysis", (base / "done").read_text().strip()
    key = make_key(base / "gnupg")
    os.environ["GNUPGHOME"] = str(base / "gnupg")
    image = base / "ukb-mini.tar"
    subprocess.run([str(REPO / "containers" / "build-image"), str(image)], check=True,
                   capture_output=True)
    store = f"ria+file://{base}/input-store"
    ids = load_generator().generate(base / "ukb", 2, 7, store)
    ana = init_analysis(base, {"url": f"{store}#~ukb"}, image, key, command=COMMAND)
    fairbig("plan", cwd=ana)
    fairbig("submit", "-j", "1", cwd=ana)
    (base / "done").write_text(ids[0] + "\n")
    return ana, ids[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--base", type=Path, help="keep the analysis here and reuse it next time "
                    "(setup takes minutes); default: a temporary directory")
    args = ap.parse_args()
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        base = args.base.resolve() if args.base else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        ana, job = setup(base)
        # the job body of this checkout's code, rendered as `fairbig submit` renders it
        job_sh = Path(tmp) / "job.sh"
        job_sh.write_text(job_body(job_context(Analysis.find(ana), run_id="bench")))
        const = constants(job_sh)
        row = next(dict(zip(HEADER, line.split("\t"), strict=True))
                   for line in (ana / contract.PLAN_FILE).read_text().splitlines()[1:]
                   if line.split("\t")[0] == job)
        assert LIST_SEP not in row["inputs"] + row["outputs"], "one input, one output"
        message = contract.job_message(job, row["input_state"])
        ref_sh = base / "reference_job.sh"
        ref_sh.write_text(REFERENCE_JOB)
        store_git = const["output_url"]
        state_usage = ana / contract.WORK_DIR / contract.STATE / f"{job}.usage"
        runs: dict[str, list[dict]] = {"reference": [], "fairbig": []}
        steps: list[dict[str, dict]] = []
        for n in range(args.pairs + 1):
            for ref in (f"refs/heads/ref-{job}", contract.JOB_REF_PREFIX + job):
                subprocess.run(["git", f"--git-dir={store_git}", "update-ref", "-d", ref],
                               check=False)
            pwd = Path(tmp) / f"ref-{n}"
            pwd.mkdir()
            env = {**os.environ, "JOBID": job, "DSLOCKFILE": const["lock_file"],
                   "GNUPGHOME": str(pwd / "gnupg"),
                   "PUBKEY": str(ana / contract.PUBKEY_FILE)}
            ref_use = measure(["bash", str(ref_sh), const["input_url"], store_git, job,
                               const["container"], message, row["inputs"], row["outputs"],
                               row["command"]], pwd, env, Path(tmp) / "ref.usage")
            shutil.rmtree(pwd, ignore_errors=True)
            fb_use = measure(["bash", str(job_sh), job], base, dict(os.environ),
                             Path(tmp) / "fb.usage")
            if n == 0:
                continue  # warm-up pair: caches of a fresh machine
            runs["reference"].append(ref_use)
            runs["fairbig"].append(fb_use)
            steps.append(fairbig_steps(state_usage))
    med = {k: {m: statistics.median(r[m] for r in v) for m in ("wall_s", "cpu_s")}
           for k, v in runs.items()}
    ratio = {m: round(med["fairbig"][m] / med["reference"][m], 3) for m in ("wall_s", "cpu_s")}
    step_names = [s for s in steps[0] if all(s in st for st in steps)]
    step_med = {s: {m: statistics.median(st[s][m] for st in steps) for m in ("wall_s", "cpu_s")}
                for s in step_names}
    if args.json:
        print(json.dumps({"runs": runs, "median": med, "ratio": ratio, "steps": step_med},
                         indent=1))
        return 0
    print(f"{'pair':>4}  {'ref wall':>8} {'ref cpu':>8}  {'fb wall':>8} {'fb cpu':>8}")
    for i, (r, f) in enumerate(zip(runs["reference"], runs["fairbig"], strict=True), 1):
        print(f"{i:>4}  {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f}  {f['wall_s']:>8.2f} "
              f"{f['cpu_s']:>8.2f}")
    print(f"median  {med['reference']['wall_s']:>8.2f} {med['reference']['cpu_s']:>8.2f}  "
          f"{med['fairbig']['wall_s']:>8.2f} {med['fairbig']['cpu_s']:>8.2f}")
    print(f"ratio fairbig/reference: wall {ratio['wall_s']:.3f}  CPU {ratio['cpu_s']:.3f}"
          "  (goal <= 0.4 wall, <= 0.35 CPU)")
    print("\nfairbig's job per step (medians; 'container' is inside 'run'):")
    for s, v in step_med.items():
        print(f"  {s:<14} wall {v['wall_s']:>6.2f} s  CPU {v['cpu_s']:>6.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
