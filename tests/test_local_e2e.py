"""ukb-mini through plan → submit (local) → status, on real datalad/annex/container."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.jobstate import read_records
from fairbig.stores import LOCK_NAME

from .conftest import BIN, fairbig, init_analysis, load_generator, status

pytestmark = pytest.mark.slow


def git(git_dir: Path, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True,
                          capture_output=True, text=True).stdout


def store_git(analysis: Path) -> Path:
    cfg = cfgmod.load(analysis / "fairbig.yaml")
    dsid = subprocess.run(["git", "config", "-f", str(analysis / ".datalad" / "config"),
                           "datalad.dataset.id"], capture_output=True, text=True).stdout.strip()
    return Path(cfg.stores.output[len("ria+file://"):]) / dsid[:3] / dsid[3:]


def states(analysis: Path) -> dict[str, str]:
    return {j["job_id"]: j["state"] for j in status(analysis)["jobs"]}


@pytest.fixture(scope="module")
def run(tmp_path_factory, ukb_input, image, lab_key):
    """An analysis with a private ephemeral workdir, planned and fully run.

    The workdir's name has a '"' in it: job records must stay valid JSON."""
    base = tmp_path_factory.mktemp("local")
    ana = init_analysis(base, ukb_input, image, lab_key)
    work = base / 'ephe"meral'
    cfgmod.update_file(ana / "fairbig.yaml", {"job.workdir": str(work)})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "workdir"], cwd=ana, check=True,
                   capture_output=True)
    plan = fairbig("plan", "--json", cwd=ana)
    sub = fairbig("submit", "-j", "2", cwd=ana)
    return {"ana": ana, "work": work, "plan": json.loads(plan.stdout), "submit": sub,
            "base": base}


def test_every_job_done_with_run_record_and_content(run, ukb_input):
    ana = run["ana"]
    assert run["plan"]["jobs"] == len(ukb_input["ids"]) and len(run["plan"]["new"]) == 4
    st = status(ana)
    assert st["counts"]["done"] == 4 and st["counts"]["failed"] == 0
    sgit = store_git(ana)
    head = git(ana / ".git", "rev-parse", "HEAD").strip()
    keys = []
    for jid in ukb_input["ids"]:
        ref = f"refs/heads/job-{jid}"
        # the branch: the plan commit without results/, then the run commit, whose
        # results folder holds this job's results only
        assert git(sgit, "rev-list", "--parents", "-1", f"{ref}^").split()[1:] == [head]
        assert (git(sgit, "ls-tree", f"{ref}^").splitlines()
                == [e for e in git(sgit, "ls-tree", head).splitlines()
                    if not e.endswith("\tresults")])
        assert git(sgit, "ls-tree", "--name-only", f"{ref}:results").split() == [jid]
        msg = git(sgit, "log", "-1", "--format=%B", ref)
        record = json.loads(msg.split("=== Do not change lines below ===")[1]
                            .split("^^^ Do not change lines above ^^^")[0])
        assert "containers/fairbig-container" in record["cmd"]
        assert record["extra_inputs"] == ["containers/images/ukb-mini.tar"]
        assert record["inputs"] == [f"inputs/data/{jid}"]
        assert record["outputs"] == [f"results/{jid}"]
        tree = git(sgit, "ls-tree", "-r", ref, "--", f"results/{jid}").splitlines()
        assert tree and all(line.startswith("120000") for line in tree)  # all annexed
        for line in tree:
            keys.append(os.path.basename(git(sgit, "cat-file", "blob", line.split()[2])))
    present = subprocess.run(["git", "annex", "checkpresentkey", "--batch", "output-storage"],
                             input="".join(k + "\n" for k in keys), cwd=ana, text=True,
                             capture_output=True, check=True).stdout.split()
    assert present == ["1"] * len(keys)
    assert not any(run["work"].iterdir())  # no ephemeral clone left behind
    records = read_records(ana / ".fairbig" / "work" / "state")
    assert {j: r.status for j, r in records.items()} == dict.fromkeys(ukb_input["ids"], "done")
    assert all(r.workdir.startswith(str(run["work"]) + "/") for r in records.values())


def test_replan_is_incremental(run):
    out = json.loads(fairbig("plan", "--json", cwd=run["ana"]).stdout)
    assert out["new"] == [] and out["changed"] == [] and len(out["done"]) == 4
    assert out["committed"] is False
    assert "nothing to submit" in fairbig("submit", cwd=run["ana"]).stdout


def test_corrupt_record_fails_then_fix_completes(run, ukb_input):
    ana = run["ana"]
    gen = load_generator()
    victim = ukb_input["ids"][0]
    record = "20252_2_0.zip"
    good = (ukb_input["path"] / victim / record).read_bytes()
    gen.corrupt_record(ukb_input["path"], victim, record)
    try:
        out = json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)
        assert out["changed"] == [victim]
        sub = fairbig("submit", cwd=ana, check=False)
        assert sub.returncode != 0 and victim in sub.stdout
        assert "nothing to submit" in fairbig("submit", cwd=ana).stdout  # no silent retry
        st = status(ana)
        assert st["counts"]["failed"] == 1 and st["counts"]["done"] == 3
        assert any(record in line for line in st["failures"][victim])
        text = fairbig("status", cwd=ana, check=False).stdout
        assert f"  {victim}  log: {ana}/.fairbig/work/logs/{victim}.log" in text.splitlines()
    finally:
        gen.restore_record(ukb_input["path"], victim, record, good)
    out = json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)
    assert out["changed"] == [victim]
    before = {r: git(store_git(ana), "rev-parse", r).strip()
              for r in (f"refs/heads/job-{j}" for j in ukb_input["ids"][1:])}
    assert states(ana)[victim] == "planned"  # a new input state: a new job
    fairbig("submit", cwd=ana)
    assert set(states(ana).values()) == {"done"}
    after = {r: git(store_git(ana), "rev-parse", r).strip() for r in before}
    assert before == after  # the others were not re-run


def _craft_branch(ana: Path, job: str, files: dict[str, str],
                  symlinks: dict[str, str] | None = None) -> str:
    """A job branch made by hand in the store: as a buggy or half-finished job would."""
    sgit = store_git(ana)
    plan = {line.split("\t")[0]: line.split("\t")[3]
            for line in (ana / ".fairbig" / "plan.tsv").read_text().splitlines()[1:]}
    head = git(ana / ".git", "rev-parse", "HEAD").strip()
    entries = []
    for path, text in files.items():
        sha = subprocess.run(["git", f"--git-dir={sgit}", "hash-object", "-w", "--stdin"],
                             input=text, capture_output=True, text=True, check=True).stdout
        entries.append(f"100644 {sha.strip()}\t{path}\0")
    for path, target in (symlinks or {}).items():
        sha = subprocess.run(["git", f"--git-dir={sgit}", "hash-object", "-w", "--stdin"],
                             input=target, capture_output=True, text=True, check=True).stdout
        entries.append(f"120000 {sha.strip()}\t{path}\0")
    env = {**os.environ, "GIT_INDEX_FILE": str(ana / ".fairbig" / "work" / f"idx-{job}")}
    subprocess.run(["git", f"--git-dir={sgit}", "read-tree", head], env=env, check=True)
    subprocess.run(["git", f"--git-dir={sgit}", "update-index", "-z", "--index-info"],
                   input="".join(entries), text=True, env=env, check=True)
    tree = subprocess.run(["git", f"--git-dir={sgit}", "write-tree"], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()
    msg = f"[DATALAD RUNCMD] fairbig job {job} (input {plan[job]})"
    commit = subprocess.run(["git", f"--git-dir={sgit}", "commit-tree", tree, "-p", head,
                             "-m", msg], capture_output=True, text=True, check=True
                            ).stdout.strip()
    git(sgit, "update-ref", f"refs/heads/job-{job}", commit)
    return commit


def test_merge_refuses_conflicts_naming_jobs_and_path(run, ukb_input):
    ana = run["ana"]
    sgit = store_git(ana)
    a, b = ukb_input["ids"][:2]
    main_before = git(sgit, "rev-parse", "refs/heads/main").strip()
    saved = {j: git(sgit, "rev-parse", f"refs/heads/job-{j}").strip() for j in (a, b)}
    try:
        _craft_branch(ana, a, {"results/shared.txt": "from a\n"})
        _craft_branch(ana, b, {"results/shared.txt": "from b\n"})
        proc = fairbig("merge", "--shared", "results/shared.txt", cwd=ana, check=False)
        assert proc.returncode != 0
        assert "results/shared.txt" in proc.stderr and a in proc.stderr and b in proc.stderr
        assert "written by several jobs" in proc.stderr
        outside = fairbig("merge", cwd=ana, check=False)
        assert outside.returncode != 0 and "outside the job's area" in outside.stderr
        assert git(sgit, "rev-parse", "refs/heads/main").strip() == main_before
    finally:
        for j, sha in saved.items():
            git(sgit, "update-ref", f"refs/heads/job-{j}", sha)


def test_merge_refuses_branch_with_missing_content(run, ukb_input):
    ana = run["ana"]
    sgit = store_git(ana)
    victim = ukb_input["ids"][2]
    main_before = git(sgit, "rev-parse", "refs/heads/main").strip()
    saved = git(sgit, "rev-parse", f"refs/heads/job-{victim}").strip()
    key = "MD5E-s6--0123456789abcdef0123456789abcdef.txt"
    try:
        _craft_branch(ana, victim, {}, {
            f"results/{victim}/never-pushed.txt": f"../../.git/annex/objects/xx/yy/{key}/{key}"})
        proc = fairbig("merge", cwd=ana, check=False)
        assert proc.returncode != 0
        assert "content missing" in proc.stderr and victim in proc.stderr
        assert f"results/{victim}/never-pushed.txt" in proc.stderr
        assert git(sgit, "rev-parse", "refs/heads/main").strip() == main_before
    finally:
        git(sgit, "update-ref", f"refs/heads/job-{victim}", saved)


def test_merge_brings_every_result_into_main(run, ukb_input, tmp_path):
    ana = run["ana"]
    sgit = store_git(ana)
    out = json.loads(fairbig("merge", "--json", cwd=ana).stdout)
    assert sorted(out["merged"]) == sorted(ukb_input["ids"])
    assert git(sgit, "for-each-ref", "refs/heads/job-*") == ""  # branches pruned
    assert set(states(ana).values()) == {"merged"}
    log = git(sgit, "log", "--format=%s", "refs/heads/main")
    for jid in ukb_input["ids"]:
        assert f"fairbig job {jid} (input" in log  # every run record reachable from main
    clone = tmp_path / "fresh"
    cfg = cfgmod.load(ana / "fairbig.yaml")
    ident = subprocess.run(["git", "config", "-f", str(ana / ".datalad" / "config"),
                            "datalad.dataset.id"], capture_output=True, text=True).stdout.strip()
    subprocess.run([str(BIN / "datalad"), "clone", f"{cfg.stores.output}#{ident}", str(clone)],
                   check=True, capture_output=True)
    got = subprocess.run([str(BIN / "datalad"), "get", "results"], cwd=clone,
                         capture_output=True, text=True)
    assert got.returncode == 0, got.stdout + got.stderr
    missing = subprocess.run(["git", "annex", "find", "--not", "--in", "here", "results"],
                             cwd=clone, capture_output=True, text=True, check=True).stdout
    assert missing == ""
    again = json.loads(fairbig("merge", "--json", cwd=ana).stdout)
    assert again["merged"] == []


def _worktree_results(ana: Path) -> list[str]:
    return sorted(str(f.relative_to(ana)) for f in (ana / "results").rglob("*")
                  if not f.is_dir()) if (ana / "results").exists() else []


def test_analysis_dataset_has_results_in_head_not_in_working_tree(run, ukb_input):
    """After a merge the analysis dataset's HEAD lists every result, its working tree
    none; a ``datalad save`` without paths (DataLad counts them as deleted) is refused
    by the guard instead of committing the deletion of every result."""
    ana = run["ana"]
    fairbig("merge", cwd=ana)
    head = git(ana / ".git", "ls-tree", "-r", "--name-only", "HEAD", "--", "results")
    assert {n.split("/")[1] for n in head.split()} == set(ukb_input["ids"])
    assert _worktree_results(ana) == []
    before = git(ana / ".git", "rev-parse", "HEAD")
    (ana / "code" / "note.txt").write_text("a note\n")
    saved = subprocess.run([str(BIN / "datalad"), "save", "-m", "note"], cwd=ana,
                           capture_output=True, text=True)
    assert saved.returncode != 0
    assert "fairbig: this commit would delete results/, which is not checked out in the " \
        "analysis dataset (run 'git reset -q', then save named paths: datalad save PATH)" \
        in saved.stdout + saved.stderr
    assert git(ana / ".git", "rev-parse", "HEAD") == before
    subprocess.run(["git", "reset", "-q"], cwd=ana, check=True)
    subprocess.run([str(BIN / "datalad"), "save", "-m", "note", "code/note.txt"], cwd=ana,
                   check=True, capture_output=True)
    assert git(ana / ".git", "ls-tree", "-r", "--name-only", "HEAD", "--", "results") == head
    assert _worktree_results(ana) == []


def test_analysis_with_results_checked_out_is_converted_by_next_merge(run, ukb_input):
    """An analysis made before results were left out (working tree holds every result
    link, one with its content here) is converted by the next merge: refused in one
    line while a file under results/ is not committed, then converted with the
    content kept in .git/annex and HEAD unchanged."""
    ana = run["ana"]
    subprocess.run(["git", "sparse-checkout", "disable"], cwd=ana, check=True)
    hook = ana / ".git" / "hooks" / "pre-commit"
    hook.write_text(hook.read_text().split("# fairbig:")[0])  # as init left it before
    links = _worktree_results(ana)
    assert len(links) == len(git(ana / ".git", "ls-tree", "-r", "--name-only", "HEAD",
                                 "--", "results").split()) > 0
    job = ukb_input["ids"][0]
    key = subprocess.run(["git", "annex", "lookupkey", f"results/{job}/summary.json"],
                         cwd=ana, capture_output=True, text=True).stdout.strip()
    subprocess.run(["git", "annex", "get", "--key", key], cwd=ana, check=True,
                   capture_output=True)
    content = subprocess.run(["git", "annex", "contentlocation", key], cwd=ana,
                             capture_output=True, text=True, check=True).stdout.strip()
    head = git(ana / ".git", "rev-parse", "HEAD")
    stray = ana / "results" / job / "notes.txt"
    stray.write_text("mine\n")
    refused = fairbig("merge", cwd=ana, check=False)
    assert refused.returncode != 0
    assert (f"1 uncommitted change(s) under results/ in the analysis dataset {ana}, first: "
            f"results/{job}/notes.txt") in refused.stderr
    assert stray.read_text() == "mine\n" and _worktree_results(ana) == sorted(
        [*links, f"results/{job}/notes.txt"])
    stray.unlink()
    fairbig("merge", cwd=ana)
    assert _worktree_results(ana) == []
    assert git(ana / ".git", "rev-parse", "HEAD") == head
    assert (ana / content).read_bytes()  # the content stayed in .git/annex
    assert "# fairbig: the results folder is not checked out here" in hook.read_text()
    assert subprocess.run(["git", "status", "--porcelain"], cwd=ana, capture_output=True,
                          text=True, check=True).stdout == ""


def datalad_rerun_in_fresh_clone(ana: Path, commit: str, outputs: str, tmp: Path) -> None:
    """A plain ``datalad rerun COMMIT`` in a fresh clone of the output store (on top of its
    main) regenerates every output bit-identically: the job's commits alone reproduce it."""
    cfg = cfgmod.load(ana / "fairbig.yaml")
    dsid = subprocess.run(["git", "config", "-f", str(ana / ".datalad" / "config"),
                           "datalad.dataset.id"], capture_output=True, text=True).stdout.strip()
    clone = tmp / f"fresh-{commit[:12]}"
    dl = str(BIN / "datalad")
    subprocess.run([dl, "clone", f"{cfg.stores.output}#{dsid}", str(clone)], check=True,
                   capture_output=True)
    subprocess.run(["git", "config", "datalad.get.subdataset-source-candidate-100input",
                    f"{cfg.stores.input}#{{id}}"], cwd=clone, check=True)
    proc = subprocess.run([dl, "rerun", commit], cwd=clone, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git(clone / ".git", "ls-tree", "-r", "HEAD", "--", outputs) == git(
        clone / ".git", "ls-tree", "-r", commit, "--", outputs)  # same annex keys
    assert subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                          text=True, check=True).stdout == ""
    regenerated = subprocess.run(["git", "annex", "find", "--in", "here", "--", outputs],
                                 cwd=clone, capture_output=True, text=True, check=True)
    names = git(clone / ".git", "ls-tree", "-r", "--name-only", commit, "--", outputs)
    assert sorted(regenerated.stdout.split()) == sorted(names.split())  # computed here
    subprocess.run(["chmod", "-R", "u+w", str(clone)], check=True)


def test_changed_job_runs_again_over_its_merged_results(run, ukb_input):
    """A job whose input changed after its results were merged, twice: its clone holds the
    old, content-less results, which the new run must replace (not write through), and
    the new result must stay auditable: `fairbig rerun` and a plain `datalad rerun` of
    its commit in a fresh clone reproduce it bit for bit. Every command runs as
    ``fairbig -C ANALYSIS`` from another directory, as a script on a login node would."""
    ana = run["ana"]
    elsewhere = run["base"]

    def fb(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return fairbig("-C", str(ana), *args, cwd=elsewhere, check=check)

    sgit = store_git(ana)
    gen = load_generator()
    victim = ukb_input["ids"][1]
    record = "20252_2_0.zip"
    good = (ukb_input["path"] / victim / record).read_bytes()
    others = [n for n in git(sgit, "ls-tree", "-r", "--name-only", "refs/heads/main", "--",
                             "results").splitlines() if not n.startswith(f"results/{victim}/")]
    try:
        # a valid change, then back to the original data: two re-plans of one job
        for data in (gen.make_record(record, victim, seed=99), good):
            old = git(sgit, "rev-parse", f"refs/heads/main:results/{victim}").strip()
            gen.replace_record(ukb_input["path"], victim, record, data, "update")
            out = json.loads(fb("plan", "--update", "--json").stdout)
            assert out["changed"] == [victim]
            sub = fb("submit", check=False)
            assert sub.returncode == 0, sub.stdout + "\n".join(status(ana)["failures"][victim])
            log = (ana / ".fairbig" / "work" / "logs" / f"{victim}.log").read_text()
            assert "without results/" in log and others
            tip = git(sgit, "rev-parse", f"refs/heads/job-{victim}").strip()
            # the branch starts from the plan commit without results/ (neither the
            # others' nor this job's earlier ones): the run commit holds its own only
            start = git(sgit, "log", "-1", "--format=%s", f"{tip}^")
            assert start.startswith(f"fairbig job {victim}: start from plan commit")
            assert git(sgit, "ls-tree", f"{tip}^", "--", "results") == ""
            assert git(sgit, "ls-tree", "--name-only", f"{tip}:results").split() == [victim]
            assert json.loads(fb("merge", "--json").stdout)["merged"] == [victim]
            new = git(sgit, "rev-parse", f"refs/heads/main:results/{victim}").strip()
            assert new != old
            names = git(sgit, "ls-tree", "-r", "--name-only", "refs/heads/main", "--",
                        "results").splitlines()
            assert {n.split("/")[1] for n in names} == set(ukb_input["ids"])  # others kept
            rerun = json.loads(fb("rerun", victim, "--json").stdout)["jobs"][0]
            assert rerun["commit"] == tip and rerun["ok"], rerun  # IDENTICAL
            assert set(rerun["files"].values()) == {"identical"}
            datalad_rerun_in_fresh_clone(ana, tip, f"results/{victim}", run["base"])
    finally:
        gen.restore_record(ukb_input["path"], victim, record, good)


def _job_log(ana: Path, job: str) -> Path:
    return ana / ".fairbig" / "work" / "logs" / f"{job}.log"


def _record(ana: Path, job: str):
    return read_records(ana / ".fairbig" / "work" / "state")[job]


def test_stale_attempt_waits_for_the_lock_visibly_then_is_superseded(run, ukb_input):
    """An attempt whose input state the plan no longer wants (the input changed back while
    it ran) never reaches the store: it says "superseded" in its log and record, and the
    merged result stays, reproducible. While the push lock is held it says so."""
    ana = run["ana"]
    sgit = store_git(ana)
    gen = load_generator()
    victim = ukb_input["ids"][2]
    record = "20252_2_0.zip"
    good = (ukb_input["path"] / victim / record).read_bytes()
    merged = git(sgit, "rev-parse", f"refs/heads/main:results/{victim}").strip()
    lock = Path(cfgmod.load(ana / "fairbig.yaml").stores.output[len("ria+file://"):]
                ) / LOCK_NAME
    gen.replace_record(ukb_input["path"], victim, record,
                       gen.make_record(record, victim, seed=97), "update")
    holder = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        assert json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)["changed"] \
            == [victim]
        script = json.loads(fairbig("script", "--json", cwd=ana).stdout)["script"]
        fcntl.flock(holder, fcntl.LOCK_EX)
        os.write(holder, b"the test (holding it on purpose)\n")
        job = subprocess.Popen(["bash", script, victim], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while "waiting for the push lock" not in _job_log(ana, victim).read_text():
            assert job.poll() is None, _job_log(ana, victim).read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(2)
        assert "held since the test (holding it on purpose)" in _job_log(ana, victim).read_text()
        stale = _record(ana, victim)
        assert (stale.status, stale.step) == ("running", "push-branch")
        gen.restore_record(ukb_input["path"], victim, record, good)
        fairbig("plan", "--update", cwd=ana)
        fcntl.flock(holder, fcntl.LOCK_UN)
        assert job.wait(timeout=300) == 0
    finally:
        os.close(holder)
        gen.restore_record(ukb_input["path"], victim, record, good)
    # restoring the bytes is a new commit of the subject: a third input state, planned
    assert states(ana)[victim] == "planned"
    rec = _record(ana, victim)
    assert rec.status == "superseded" and rec.input_state == stale.input_state
    assert rec.detail.startswith("the newest plan wants input ")
    assert rec.input_state not in rec.detail
    assert f"superseded, nothing pushed: {rec.detail}" in _job_log(ana, victim).read_text()
    assert git(sgit, "for-each-ref", f"refs/heads/job-{victim}") == ""  # never pushed
    assert git(sgit, "rev-parse", f"refs/heads/main:results/{victim}").strip() == merged
    fairbig("submit", cwd=ana)  # the attempt the newest plan wants
    assert states(ana)[victim] == "done"
    rerun = json.loads(fairbig("rerun", victim, "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"], rerun  # IDENTICAL


def test_output_through_a_committed_symlink_is_refused_before_deleting(run, ukb_input):
    """A plan whose output goes through a committed symlink to a host directory: the job
    refuses before deleting anything, the host file survives, the merged result stays."""
    ana = run["ana"]
    victim = ukb_input["ids"][3]
    host = run["base"] / "host-dir"
    (host / "x").mkdir(parents=True)
    (host / "x" / "keep.txt").write_text("precious\n")
    (ana / "code" / "escape").symlink_to(host)
    plan = ana / ".fairbig" / "plan.tsv"
    honest = plan.read_text()
    rows = [line.split("\t") for line in honest.splitlines()]
    col = rows[0].index("outputs")
    for row in rows[1:]:
        if row[0] == victim:
            row[col] = "code/escape/x"
    plan.write_text("".join("\t".join(r) + "\n" for r in rows))
    dl = str(BIN / "datalad")
    subprocess.run([dl, "save", "-m", "hostile plan", str(plan), "code/escape"], cwd=ana,
                   check=True, capture_output=True)
    try:
        script = json.loads(fairbig("script", "--json", cwd=ana).stdout)["script"]
        proc = subprocess.run(["bash", script, victim], stdin=subprocess.DEVNULL)
        assert proc.returncode == 2
        log = _job_log(ana, victim).read_text()
        assert (f"fairbig job: output path 'code/escape/x' goes through the symlink "
                f"'code/escape' (-> {host}); refused before deleting anything") in log
        rec = _record(ana, victim)
        assert (rec.status, rec.step, rec.exit_code) == ("failed", "checkout", 2)
        assert (host / "x" / "keep.txt").read_text() == "precious\n"
    finally:
        (ana / "code" / "escape").unlink()
        plan.write_text(honest)
        subprocess.run([dl, "save", "-m", "honest plan again", str(plan), "code/escape"],
                       cwd=ana, check=True, capture_output=True)
    assert {j["job_id"]: j["state"] for j in status(ana)["jobs"]}[victim] == "merged"
    rerun = json.loads(fairbig("rerun", victim, "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"], rerun  # IDENTICAL
