"""Reliability and security suite (issue 10): contention, kills at every step, the push
lock, hostile input, encryption at rest, clean failures, merge safety.

Everything is real: a BIDS-like input dataset made with datalad and published to
a RIA store, the encrypted output store, the busybox container under bubblewrap,
the local backend. Kills are injected from outside (wrappers on the job's PATH
through ``job.env_setup``, a ``git`` wrapper in front of ``fairbig merge``); the
product has no test-only code paths. Long repetitions: benchmarks/bench_reliability.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fairbig import config as cfgmod

from .conftest import BIN, fairbig, gnupg_home, make_key, status

pytestmark = pytest.mark.slow

# 64 jobs at once is the contention test; a CI short of time may lower it (at least 9)
N_SUBJECTS = max(9, int(os.environ.get("FAIRBIG_RELIABILITY_JOBS", "64")))
SECRET = "FAIRBIG-SECRET-PAYLOAD"
# The marker the pipeline writes is spelled with octal escapes in the command, so
# the plaintext is in the outputs only, never in the run records (which are in git).
PIPELINE = ("sh -c 'mkdir -p {output_dir} && printf \"FAIRBIG\\055SECRET\\055PAYLOAD %s\\n\" "
            "{subject} > {output_dir}/out.txt'")
SUBJECTS = [f"sub-{i:02d}" for i in range(1, N_SUBJECTS + 1)]


# ---------------------------------------------------------------- helpers

def sh(*args: str | Path, cwd: Path | None = None, check: bool = True, input: str | None = None,
       env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          input=input, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def git(git_dir: Path, *args: str, check: bool = True) -> str:
    return sh("git", f"--git-dir={git_dir}", *args, check=check).stdout


def dataset_id(ana: Path) -> str:
    return sh("git", "config", "-f", ana / ".datalad" / "config",
              "datalad.dataset.id").stdout.strip()


def store_root(ana: Path, which: str = "output") -> Path:
    cfg = cfgmod.load(ana / "fairbig.yaml")
    return Path(getattr(cfg.stores, which)[len("ria+file://"):])


def store_git(ana: Path) -> Path:
    dsid = dataset_id(ana)
    return store_root(ana) / dsid[:3] / dsid[3:]


def refs(git_dir: Path) -> dict[str, str]:
    out = git(git_dir, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines())


def states(ana: Path) -> dict[str, str]:
    return {j["job_id"]: j["state"] for j in status(ana)["jobs"]}


def save_config(ana: Path, updates: dict) -> None:
    cfgmod.update_file(ana / "fairbig.yaml", updates)
    sh(BIN / "datalad", "save", "-m", "test: configure", "fairbig.yaml", cwd=ana)


def head(ana: Path) -> str:
    return sh("git", "rev-parse", "HEAD", cwd=ana).stdout.strip()


def clean_tree(ana: Path) -> bool:
    return sh("git", "status", "--porcelain", cwd=ana).stdout.strip() == ""


def job_keys(sgit: Path, ref: str, jid: str) -> list[str]:
    """Annex keys of a job's results on ``ref`` (all results must be annexed)."""
    tree = git(sgit, "ls-tree", "-r", ref, "--", f"results/{jid}").splitlines()
    assert tree, f"no results of {jid} on {ref}"
    assert all(line.startswith("120000") for line in tree), tree
    return [os.path.basename(git(sgit, "cat-file", "blob", line.split()[2])) for line in tree]


def present(ana: Path, keys: list[str]) -> list[str]:
    """Keys the encrypted output storage really holds (asked of the remote itself)."""
    if not keys:
        return []
    out = sh("git", "annex", "checkpresentkey", "--batch", "output-storage", cwd=ana,
             input="".join(k + "\n" for k in keys)).stdout.split()
    return [k for k, a in zip(keys, out, strict=True) if a == "1"]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The user error of a failed command: exactly one 'fairbig: error:' line with a fix."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("fairbig: error: ")]
    assert len(errors) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    assert errors[0].rstrip().endswith(")"), f"no fix given: {errors[0]}"  # "(how to fix it)"
    return errors[0]


# ---------------------------------------------------------------- fixtures

def create_bids_input(base: Path, subjects: list[str] = SUBJECTS) -> dict:
    """One flat BIDS-like dataset, many tiny subjects, published to a RIA input store."""
    import datalad.api as dl

    ds = base / "bids"
    quiet = {"result_renderer": "disabled", "return_type": "list"}
    dl.create(path=str(ds), **quiet)
    (ds / "dataset_description.json").write_text('{"Name": "reliability", "BIDSVersion": "1.8"}\n')
    for sub in subjects:
        (ds / sub / "anat").mkdir(parents=True)
        (ds / sub / "anat" / "T1w.txt").write_text(f"T1w of {sub}\n")
    dl.save(dataset=str(ds), message="subjects", **quiet)
    store = f"ria+file://{base}/input-store"
    dl.create_sibling_ria(url=store, name="input-store", dataset=str(ds), alias="bids",
                          new_store_ok=True, **quiet)
    dl.push(dataset=str(ds), to="input-store", **quiet)
    return {"path": ds, "url": f"{store}#~bids", "base": base}


def create_analysis(base: Path, input_url: str, image: Path, key: str,
                    command: str = PIPELINE) -> Path:
    """``fairbig init --layout bids`` with its own stores and ephemeral dir below ``base``."""
    ana = base / "analysis"
    fairbig("init", str(ana), "--input", input_url, "--container", str(image),
            "--command", command, "--input-store", f"{base}/in-store",
            "--output-store", f"{base}/out-store", "--encrypt-to", key, "--layout", "bids")
    (base / "ephemeral").mkdir()
    save_config(ana, {"job.workdir": str(base / "ephemeral")})
    return ana


@pytest.fixture(scope="module")
def bids_input(tmp_path_factory) -> dict:
    return create_bids_input(tmp_path_factory.mktemp("bidsin"))


@pytest.fixture(scope="module")
def make_analysis(tmp_path_factory, bids_input, image, lab_key):
    def make(name: str) -> Path:
        return create_analysis(tmp_path_factory.mktemp(name), bids_input["url"], image,
                               lab_key)
    return make


# ---------------------------------------------------------------- 1. contention

def contention_losses(ana: Path, jobs: list[str]) -> tuple[list[str], list[str]]:
    """(jobs without a branch in the store, annex keys of job branches not in its storage)."""
    sgit = store_git(ana)
    have = refs(sgit)
    lost_branches = [j for j in jobs if f"refs/heads/job-{j}" not in have]
    keys = [k for j in jobs if f"refs/heads/job-{j}" in have
            for k in job_keys(sgit, f"refs/heads/job-{j}", j)]
    there = set(present(ana, keys))
    return lost_branches, [k for k in keys if k not in there]


def fresh_clone_fsck(ana: Path, dest: Path) -> subprocess.CompletedProcess:
    """``git annex fsck --fast --from output-storage`` in a fresh clone of the output store."""
    url = f"ria+file://{store_root(ana)}#{dataset_id(ana)}"
    sh(BIN / "datalad", "clone", url, dest)
    return sh("git", "annex", "fsck", "--fast", "--from", "output-storage", "results",
              cwd=dest, check=False)


def snapshot(ana: Path) -> dict:
    return {"store": refs(store_git(ana)), "ana": refs(ana / ".git"), "head": head(ana)}


def set_refs(git_dir: Path, want: dict[str, str]) -> None:
    now = refs(git_dir)
    lines = [f"delete {r} {sha}\n" for r, sha in now.items() if r not in want]
    lines += [f"update {r} {sha}\n" for r, sha in want.items() if now.get(r) != sha]
    if lines:
        sh("git", f"--git-dir={git_dir}", "update-ref", "--stdin", input="".join(lines))


def restore(ana: Path, snap: dict) -> None:
    """Put the store's and the analysis dataset's refs back (objects stay: a replay)."""
    set_refs(store_git(ana), snap["store"])
    sh("git", "reset", "-q", "--hard", snap["head"], cwd=ana)
    set_refs(ana / ".git", snap["ana"])


def run_contention(ana: Path, parallel: int = 16) -> dict:
    """Plan and run every job, ``parallel`` at once, into the one output store."""
    fairbig("plan", cwd=ana)
    t0 = time.monotonic()
    sub = fairbig("submit", "-j", str(parallel), cwd=ana, check=False)
    return {"ana": ana, "submit": sub, "seconds": time.monotonic() - t0}


@pytest.fixture(scope="module")
def contention(make_analysis) -> dict:
    out = run_contention(make_analysis("contention"))
    out["premerge"] = snapshot(out["ana"])
    return out


@pytest.mark.long
def test_contention_64_jobs_16_at_once_lose_nothing(contention):
    ana = contention["ana"]
    assert contention["submit"].returncode == 0, contention["submit"].stdout
    st = status(ana)
    assert st["counts"]["done"] == N_SUBJECTS, st["counts"]
    lost_branches, lost_keys = contention_losses(ana, SUBJECTS)
    assert lost_branches == [] and lost_keys == []
    sgit = store_git(ana)
    assert git(sgit, "fsck", "--no-progress", "--no-dangling").strip() == ""
    assert stale_locks(sgit) == []


def stale_locks(root: Path) -> list[str]:
    """Lock files a killed git left behind (the store's flock file is meant to stay)."""
    return sorted(str(p) for p in root.rglob("*.lock") if p.name != "fairbig-push.lock")


# ---------------------------------------------------------------- 7. merge safety

GIT_AT_STATE = """#!/bin/sh
# In front of git for one `fairbig merge`: after each git call, once the output store shows
# what $AT_STATE names, kill the merge (SIGKILL its process group) or hold it until $AT_GO
# exists ($AT_ACTION). Matched on what the merge has done to the store, not on how it
# words its git calls.
{real} "$@"
rc=$?
[ -e "$AT_HIT" ] && exit $rc
s=$AT_STORE
main=$({real} --git-dir="$s" rev-parse -q --verify "$AT_MAIN")
case $AT_STATE in
written)  # a commit the store's refs do not reach yet: the merge, unpublished
    [ "$main" = "$AT_OLD" ] && [ "$({real} --git-dir="$s" fsck --unreachable --no-reflogs \\
        --no-progress 2>/dev/null | grep -c '^unreachable commit')" -gt "$AT_UNREACHABLE" ] ;;
moved) [ "$main" != "$AT_OLD" ] ;;
annex-pushed) [ "$main" != "$AT_OLD" ] && [ "$({real} --git-dir="$s" rev-parse -q --verify \\
    refs/heads/git-annex)" != "$AT_ANNEX" ] ;;
pruned) [ "$main" != "$AT_OLD" ] && [ "$({real} --git-dir="$s" for-each-ref \\
    'refs/heads/job-*' | wc -l)" -lt "$AT_JOBS" ] ;;
*) false ;;
esac || exit $rc
touch "$AT_HIT"
if [ "$AT_ACTION" = hold ]; then
    while [ ! -e "$AT_GO" ]; do sleep 0.1; done
    exit $rc
fi
kill -KILL 0
sleep 10
"""

MERGE_KILLS = [  # (state of the output store when the merge is killed, where main must be)
    ("written", "old"),       # the merge commit is written, main has not moved
    ("moved", "new"),         # main moved: the one step that publishes
    ("annex-pushed", "new"),  # the git-annex branch reached the store too
    ("pruned", "new"),        # merged job branches deleted, refs not packed yet
]


def merge_at_state(ana: Path, tmp: Path, state: str, action: str = "kill") -> dict[str, str]:
    """Environment of a ``fairbig merge`` that a git wrapper kills or holds (until
    ``tmp/go`` exists) once the output store reaches ``state``; ``tmp/hit`` marks it."""
    sgit = store_git(ana)
    main = "refs/heads/" + sh("git", "symbolic-ref", "--short", "HEAD", cwd=ana).stdout.strip()
    now = refs(sgit)
    unreachable = sum(line.startswith("unreachable commit") for line in git(
        sgit, "fsck", "--unreachable", "--no-reflogs", "--no-progress").splitlines())
    wrap = tmp / "bin"
    wrap.mkdir(parents=True)
    (wrap / "git").write_text(GIT_AT_STATE.format(real=shutil.which("git")))
    (wrap / "git").chmod(0o755)
    return {**os.environ, "PATH": f"{wrap}:{os.environ['PATH']}", "AT_STATE": state,
            "AT_ACTION": action, "AT_HIT": str(tmp / "hit"), "AT_GO": str(tmp / "go"),
            "AT_STORE": str(sgit), "AT_MAIN": main, "AT_OLD": now[main],
            "AT_ANNEX": now.get("refs/heads/git-annex", ""),
            "AT_JOBS": str(sum(r.startswith("refs/heads/job-") for r in now)),
            "AT_UNREACHABLE": str(unreachable)}


def is_complete_merge(sgit: Path, old: str, main: str, tips: dict[str, str]) -> bool:
    chain = git(sgit, "rev-list", "--first-parent", f"{old}..{main}").split()
    if not chain or git(sgit, "rev-parse", f"{chain[-1]}^1").strip() != old:
        return False
    merged = git(sgit, "cat-file", "blob", f"{main}:.fairbig/merged.tsv").splitlines()[1:]
    if sorted(line.split("\t")[0] for line in merged) != sorted(tips):
        return False
    tree = git(sgit, "ls-tree", "--name-only", f"{main}:results").split()
    return sorted(tree) == sorted(tips) and all(
        sh("git", f"--git-dir={sgit}", "merge-base", "--is-ancestor", t, main,
           check=False).returncode == 0 for t in tips.values())


def store_records_content(ana: Path, dest: Path) -> list[str]:
    """Result files the store's git-annex branch says are in the output storage."""
    uuid = sh("git", "config", "remote.output-storage.annex-uuid", cwd=ana).stdout.strip()
    sh("git", "clone", "-q", store_git(ana), dest)
    return sh("git", "annex", "find", "--in", uuid, "results", cwd=dest).stdout.split()


@pytest.mark.parametrize(("when", "expect"), MERGE_KILLS, ids=[w for w, _ in MERGE_KILLS])
def test_merge_killed_leaves_old_or_new_main_and_rerun_completes(contention, tmp_path,
                                                                 when, expect):
    ana = contention["ana"]
    snap = contention["premerge"]
    restore(ana, snap)
    sgit = store_git(ana)
    branch = sh("git", "symbolic-ref", "--short", "HEAD", cwd=ana).stdout.strip()
    old = snap["store"][f"refs/heads/{branch}"]
    tips = {r[len("refs/heads/job-"):]: sha for r, sha in snap["store"].items()
            if r.startswith("refs/heads/job-")}
    assert len(tips) == N_SUBJECTS
    env = merge_at_state(ana, tmp_path, when)
    hit = tmp_path / "hit"
    proc = subprocess.run([str(BIN / "fairbig"), "merge"], cwd=ana, env=env,
                          capture_output=True, text=True, start_new_session=True, timeout=300)
    assert hit.exists(), f"the store never got to '{when}':\n{proc.stdout}{proc.stderr}"
    assert proc.returncode == -signal.SIGKILL
    main = git(sgit, "rev-parse", f"refs/heads/{branch}").strip()
    if expect == "old":
        assert main == old
    else:
        assert main != old and is_complete_merge(sgit, old, main, tips)
    assert stale_locks(sgit) == [] and stale_locks(ana / ".git") == []
    # the rerun finishes the job: every job merged, branches pruned, content known
    again = fairbig("merge", "--json", cwd=ana)
    assert json.loads(again.stdout)
    main2 = git(sgit, "rev-parse", f"refs/heads/{branch}").strip()
    if expect == "new":
        assert main2 == main  # nothing merged twice
    assert is_complete_merge(sgit, old, main2, tips)
    assert set(states(ana).values()) == {"merged"}
    assert git(sgit, "for-each-ref", "refs/heads/job-*") == ""
    assert head(ana) == main2 and clean_tree(ana)
    assert git(sgit, "fsck", "--no-progress", "--no-dangling").strip() == ""
    known = store_records_content(ana, tmp_path / "plain")
    assert len(known) == N_SUBJECTS


@pytest.mark.long
def test_contention_fresh_clone_fsck_after_merge(contention, tmp_path):
    ana = contention["ana"]
    out = json.loads(fairbig("merge", "--json", cwd=ana).stdout)  # completes any replay
    assert out["merged"] == [] or sorted(out["merged"]) == SUBJECTS
    assert set(states(ana).values()) == {"merged"}
    fsck = fresh_clone_fsck(ana, tmp_path / "fresh")
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck.stdout.count(" ok") >= N_SUBJECTS, fsck.stdout
    assert "fail" not in fsck.stdout.lower()


# ---------------------------------------------------------------- 5. encryption at rest

def test_encryption_at_rest_marker_nowhere_in_store(contention, tmp_path, lab_key):
    ana = contention["ana"]
    root = store_root(ana)
    secret = SECRET.encode()
    hits = [str(p) for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and secret in p.read_bytes()]
    assert hits == []
    sgit = store_git(ana)
    objects = subprocess.run(["git", f"--git-dir={sgit}", "cat-file", "--batch-all-objects",
                              "--batch"], capture_output=True, check=True).stdout
    assert b"fairbig job sub-01 (input" in objects  # the check does read inside objects
    assert secret not in objects
    annexed = [p.name for p in (sgit / "annex" / "objects").rglob("*") if p.is_file()]
    assert len(annexed) >= N_SUBJECTS
    assert all(name.startswith("GPGHMACSHA1--") for name in annexed), annexed[:3]
    # what does stay readable, as the README says: the plaintext's size and checksum
    key = job_keys(sgit, "HEAD" if "refs/heads/job-sub-01" not in refs(sgit)
                   else "refs/heads/job-sub-01", "sub-01")[0]
    plain = f"{SECRET} sub-01\n".encode()
    assert key.startswith(f"MD5E-s{len(plain)}--{hashlib.md5(plain).hexdigest()}")
    # without the lab's secret key: no content, and the reason is given
    url = f"ria+file://{root}#{dataset_id(ana)}"
    nokey = gnupg_home("nokey")
    clone = tmp_path / "clone"
    sh(BIN / "datalad", "clone", url, clone)
    env = {"GNUPGHOME": str(nokey)}
    got = sh("git", "annex", "get", "results/sub-01/out.txt", cwd=clone, env=env, check=False)
    assert got.returncode != 0
    assert not (clone / "results" / "sub-01" / "out.txt").exists()
    why = (got.stdout + got.stderr).lower()
    assert "secret key" in why or "decrypt" in why, got.stdout + got.stderr
    # with it: every output back, marker and subject inside
    got = sh(BIN / "datalad", "get", "results", cwd=clone, check=False)
    assert got.returncode == 0, got.stdout + got.stderr
    for sub in SUBJECTS:
        assert (clone / "results" / sub / "out.txt").read_text() == f"{SECRET} {sub}\n"


# ---------------------------------------------------------------- 2. kill at every step

# step: (job, tool on the job's PATH, its arguments, when the tool holds the job there)
KILL_AT = {
    "clone": ("sub-01", "git", "clone -q --no-checkout -c", "before"),
    "checkout": ("sub-02", "gpg", "--batch --quiet --import", "before"),
    "get": ("sub-03", "git", "annex get", "before"),  # fairbig.jobinstall's get
    "run": ("sub-04", "sh", "containers/fairbig-container", "before"),  # in datalad run
    "push-content": ("sub-05", "git-annex", "copy", "after"),    # content in, no branch yet
    "push-branch": ("sub-06", "git", "push", "before"),  # killed holding the push lock
    "cleanup": ("sub-07", "gpgconf", "--kill", "before"),        # branch pushed already
}

SLOW_TOOL = """#!/bin/sh
# Test wrapper: holds the job named in $ctl/<job> at this tool until it is killed.
jid=${{FAIRBIG_BACKEND_ID#local-}}
ctl={ctl}
if [ -f "$ctl/$jid" ]; then
    read -r tool when args <"$ctl/$jid"
    case "{name} $*" in
    "$tool $args"*)
        [ "$when" = after ] && {real} "$@"
        touch "$ctl/$jid.hit"
        exec sleep 600 ;;
    esac
fi
exec {real} "$@"
"""


def slow_tools(base: Path) -> tuple[Path, Path]:
    bindir, ctl = base / "slow", base / "ctl"
    bindir.mkdir()
    ctl.mkdir()
    for name in sorted({t for _, t, _, _ in KILL_AT.values()}):
        real = shutil.which(name)
        assert real, name
        (bindir / name).write_text(SLOW_TOOL.format(ctl=ctl, name=name, real=real))
        (bindir / name).chmod(0o755)
    for jid, tool, args, when in KILL_AT.values():
        (ctl / jid).write_text(f"{tool} {when} {args}\n")
    return bindir, ctl


@pytest.fixture(scope="module")
def kill_ana(make_analysis) -> Path:
    return make_analysis("kill")


@pytest.mark.long
def test_sigkill_at_every_step(kill_ana):
    ana = kill_ana
    jobs = [jid for jid, *_ in KILL_AT.values()]
    bindir, ctl = slow_tools(ana.parent)
    save_config(ana, {"job.env_setup": [f"export PATH={bindir}:$PATH"]})
    fairbig("plan", *[a for j in jobs for a in ("--only", j)], cwd=ana)  # publishes too
    sgit = store_git(ana)
    before = refs(sgit)
    state_dir = ana / ".fairbig" / "work" / "state"
    proc = subprocess.Popen([str(BIN / "fairbig"), "submit", "-j", str(len(jobs))], cwd=ana,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pending, seen = dict(KILL_AT), {}
    deadline = time.monotonic() + 420
    try:
        while pending and time.monotonic() < deadline and proc.poll() is None:
            for step, (jid, *_) in list(pending.items()):
                if (ctl / f"{jid}.hit").exists():
                    rec = json.loads((state_dir / f"{jid}.json").read_text())
                    seen[step] = rec
                    os.killpg(rec["pid"], signal.SIGKILL)
                    del pending[step]
            time.sleep(0.05)
    finally:
        for jid in jobs:  # never leave a held job behind, whatever failed
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.killpg(json.loads((state_dir / f"{jid}.json").read_text())["pid"],
                          signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    assert not pending, f"never held at {sorted(pending)}:\n{out}\n{err}"
    assert {s: r["step"] for s, r in seen.items()} == {s: s for s in KILL_AT}
    assert proc.returncode != 0 and "did not finish" in out
    # the store: no branch, or a complete one; nothing else changed
    after = refs(sgit)
    added = {r for r in after if r not in before}
    assert {r: after[r] for r in before} == before
    assert added == {f"refs/heads/job-{KILL_AT['cleanup'][0]}"}
    for ref in added:
        jid = ref[len("refs/heads/job-"):]
        keys = job_keys(sgit, ref, jid)
        assert present(ana, keys) == keys
    assert git(sgit, "fsck", "--no-progress", "--no-dangling").strip() == ""
    assert stale_locks(sgit) == []
    # status: lost where the branch never arrived, done where it did
    st = status(ana)
    by_id = {j["job_id"]: j for j in st["jobs"]}
    for step, (jid, *_) in KILL_AT.items():
        want = "done" if step == "cleanup" else "lost"
        assert by_id[jid]["state"] == want, (step, by_id[jid])
        if want == "lost":
            assert f"step {step}" in by_id[jid]["detail"]
    # every killed job's ephemeral clone is reported, then removed
    work = ana.parent / "ephemeral"
    found = json.loads(fairbig("cleanup", "--dry-run", "--json", cwd=ana).stdout)["found"]
    assert sorted(f["job_id"] for f in found) == sorted(jobs)
    assert all(Path(f["path"]).is_dir() for f in found)
    removed = json.loads(fairbig("cleanup", "--json", cwd=ana).stdout)["removed"]
    assert sorted(removed) == sorted(f["path"] for f in found)
    assert list(work.iterdir()) == []
    assert json.loads(fairbig("cleanup", "--json", cwd=ana).stdout)["found"] == []
    # and resubmitting the failures completes every job
    save_config(ana, {"job.env_setup": []})
    again = fairbig("submit", "--failed", cwd=ana, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {j: s for j, s in states(ana).items() if j in jobs} == dict.fromkeys(jobs, "done")
    lost_branches, lost_keys = contention_losses(ana, jobs)
    assert lost_branches == [] and lost_keys == []
    assert list(work.iterdir()) == []


# ---------------------------------------------------------------- 6. clean failures

FIRST8 = [f"sub-{i:02d}" for i in range(1, 9)]


def as_it_was(ana: Path) -> dict:
    """What a failed command must not change: HEAD, a clean tree, both stores' refs."""
    dsid = dataset_id(ana)
    return {"head": head(ana), "clean": clean_tree(ana), "output": refs(store_git(ana)),
            "input": refs(store_root(ana, "input") / dsid[:3] / dsid[3:])}


def submit_one(ana: Path, jid: str = "sub-08") -> list[str]:
    """``fairbig submit`` arguments that start ``jid`` (planned or failed before)."""
    fairbig("plan", *[a for j in FIRST8 for a in ("--only", j)], cwd=ana)
    state = states(ana)[jid]
    assert state in ("planned", "failed", "lost", "cancelled"), state
    return ["submit", "--only", jid, *(["--failed"] if state != "planned" else [])]


def test_bad_config_is_one_line_and_changes_nothing(kill_ana):
    ana = kill_ana
    fairbig("plan", cwd=ana)  # status and merge judge the config only of a planned analysis
    before = as_it_was(ana)
    path = ana / "fairbig.yaml"
    good = path.read_text()
    assert 'time: "01:00:00"' in good
    cases = [
        (good.replace('time: "01:00:00"', "time: forever") + "bogus: 1\n",
         ["backend.slurm.time 'forever'", "unknown setting 'bogus'"]),
        (good + "command: [unclosed\n", ["is not valid YAML"]),
        (cfgmod.render({"command": "sh -c 'echo {nosuch}'"}, good), ["{nosuch}"]),
        (cfgmod.render({"stores.output": "/not/a/ria/url"}, good), ["stores.output"]),
        # datalad could clone from it, fairbig's own reads and locks could not
        (cfgmod.render({"stores.input": "ria+ssh://host/srv/store"}, good),
         ["stores.input 'ria+ssh://host/srv/store' is not a ria+file:///absolute/path URL"]),
    ]
    try:
        for text, words in cases:
            path.write_text(text)
            for cmd in (["plan"], ["submit"], ["status"], ["merge"], ["cleanup"]):
                line = one_error_line(fairbig(*cmd, cwd=ana, check=False))
                assert all(w in line for w in words), (cmd, line)
            check = fairbig("check", cwd=ana, check=False)  # one line per check instead
            assert check.returncode != 0
            assert any(ln.startswith("FAIL config: ") and all(w in ln for w in words)
                       for ln in check.stdout.splitlines()), check.stdout
    finally:
        path.write_text(good)
    assert as_it_was(ana) == before


def test_missing_container_content_refused_before_any_job(kill_ana, image, tmp_path):
    ana = kill_ana
    submit = submit_one(ana)
    before = as_it_was(ana)
    cds = ana / "containers"
    img = "images/ukb-mini.tar"
    sh("git", "annex", "drop", "--force", "--from", "input-storage", img, cwd=cds)
    sh("git", "annex", "drop", "--force", img, cwd=cds)
    try:
        line = one_error_line(fairbig(*submit, cwd=ana, check=False))
        assert "containers/images/ukb-mini.tar" in line, line
        assert not (ana / ".fairbig" / "work" / "state" / "sub-08.json").exists()
        assert as_it_was(ana) == before
    finally:
        copy = tmp_path / "image.tar"
        shutil.copy2(image, copy)
        sh("git", "annex", "reinject", copy, img, cwd=cds)


def test_unreachable_store_is_one_line_and_changes_nothing(kill_ana):
    ana = kill_ana
    submit = submit_one(ana)
    before = as_it_was(ana)
    replan = ["plan", *[a for j in [*FIRST8, "sub-09"] for a in ("--only", j)]]  # a change
    for which, commands in (("output", (["status"], submit, ["merge"], replan)),
                            ("input", (submit, replan))):
        root = store_root(ana, which)
        away = root.with_name(root.name + ".away")
        root.rename(away)
        try:
            for cmd in commands:
                line = one_error_line(fairbig(*cmd, cwd=ana, check=False))
                assert "store" in line, (which, cmd, line)
        finally:
            away.rename(root)
    assert as_it_was(ana) == before


def test_wrong_or_missing_key(kill_ana, bids_input, image, lab_key, tmp_path):
    ana = kill_ana
    # a key that is not there: init refuses and creates nothing
    base = tmp_path / "nokey"
    base.mkdir()
    for fpr, home, words in (
            ("0123456789ABCDEF0123456789ABCDEF01234567", None, ["not in your keyring"]),
            (None, gnupg_home("signonly"), ["cannot encrypt"])):
        env = {}
        if home is not None:
            env["GNUPGHOME"] = str(home)
            sh("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "sign only <s@x.org>",
               "ed25519", "sign", "never", env=env)
            fpr = next(ln.split(":")[9] for ln in sh(
                "gpg", "--batch", "--with-colons", "--list-keys", env=env).stdout.splitlines()
                if ln.startswith("fpr"))
        proc = fairbig("init", str(base / "ana"), "--input", bids_input["url"], "--container",
                       str(image), "--command", PIPELINE, "--input-store", f"{base}/in",
                       "--output-store", f"{base}/out", "--encrypt-to", fpr, "--layout", "bids",
                       check=False, env=env)
        line = one_error_line(proc)
        assert all(w in line for w in words), line
        assert sorted(p.name for p in base.iterdir()) == []
    # no key here: check says so, with the fix
    empty = gnupg_home("empty")
    proc = fairbig("check", cwd=ana, check=False, env={"GNUPGHOME": str(empty)})
    assert proc.returncode != 0
    bad = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAIL")]
    assert len(bad) == 1 and "encryption key" in bad[0] and "gpg --import" in bad[0], proc.stdout
    # a config that names another key than the one the store encrypts to is refused
    submit = submit_one(ana)
    before = as_it_was(ana)
    other = gnupg_home("other")
    other_fpr = make_key(other, "another lab")
    exported = sh("gpg", "--batch", "--armor", "--export", other_fpr,
                  env={"GNUPGHOME": str(other)}).stdout
    sh("gpg", "--batch", "--import", input=exported)
    path = ana / "fairbig.yaml"
    good = path.read_text()
    try:
        path.write_text(cfgmod.render({"encryption.keys": [other_fpr]}, good))
        line = one_error_line(fairbig(*submit, cwd=ana, check=False))
        assert other_fpr[-16:] in line and lab_key[-16:] in line, line
    finally:
        path.write_text(good)
    assert as_it_was(ana) == before


def test_disk_full_ephemeral_dir_fails_cleanly(kill_ana):
    ana = kill_ana
    tiny = ana.parent / "tiny"
    tiny.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", tiny)
    try:
        save_config(ana, {"job.workdir": str(tiny)})
        submit = submit_one(ana)  # publishes the new config
        sgit = store_git(ana)
        before = refs(sgit)
        proc = fairbig(*submit, cwd=ana, check=False)
        assert proc.returncode != 0 and "sub-08" in proc.stdout
        st = status(ana)
        job = next(j for j in st["jobs"] if j["job_id"] == "sub-08")
        assert job["state"] == "failed", job
        tail = st["failures"]["sub-08"]
        assert any("No space left on device" in ln or "not enough free space" in ln
                   for ln in tail), tail
        assert f"  sub-08  log: {ana}/.fairbig/work/logs/sub-08.log" in fairbig(
            "status", cwd=ana, check=False).stdout.splitlines()
        assert refs(sgit) == before
        assert list(tiny.iterdir()) == []
    finally:
        sh("umount", tiny)
        save_config(ana, {"job.workdir": str(ana.parent / "ephemeral")})


# ---------------------------------------------------------------- 4. hostile input

HOSTILE = ["sub-with space", "sub-quote'd", 'sub-dq"x', "sub-semi;touch PWNED-semi",
           "sub-$(touch PWNED-subst)", "sub-`touch PWNED-tick`", "sub-new\nline", "sub-..",
           "sub-ü", "sub-x.lock", "sub--rf"]  # BIDS labels are letters and digits only
ODD_BUT_FINE = ["sub-ok"]


def pwned(*roots: Path) -> list[str]:
    return sorted(str(p) for r in roots for p in r.rglob("PWNED*") if p.is_file())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, image, lab_key) -> dict:
    """An input dataset with hostile subject folders; the analysis at a path with a space
    and a quote."""
    base = tmp_path_factory.mktemp("hostile")
    ds = base / "input"
    sh(BIN / "datalad", "create", "-c", "text2git", ds)
    (ds / "dataset_description.json").write_text('{"Name": "hostile"}\n')
    for name in [*HOSTILE, *ODD_BUT_FINE, "-rf --help"]:
        (ds / name / "anat").mkdir(parents=True)
        (ds / name / "anat" / "T1w.txt").write_text(f"T1w of {name}\n")
    sh("git", "add", "-A", cwd=ds)
    sh("git", "commit", "-q", "-m", "hostile subjects", cwd=ds)
    ana = base / "my analysis 'x'"
    fairbig("init", str(ana), "--input", str(ds), "--container", str(image), "--command",
            PIPELINE, "--input-store", f"{base}/in-store", "--output-store",
            f"{base}/out-store", "--encrypt-to", lab_key, "--layout", "bids")
    return {"base": base, "ana": ana}


def test_hostile_subject_names_refused_in_one_line_then_excluded(hostile):
    ana, base = hostile["ana"], hostile["base"]
    before = head(ana)
    line = one_error_line(fairbig("plan", cwd=ana, check=False))
    assert line.startswith(f"fairbig: error: {len(HOSTILE)} folder(s) of the input dataset "
                           "are no valid BIDS labels"), line
    named = [n for n in HOSTILE if repr(n) in line]  # the first few are named
    assert named and not any(repr(n) in line for n in ODD_BUT_FINE), line
    assert "--exclude" in line
    assert head(ana) == before and not (ana / ".fairbig" / "plan.tsv").exists()
    out = json.loads(fairbig("plan", "--json", *[a for n in HOSTILE for a in ("--exclude", n)],
                             cwd=ana).stdout)
    assert sorted(out["new"]) == sorted(ODD_BUT_FINE)  # "-rf --help" is no subject at all
    assert pwned(base) == []


HOSTILE_SETTINGS = [
    ({"backend.slurm.partition": "x; touch {m}"}, "backend.slurm.partition"),
    ({"backend.slurm.account": "$(touch {m})"}, "backend.slurm.account"),
    ({"backend.slurm.qos": "`touch {m}`"}, "backend.slurm.qos"),
    ({"backend.slurm.time": "1:00:00\ntouch {m}"}, "backend.slurm.time"),
    ({"backend.slurm.mem": "4G;touch {m}"}, "backend.slurm.mem"),
    ({"backend.slurm.extra": ["#SBATCH --x\ntouch {m}"]}, "backend.slurm.extra[0]"),
    ({"backend.slurm.extra": ["#SBATCH --x=$(touch {m})"]}, "backend.slurm.extra[0]"),
    ({"backend.htcondor.extra": ["a = 1\nexecutable = /bin/sh"]}, "backend.htcondor.extra[0]"),
    ({"job.workdir": "/tmp/x\ntouch {m}"}, "job.workdir"),
    ({"job.workdir": "relative/$(touch {m})"}, "job.workdir"),
]


def test_hostile_settings_refused_or_quoted_and_nothing_ran(hostile):
    ana, base = hostile["ana"], hostile["base"]
    if not (ana / ".fairbig" / "plan.tsv").exists():
        fairbig("plan", *[a for n in HOSTILE for a in ("--exclude", n)], cwd=ana)
    marker = base / "PWNED-setting"
    path = ana / "fairbig.yaml"
    good = path.read_text()
    try:
        for updates, name in HOSTILE_SETTINGS:
            values = {k: [x.format(m=marker) for x in v] if isinstance(v, list)
                      else v.format(m=marker) for k, v in updates.items()}
            path.write_text(cfgmod.render(values, good))
            for cmd in (["submit", "--backend", "slurm", "--dry-run"], ["submit"]):
                line = one_error_line(fairbig(*cmd, cwd=ana, check=False))
                assert name in line, (updates, line)
    finally:
        path.write_text(good)
    assert clean_tree(ana)
    # carried through quoted: a work dir full of shell, a SLURM script that parses
    workdir = (f"{base}/work dir 'q\" $(touch {base}/PWNED-subst) `touch {base}/PWNED-tick`;"
               f" touch {base}/PWNED-semi")
    save_config(ana, {"job.workdir": workdir, "backend.slurm.partition": "debug",
                      "backend.slurm.extra": ["#SBATCH --comment=fine"]})
    dry = fairbig("submit", "--backend", "slurm", "--dry-run", "--json", cwd=ana)
    script = Path(json.loads(dry.stdout)["run_dir"]) / "job.sh"
    assert sh("bash", "-n", script).returncode == 0
    header = [ln for ln in script.read_text().splitlines() if ln.startswith("#SBATCH")]
    assert "#SBATCH --partition=debug" in header and "#SBATCH --comment=fine" in header
    # sbatch splits #SBATCH lines at spaces: the analysis path (with a space) is not in one
    assert all(len(ln.split()) == 2 for ln in header), header
    sbatch = shlex.split((script.parent / "submit.sh").read_text().splitlines()[-1])
    assert f"--output={script.parent}/slurm-%A_%a.out" in sbatch
    probe = sh("bash", "-c", f"eval \"$(grep '^workdir_base=' {json.dumps(str(script))})\";"
               " printf %s \"$workdir_base\"")
    assert probe.stdout == workdir
    # a real job under that work dir, in an analysis whose path has a space and a quote
    sub = fairbig("submit", "--only", "sub-ok", cwd=ana, check=False)
    assert sub.returncode == 0, sub.stdout + sub.stderr + "\n".join(
        status(ana)["failures"].get("sub-ok", []))
    assert states(ana)["sub-ok"] == "done"
    assert pwned(base) == []
    assert not any(Path(workdir).iterdir())


# ---------------------------------------------------------------- 3. the push lock

def locked_push_rounds(base: Path, pushers: int = 20, rounds: int = 3,
                       with_prune: bool = True) -> dict:
    """``pushers`` clones push distinct branches at once under the store's flock, as the
    job body does, ``rounds`` times; meanwhile (``with_prune``) the merged branches of
    the previous round are deleted and refs packed, as ``fairbig merge`` does."""
    store = base / "store.git"
    sh("git", "init", "-q", "--bare", store)
    seed = base / "seed"
    sh("git", "init", "-q", seed)
    (seed / "README").write_text("base\n")
    sh("git", "-C", seed, "add", "README")
    sh("git", "-C", seed, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "b")
    sh("git", "-C", seed, "push", "-q", store, "HEAD:refs/heads/master")
    clones = []
    for i in range(pushers):
        c = base / f"clone-{i}"
        sh("git", "clone", "-q", store, c)
        clones.append(c)
    lock = base / "fairbig-push.lock"
    lost: list[str] = []
    expected: dict[str, str] = {}
    for r in range(rounds):
        want = {}
        for i, c in enumerate(clones):
            branch = f"job-r{r}-{i}"
            (c / f"out-{r}-{i}.txt").write_bytes(os.urandom(2048))
            sh("git", "-C", c, "checkout", "-q", "-B", branch, "origin/master")
            sh("git", "-C", c, "add", "-A")
            sh("git", "-C", c, "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q",
               "-m", branch)
            want[f"refs/heads/{branch}"] = sh("git", "-C", c, "rev-parse", "HEAD").stdout.strip()
        procs = [subprocess.Popen(["flock", str(lock), "git", "-C", str(c), "push", "-q",
                                   "origin", f"+refs/heads/job-r{r}-{i}:refs/heads/job-r{r}-{i}"],
                                  stderr=subprocess.PIPE) for i, c in enumerate(clones)]
        if with_prune and expected:
            old = "".join(f"delete {ref} {sha}\n" for ref, sha in expected.items())
            sh("git", f"--git-dir={store}", "update-ref", "--stdin", input=old)
            sh("git", f"--git-dir={store}", "pack-refs", "--all")
        failed = [p.stderr.read().decode() for p in procs if p.wait() != 0]
        assert failed == [], failed
        have = refs(store)
        lost += [ref for ref, sha in want.items() if have.get(ref) != sha]
        expected = want if with_prune else {**expected, **want}
    fsck = sh("git", f"--git-dir={store}", "fsck", "--strict", "--no-progress", check=False)
    return {"lost": lost, "fsck": fsck.returncode, "fsck_out": fsck.stdout + fsck.stderr,
            "locks": stale_locks(store), "branches": pushers * rounds}


def test_concurrent_locked_pushes_never_lose_a_branch(tmp_path):
    res = locked_push_rounds(tmp_path, pushers=20, rounds=3)
    assert res["lost"] == []
    assert res["fsck"] == 0, res["fsck_out"]
    assert res["locks"] == []
