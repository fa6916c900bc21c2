"""Stored results checked and repaired (``fairbig verify``), a read-only output store,
two merges at once: real jobs of the ukb-mini example, real gpg and git-annex."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import BIN, fairbig, gnupg_home, init_analysis
from .test_reliability import (
    git,
    merge_at_state,
    one_error_line,
    refs,
    restore,
    sh,
    snapshot,
    store_git,
)

pytestmark = pytest.mark.slow

STORAGE = "output-storage"


@pytest.fixture(scope="module")
def ran(tmp_path_factory, ukb_input, image, lab_key) -> dict:
    """Two ukb-mini jobs done (branches in the store, nothing merged yet)."""
    base = tmp_path_factory.mktemp("verify")
    ana = init_analysis(base, ukb_input, image, lab_key)
    jobs = ukb_input["ids"][:2]
    fairbig("plan", *(f"--only={j}" for j in jobs), cwd=ana)
    fairbig("submit", "-j", "2", cwd=ana)
    return {"ana": ana, "jobs": jobs, "pre": snapshot(ana), "base": base}


def branch_of(ana: Path) -> str:
    return sh("git", "symbolic-ref", "--short", "HEAD", cwd=ana).stdout.strip()


def merged(ran: dict) -> Path:
    """The two jobs merged, whatever an earlier test left."""
    ana = ran["ana"]
    if git(store_git(ana), "for-each-ref", "refs/heads/job-*").strip():
        fairbig("merge", cwd=ana)
    return ana


def stored_object(ana: Path, path: str) -> Path:
    """The encrypted object in the output RIA store holding ``path``'s content."""
    key = sh("git", "annex", "lookupkey", path, cwd=ana).stdout.strip()
    debug = sh("git", "annex", "checkpresentkey", key, STORAGE, "--debug", cwd=ana).stderr
    name = next(w for w in debug.split() if w.startswith("GPGHMACSHA1--"))
    found = [p for p in (store_git(ana) / "annex" / "objects").rglob(name) if p.is_file()]
    assert len(found) == 1, found
    return found[0]


def flip_byte(obj: Path) -> None:
    obj.chmod(0o644)
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.write_bytes(bytes(data))


def read_only(ana: Path, *args: str) -> subprocess.CompletedProcess:
    """``fairbig ARGS`` with the output store mounted read-only (root ignores mode bits)."""
    root = store_git(ana).parent.parent
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, str(root),
                           str(BIN / "fairbig"), *args], cwd=ana, capture_output=True,
                          text=True)


# ---------------------------------------------------------------- read-only store

def test_status_and_merge_dry_run_work_on_a_read_only_store(ran):
    ana, jobs = ran["ana"], ran["jobs"]
    restore(ana, ran["pre"])
    probe = read_only(ana, "--version")
    if probe.returncode != 0:
        pytest.skip(f"no read-only bind mount here: {probe.stderr.strip()}")
    before = refs(store_git(ana))
    st = read_only(ana, "status", "--json")
    assert st.returncode == 0, st.stderr
    counts = json.loads(st.stdout)["counts"]
    assert counts["done"] == 2 and counts["planned"] == 0, counts
    dry = read_only(ana, "merge", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert sorted(json.loads(dry.stdout)["merged"]) == sorted(jobs)
    checked = read_only(ana, "verify", "--json")  # results on job branches, read back
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["checked"]["jobs"] == sorted(jobs)
    # writing still needs write access, refused before anything is written
    line = one_error_line(read_only(ana, "merge"))
    assert "output store" in line and "not writable" in line, line
    git(store_git(ana), "update-ref", "-d", f"refs/heads/job-{jobs[0]}")  # lost: rerun it
    runs = sorted((ana / ".fairbig" / "work" / "runs").iterdir())
    line = one_error_line(read_only(ana, "submit", "--failed"))
    assert "output store" in line and "not writable" in line, line
    assert sorted((ana / ".fairbig" / "work" / "runs").iterdir()) == runs
    restore(ana, ran["pre"])
    assert refs(store_git(ana)) == before


# ---------------------------------------------------------------- racing merges

def held_merge(ana: Path, tmp: Path) -> tuple[subprocess.Popen, Path, Path]:
    """A ``fairbig merge`` held once its merge commit is written, before main moves;
    returns it, its hit and go files."""
    env = merge_at_state(ana, tmp, "written", "hold")
    hit, go = tmp / "hit", tmp / "go"
    proc = subprocess.Popen([str(BIN / "fairbig"), "merge"], cwd=ana, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not hit.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the merge never wrote its commit"
        time.sleep(0.2)
    return proc, hit, go


def no_git_text(text: str) -> None:
    for raw in ("cannot lock ref", "fatal:", "is at ", "Traceback", "internal error"):
        assert raw not in text, text


def test_racing_merges_end_in_one_line_and_the_winner_reports_success(ran, tmp_path):
    ana, jobs = ran["ana"], ran["jobs"]
    sgit, branch = store_git(ana), branch_of(ana)
    # 1. a second merge while the first holds the store: one line with the right hint
    restore(ana, ran["pre"])
    first, _, go = held_merge(ana, tmp_path / "a")
    second = fairbig("merge", cwd=ana, check=False)
    line = one_error_line(second)
    assert "another 'fairbig merge'" in line and "wait for it" in line, line
    no_git_text(second.stdout + second.stderr)
    go.touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, out + err
    assert f"merged {len(jobs)} job(s)" in out
    no_git_text(out + err)
    # 2. both started at the same moment: one merges, the other merges nothing or
    # says in one line that the first one is at it; never raw git text
    restore(ana, ran["pre"])
    procs = [subprocess.Popen([str(BIN / "fairbig"), "merge"], cwd=ana, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for rc, out, err in results:
        no_git_text(out + err)
        if rc != 0:
            line = one_error_line(subprocess.CompletedProcess([], rc, out, err))
            assert "another 'fairbig merge'" in line, line
    winners = [out for rc, out, _ in results if rc == 0 and f"merged {len(jobs)} job(s)" in out]
    assert len(winners) == 1, results
    assert git(sgit, "for-each-ref", "refs/heads/job-*").strip() == ""
    # 3. main moved by something else while a merge computed: one line, nothing merged
    restore(ana, ran["pre"])
    old = ran["pre"]["store"][f"refs/heads/{branch}"]
    held, _, go = held_merge(ana, tmp_path / "b")
    moved = sh("git", f"--git-dir={sgit}", "commit-tree", "-p", old, "-m", "by hand",
               f"{old}^{{tree}}").stdout.strip()
    git(sgit, "update-ref", f"refs/heads/{branch}", moved, old)
    go.touch()
    out, err = held.communicate(timeout=300)
    line = one_error_line(subprocess.CompletedProcess([], held.returncode, out, err))
    assert "moved" in line and "nothing was merged" in line and "again" in line, line
    no_git_text(out + err)
    assert git(sgit, "rev-parse", f"refs/heads/{branch}").strip() == moved
    restore(ana, ran["pre"])


# ---------------------------------------------------------------- verify and repair

def test_verify_names_a_flipped_byte_and_the_repair_restores_a_verified_result(ran, tmp_path):
    ana = merged(ran)
    damaged, lost = ran["jobs"]
    clean = fairbig("verify", "--json", cwd=ana)
    assert json.loads(clean.stdout)["ok"]
    target = f"results/{damaged}/summary.json"
    flip_byte(stored_object(ana, target))
    gone = f"results/{lost}/summary.json"
    stored_object(ana, gone).unlink()
    # the lab key first: absent, one line, at once (not one failure per file)
    nokey = gnupg_home("nokey")
    t0 = time.monotonic()
    line = one_error_line(fairbig("verify", cwd=ana, check=False,
                                  env={"GNUPGHOME": str(nokey)}))
    assert "secret key" in line and time.monotonic() - t0 < 30, line
    # with it: damage is corruption (whatever gpg says), named by job and file
    bad = fairbig("verify", cwd=ana, check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    problems = [ln for ln in bad.stdout.splitlines() if "  corrupt: " in ln or "  missing: " in ln]
    assert len(problems) == 2, bad.stdout
    assert problems[0].startswith(f"{damaged}  {target}  corrupt: "), problems
    assert problems[1].startswith(f"{lost}  {gone}  missing: "), problems
    assert "damaged" in problems[0] and "fairbig verify --repair" in bad.stdout
    report = json.loads(fairbig("verify", damaged, "--json", cwd=ana, check=False).stdout)
    assert [(p["job_id"], p["path"], p["problem"]) for p in report["checked"]["problems"]] \
        == [(damaged, target, "corrupt")]
    # the repair: jobs run again, merged, verified
    fixed = fairbig("verify", "--repair", cwd=ana, check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert f"repaired {damaged} {lost}" in fixed.stdout
    again = json.loads(fairbig("verify", "--json", cwd=ana).stdout)
    assert again["ok"] and again["checked"]["jobs"] == sorted(ran["jobs"]), again
    assert git(store_git(ana), "for-each-ref", "refs/heads/job-*").strip() == ""
    states = {j["job_id"]: j["state"] for j in
              json.loads(fairbig("status", "--json", cwd=ana).stdout)["jobs"]}
    assert states == {damaged: "merged", lost: "merged"}
    rerun = json.loads(fairbig("rerun", damaged, "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"] and set(rerun["files"].values()) == {"identical"}, rerun
