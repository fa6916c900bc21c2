"""workflows/Snakefile: standalone and as a module of a host workflow, locally and on SLURM."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import fairbig as fb
from fairbig.contract import PLAN_FILE
from fairbig.storeview import read_merged_rows

from .conftest import BIN, fairbig, init_analysis
from .test_local_e2e import git, states, store_git

pytestmark = [pytest.mark.slow, pytest.mark.snakemake]

SNAKEFILE = fb.snakefile()
# the shipped profile (squeue for status: no slurmdbd here), polled faster for the tests
SLURM_FLAGS = ["--profile", str(SNAKEFILE.parent / "profiles" / "slurm"), "--jobs", "4",
               "--slurm-init-seconds-before-status-checks", "1",
               "--seconds-between-status-checks", "1", "--latency-wait", "5"]
# A host's PATH without fairbig's virtualenv: its own rules must see exactly this one.
HOST_PATH = "/usr/local/bin:/usr/bin:/bin"

HOST = """\
import fairbig

module fairbig:
    snakefile: fairbig.snakefile()
    config: {{"analysis": "{ana}", "mem_mb": 500, "runtime": 20}}

use rule * from fairbig as fairbig_*

rule all:
    default_target: True
    input: "mine/{job}.txt", rules.fairbig_all.input

rule mine:
    localrule: True
    input: "fairbig-results/{{job}}/summary.json"
    output: "mine/{{job}}.txt"
    log: "logs/mine-{{job}}.log"
    shell: "{{{{ pwd; echo \\"$PATH\\"; cat {{input:q}}; }}}} > {{output:q}} 2> {{log:q}}"
"""


def snakemake(*args: str, cwd: Path, snakefile: Path | None = SNAKEFILE, ana: Path | None = None,
              config: tuple[str, ...] = (), env: dict | None = None,
              timeout: float = 1500) -> subprocess.CompletedProcess:
    """Snakemake as a user starts it: from outside the analysis dataset."""
    cmd = [str(BIN / "snakemake")]
    if snakefile:
        cmd += ["-s", str(snakefile)]
    if ana or config:
        cmd += ["--config", *([f"analysis={ana}"] if ana else []), *config]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def log(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def ran(proc: subprocess.CompletedProcess) -> list[str]:
    """The fairbig jobs this Snakemake run started (rule `job` or `fairbig_job`)."""
    return re.findall(r"rule (?:fairbig_)?job:\n(?:\s+\w+:.*\n)*?\s+wildcards: .*job=(\S+)",
                      log(proc))


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, log(proc)
    return proc


def marks(ana: Path) -> Path:
    """Markers of the plan commit (not HEAD: a merge moves HEAD, the markers stay)."""
    planned = git(ana / ".git", "log", "-1", "--format=%H", "--", PLAN_FILE).strip()
    return ana / ".fairbig" / "work" / "snakemake" / planned[:12]


def footprint(ana: Path) -> dict:
    """Everything a start could write: refs and files of both stores, fairbig's work area."""
    cfg = fb_config(ana)
    out = {}
    for name in ("input", "output"):
        root = Path(getattr(cfg.stores, name)[len("ria+file://"):])
        out[name] = sorted((str(p.relative_to(root)), p.stat().st_mtime_ns)
                           for p in root.rglob("*") if p.is_file())
    out["refs"] = git(store_git(ana), "for-each-ref")
    out["work"] = sorted(str(p.relative_to(ana)) for p in (ana / ".fairbig" / "work").rglob("*"))
    return out


def fb_config(ana: Path):
    from fairbig import config as cfgmod

    return cfgmod.load(ana / "fairbig.yaml")


def assert_all_merged(ana: Path, ids: list[str]) -> dict[str, str]:
    """Every job merged, branches gone; returns job -> merged job commit."""
    counts = json.loads(fairbig("status", "--json", cwd=ana).stdout)["counts"]
    assert counts["merged"] == len(ids) == sum(counts.values()), counts
    assert git(store_git(ana), "for-each-ref", "refs/heads/job-*") == ""
    rows = read_merged_rows(store_git(ana), "main")
    return {j: rows[j][1] for j in ids}


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, ukb_input, image, lab_key) -> Path:
    """One planned analysis the module tests run through in order."""
    base = tmp_path_factory.mktemp("smk")
    ana = init_analysis(base, ukb_input, image, lab_key)
    fairbig("plan", cwd=ana)
    return ana


def test_lint_and_dry_run_write_nothing(analysis, tmp_path):
    ana = analysis
    lint = snakemake("--lint", ana=ana, cwd=tmp_path)
    assert lint.returncode == 0, log(lint)
    before = footprint(ana)
    for flags in (["-n"], ["-n", "--verbose"], ["--lint"], ["--unlock"]):
        ok(snakemake(*flags, ana=ana, cwd=tmp_path))
    dry = ok(snakemake("-n", ana=ana, cwd=tmp_path))
    assert "prepare" in log(dry) and "merge" in log(dry)
    assert footprint(ana) == before
    # no line of the dry run is longer than a few KB (the merge's inputs are batched)
    assert max(len(line) for line in log(dry).splitlines()) < 4096


@pytest.mark.long
def test_host_workflow_imports_module_and_consumes_a_result(analysis, ukb_input, tmp_path):
    ana = analysis
    ids, mine = ukb_input["ids"], ukb_input["ids"][0]
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(HOST.format(ana=ana, job=mine))
    env = {"PATH": HOST_PATH}
    first = ok(snakemake("--cores", "2", snakefile=None, cwd=host, env=env))
    assert sorted(ran(first)) == sorted(ids)
    commits = assert_all_merged(ana, ids)
    # markers carry the job's commit, under the plan commit the merge did not change
    for j in ids:
        assert (marks(ana) / "done" / j).read_text().strip() == commits[j]
    # the host's rule ran in the host's directory with the host's PATH, on the decrypted result
    where, path, content = (host / "mine" / f"{mine}.txt").read_text().split("\n", 2)
    assert where == str(host) and path == HOST_PATH
    assert json.loads(content)["subject"] == mine
    # the run record of a Snakemake-driven job reproduces
    audit = json.loads(fairbig("rerun", mine, "--json", cwd=ana).stdout)
    assert audit["jobs"][0]["ok"] is True
    again = ok(snakemake("--cores", "2", snakefile=None, cwd=host, env=env))
    assert "Nothing to be done" in log(again)


@pytest.mark.long
def test_forcing_one_job_gets_its_new_branch_merged(analysis, ukb_input, tmp_path):
    ana = analysis
    victim = ukb_input["ids"][1]
    old = read_merged_rows(store_git(ana), "main")[victim][1]
    marker = marks(ana) / "done" / victim
    forced = ok(snakemake("--cores", "2", "-R", str(marker), ana=ana, cwd=tmp_path))
    assert ran(forced) == [victim]
    new = assert_all_merged(ana, ukb_input["ids"])[victim]
    assert new != old and marker.read_text().strip() == new
    # the audit rule: a rerun verdict as a report() output of the workflow
    ok(snakemake("--cores", "1", "audit", ana=ana, cwd=tmp_path, config=("rerun_sample=1",)))
    verdict = json.loads((marks(ana) / "rerun-sample1-seed0.json").read_text())
    assert [j["ok"] for j in verdict["jobs"]] == [True]
    rr = json.loads(fairbig("rerun", victim, "--json", cwd=ana).stdout)
    assert rr["jobs"][0]["ok"] is True


@pytest.fixture
def planned(tmp_path, ukb_input, image, lab_key) -> Path:
    ana = init_analysis(tmp_path, ukb_input, image, lab_key)
    fairbig("plan", cwd=ana)
    return ana


def test_only_the_job_whose_result_went_away_runs_again(planned, ukb_input, tmp_path):
    ana = planned
    ids = ukb_input["ids"]
    ok(snakemake("--cores", "2", "jobs", ana=ana, cwd=tmp_path))  # jobs, no merge
    assert set(states(ana).values()) == {"done"}
    sgit = store_git(ana)
    before = {j: git(sgit, "rev-parse", f"refs/heads/job-{j}").strip() for j in ids}
    victim, unmarked = ids[1], ids[2]
    git(sgit, "update-ref", "-d", f"refs/heads/job-{victim}")  # result gone from the store
    (marks(ana) / "done" / unmarked).unlink()  # marker gone, result still there
    assert states(ana)[victim] != "done"

    again = ok(snakemake("--cores", "2", "jobs", ana=ana, cwd=tmp_path))
    assert ran(again) == [victim]
    assert set(states(ana).values()) == {"done"}
    after = {j: git(sgit, "rev-parse", f"refs/heads/job-{j}").strip() for j in ids}
    assert after[victim] != before[victim]
    assert (marks(ana) / "again-1" / victim).read_text().strip() == after[victim]
    assert {j: s for j, s in after.items() if j != victim} == \
        {j: s for j, s in before.items() if j != victim}

    final = ok(snakemake("--cores", "2", ana=ana, cwd=tmp_path, config=("keep_branches=true",)))
    assert ran(final) == [] and "rule merge" in log(final)
    assert set(states(ana).values()) == {"merged"}
    assert len(git(sgit, "for-each-ref", "refs/heads/job-*").splitlines()) == len(ids)


@pytest.fixture(scope="module")
def slurm() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start the test SLURM cluster (scripts/slurm-up)")
    from .slurm_cluster import ensure_slurm

    ensure_slurm(None)


@pytest.mark.long
@pytest.mark.slurm
def test_host_workflow_on_slurm(slurm, planned, ukb_input, tmp_path):
    ana = planned
    ids, mine = ukb_input["ids"], ukb_input["ids"][0]
    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(HOST.format(ana=ana, job=mine))
    proc = ok(snakemake(*SLURM_FLAGS, snakefile=None, cwd=host, env={"PATH": HOST_PATH}))
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log(proc))
    assert len(submitted) == len(ids)
    assert sorted(ran(proc)) == sorted(ids)
    assert_all_merged(ana, ids)
    # each job ran inside its SLURM allocation: its own record names the SLURM job
    state_dir = ana / ".fairbig" / "work" / "state"
    seen = {json.loads((state_dir / f"{j}.json").read_text())["backend_id"] for j in ids}
    assert seen == set(submitted)
    where, path, _ = (host / "mine" / f"{mine}.txt").read_text().split("\n", 2)
    assert where == str(host) and path == HOST_PATH
    audit = json.loads(fairbig("rerun", ids[-1], "--json", cwd=ana).stdout)
    assert audit["jobs"][0]["ok"] is True
