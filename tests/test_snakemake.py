"""workflows/Snakefile: ukb-mini through Snakemake, locally and with the SLURM executor."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import BIN, REPO, fairbig, init_analysis
from .test_local_e2e import git, states, store_git

pytestmark = [pytest.mark.slow, pytest.mark.snakemake]

SNAKEFILE = REPO / "workflows" / "Snakefile"
SLURM_FLAGS = ["--executor", "slurm", "--jobs", "4",
               "--slurm-init-seconds-before-status-checks", "1",
               "--seconds-between-status-checks", "1",
               # no slurmdbd on the test cluster: sacct knows nothing
               "--slurm-status-command", "squeue"]


def snakemake(ana: Path, *args: str, config: tuple[str, ...] = (), cwd: Path,
              timeout: float = 600) -> subprocess.CompletedProcess:
    """Snakemake as a user starts it: from outside the analysis dataset."""
    return subprocess.run([str(BIN / "snakemake"), "-s", str(SNAKEFILE), "--config",
                           f"analysis={ana}", *config, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def log(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def ran(proc: subprocess.CompletedProcess) -> list[str]:
    """The fairbig jobs this Snakemake run started."""
    return re.findall(r"rule fairbig_job:\n(?:\s+\w+:.*\n)*?\s+wildcards: job=(\S+)", log(proc))


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, log(proc)
    return proc


def plan_commit(ana: Path) -> str:
    return git(ana / ".git", "log", "-1", "--format=%H", "--", ".fairbig/plan.tsv").strip()


def markers(ana: Path) -> Path:
    return ana / ".fairbig" / "work" / "snakemake"


@pytest.fixture
def planned(tmp_path, ukb_input, image, lab_key) -> Path:
    ana = init_analysis(tmp_path, ukb_input, image, lab_key)
    fairbig("plan", cwd=ana)
    return ana


def assert_all_merged(ana: Path, ukb_input: dict) -> None:
    counts = json.loads(fairbig("status", "--json", cwd=ana).stdout)["counts"]
    assert counts["merged"] == len(ukb_input["ids"]) == sum(counts.values()), counts
    assert (markers(ana) / f"merged-{plan_commit(ana)}").exists()
    assert git(store_git(ana), "for-each-ref", "refs/heads/job-*") == ""
    log = git(store_git(ana), "log", "--format=%s", "refs/heads/main")
    for jid in ukb_input["ids"]:
        assert f"fairbig job {jid} (input" in log


def test_local_run_merges_and_second_run_does_nothing(planned, ukb_input, tmp_path):
    ana = planned
    first = ok(snakemake(ana, "--cores", "2", cwd=tmp_path))
    assert sorted(ran(first)) == sorted(ukb_input["ids"])
    assert_all_merged(ana, ukb_input)
    assert sorted(p.name for p in (markers(ana) / "done").iterdir()) == sorted(ukb_input["ids"])
    # Snakemake's records stay in the git-ignored work area; the dataset is clean
    assert (markers(ana) / ".snakemake").is_dir()
    assert subprocess.run(["git", "status", "--porcelain", "--ignore-submodules"], cwd=ana,
                          capture_output=True, text=True, check=True).stdout == ""
    main = git(store_git(ana), "rev-parse", "refs/heads/main")

    second = ok(snakemake(ana, "--cores", "2", cwd=tmp_path))
    assert "Nothing to be done" in log(second)
    assert ran(second) == [] and "fairbig_merge" not in log(second)
    assert git(store_git(ana), "rev-parse", "refs/heads/main") == main

    # the audit rule: recompute one finished job from its run record
    audit = ok(snakemake(ana, "--cores", "2", "fairbig_rerun", config=("rerun_sample=1",),
                         cwd=tmp_path))
    assert ran(audit) == []
    report = json.loads((markers(ana) / f"rerun-{plan_commit(ana)}-sample1-seed0.json")
                        .read_text())
    assert len(report["jobs"]) == 1 and report["jobs"][0]["ok"] is True


def test_only_the_job_whose_result_went_away_runs_again(planned, ukb_input, tmp_path):
    ana = planned
    ids = ukb_input["ids"]
    ok(snakemake(ana, "--cores", "2", "fairbig_jobs", cwd=tmp_path))  # jobs, no merge
    assert set(states(ana).values()) == {"done"}
    sgit = store_git(ana)
    before = {j: git(sgit, "rev-parse", f"refs/heads/job-{j}").strip() for j in ids}
    victim, unmarked = ids[1], ids[2]
    git(sgit, "update-ref", "-d", f"refs/heads/job-{victim}")  # result gone from the store
    (markers(ana) / "done" / unmarked).unlink()  # marker gone, result still there
    assert states(ana)[victim] != "done"

    again = ok(snakemake(ana, "--cores", "2", "fairbig_jobs", cwd=tmp_path))
    assert ran(again) == [victim]
    assert set(states(ana).values()) == {"done"}
    after = {j: git(sgit, "rev-parse", f"refs/heads/job-{j}").strip() for j in ids}
    assert after[victim] != before[victim]
    assert {j: s for j, s in after.items() if j != victim} == \
        {j: s for j, s in before.items() if j != victim}
    assert (markers(ana) / "done" / unmarked).exists()  # given back from fairbig status

    final = ok(snakemake(ana, "--cores", "2", config=("keep_branches=true",), cwd=tmp_path))
    assert ran(final) == [] and "fairbig_merge" in log(final)
    assert set(states(ana).values()) == {"merged"}
    assert len(git(sgit, "for-each-ref", "refs/heads/job-*").splitlines()) == len(ids)


@pytest.fixture(scope="module")
def slurm() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start the test SLURM cluster (scripts/slurm-up)")
    from .slurm_cluster import ensure_slurm

    ensure_slurm(None)


@pytest.mark.slurm
def test_slurm_executor_runs_every_job_and_merges(slurm, planned, ukb_input, tmp_path):
    ana = planned
    proc = ok(snakemake(ana, *SLURM_FLAGS, config=("mem_mb=500", "runtime=20"),
                        cwd=tmp_path, timeout=1500))
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log(proc))
    assert len(submitted) == len(ukb_input["ids"])
    assert sorted(ran(proc)) == sorted(ukb_input["ids"])
    assert_all_merged(ana, ukb_input)
    # each job ran inside its SLURM allocation: its own record names the SLURM job
    state_dir = ana / ".fairbig" / "work" / "state"
    seen = {json.loads((state_dir / f"{j}.json").read_text())["backend_id"]
            for j in ukb_input["ids"]}
    assert seen == set(submitted)
    again = ok(snakemake(ana, *SLURM_FLAGS, cwd=tmp_path))
    assert "Nothing to be done" in log(again)
