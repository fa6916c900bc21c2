"""The contract between fairbig's Python, the job body and the Snakefile (issue 17 §1):
each fact is defined once in Python and reaches bash and Snakemake rendered. Pure:
the rendered job body runs in bash only up to the point under test, no dataset."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from fairbig import contract
from fairbig.ids import JOB_ID_WILDCARD, job_id_problem
from fairbig.jobtable import Job, render_tsv
from fairbig.render import JobContext, job_body
from fairbig.resources import templates_dir

ROOT = Path(__file__).resolve().parent.parent
IDS = ["1234567", "sub-01", "sub-01_ses-2", "a", "a" * 128, "a" * 129, "a.b", "lock",
       "a.lockb", "x.lock", "x.", "a..b", "..", ".a", "-a", "_a", "a/b", "a b", "a'b",
       "a$b", "é", "", "sub-01.lock.d", "a.-b"]


def body(tmp_path: Path, log_dir: str = "/dev/null/not-a-dir") -> Path:
    """The job body as submit renders it; its log directory cannot be made, so a job
    that passes the ID check stops right there (exit 1) and touches nothing."""
    ctx = JobContext(input_url="/nowhere", input_git="/nowhere", output_url="/nowhere",
                     storage="s",
                     lock_file="/nowhere/lock", state_dir=str(tmp_path / "state"),
                     log_dir=log_dir, plan_commit="0" * 40, results="results",
                     container="c", workdir="", bindir="/nonexistent", main_branch="main",
                     push_lock_timeout=1)
    script = tmp_path / "job.sh"
    script.write_text(job_body(ctx))
    return script


def test_job_body_refuses_exactly_the_ids_ids_py_refuses(tmp_path: Path):
    script = body(tmp_path)
    for jid in IDS:
        res = subprocess.run(["bash", str(script), jid], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"}, check=False)
        refused = res.returncode == 2 and "invalid job ID" in res.stderr
        assert refused == (job_id_problem(jid) is not None), (jid, res.returncode, res.stderr)


def test_snakefile_wildcard_is_the_ids_py_rule():
    rule = re.compile(JOB_ID_WILDCARD)
    for jid in IDS:
        assert bool(rule.fullmatch(jid)) == (job_id_problem(jid) is None), jid
    # it looks at nothing outside its match: the job's log file name "<job>.log" and a
    # fetched result "<job>/<path>" match as the bare ID would
    for jid in ("a", "sub-01", "lock"):
        assert re.fullmatch(rf"d/(?P<job>{JOB_ID_WILDCARD})\.log", f"d/{jid}.log")
        assert re.fullmatch(rf"(?P<job>{JOB_ID_WILDCARD})/x\.\.y", f"{jid}/x..y")
    assert not re.fullmatch(rf"d/(?P<job>{JOB_ID_WILDCARD})\.log", "d/x.lock.log")


def test_job_body_reads_the_plan_row_by_the_columns_jobtable_writes(tmp_path: Path):
    """The plan-reading lines of the rendered body, run on a plan render_tsv wrote and
    committed (the job reads it from the plan commit, before its checkout)."""
    job = Job("sub-02", "sub-02", "", "f" * 40, ("in/a b", "in/c"), ("results/sub-02",),
              "code/run 'x' \"y\"")
    other = Job("sub-1", "sub-1", "", "e" * 40, ("in/z",), ("results/sub-1",), "other")
    (tmp_path / contract.FAIRBIG_DIR).mkdir()
    (tmp_path / contract.PLAN_FILE).write_text(render_tsv([other, job]))
    for args in (["init", "-q"], ["add", contract.PLAN_FILE],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "p"]):
        subprocess.run(["git", *args], cwd=tmp_path, check=True)
    (tmp_path / contract.PLAN_FILE).unlink()  # the work tree is not checked out yet
    text = body(tmp_path).read_text()
    consts = "\n".join(line for line in text.splitlines()
                       if line.startswith(("plan_file=", "list_sep=")))
    reading = text[text.index("plan_row=$("):text.index("\nbase_commit=$(")]
    shown = 'printf "%s|" "$input_state" "${inputs[@]}" "${outputs[@]}" "$command"'
    res = subprocess.run(["bash", "-c", f"set -euo pipefail\n{consts}\njob_id=sub-02\n"
                          f"plan_commit=HEAD\n{reading}\n{shown}"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert res.stdout.split("|")[:-1] == [job.input_state, *job.inputs, *job.outputs,
                                          job.command]


def test_job_commit_message_is_what_the_store_view_parses(tmp_path: Path):
    text = body(tmp_path).read_text()
    fmt = re.search(r"^message_format=(.*)$", text, re.M).group(1)
    made = subprocess.run(["bash", "-c", f'f={fmt}; printf "$f" sub-01 {"a" * 40}'],
                          capture_output=True, text=True, check=True).stdout
    assert made == contract.job_message("sub-01", "a" * 40)
    m = contract.JOB_MESSAGE_RE.search(made)
    assert m and m.groups() == ("sub-01", "a" * 40)


@pytest.mark.parametrize("literal", [
    ".fairbig/", "plan.tsv", "merged.tsv", "lab-pubkey.asc", "refs/heads/job-",
    "fairbig job %s", "(input $", "[A-Za-z0-9", "output-storage", "10.2026",
    "remote add output", "--remote output", "$1 == id", ".cancel", "fairbig-job-$"])
def test_templates_and_snakefile_hold_no_copy_of_the_contract(literal: str):
    files = [*templates_dir().glob("*.j2"), ROOT / "workflows" / "Snakefile"]
    holders = [f.name for f in files if literal in f.read_text()]
    assert holders == []


def test_the_rendered_contract_values_are_never_reassigned(tmp_path: Path):
    """A loop variable of the same name would silently swap one (a loop over the special
    remotes once replaced the output remote the job pushes to)."""
    text = body(tmp_path).read_text()
    start = text.index("# -- the contract with fairbig's Python")
    names = re.findall(r"^(\w+)=", text[start:text.index("\nbindir=", start)], re.M)
    assert "output_remote" in names and "plan_file" in names
    for name in names:
        assigned = re.findall(rf"(?:^|[\s;(]){name}=|\bfor {name}\b|\bread\b[^\n]*\b{name}\b",
                              text, re.M)
        assert len(assigned) == 1, (name, assigned)
