"""The analysis dataset follows the store's main: fast_forward's index-only path and
the ``read-tree`` it leaves everything else to, on real git repositories."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fairbig import proc, sync
from fairbig.errors import FairbigError
from fairbig.gitcmd import diff_tree


def git(repo: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, input=input, capture_output=True,
                          text=True, check=True).stdout


def write(repo: Path, files: dict[str, str | None]) -> str:
    """Commit ``files`` (None: delete; a value starting '->' is a symlink); the commit."""
    for name, text in files.items():
        path = repo / name
        if text is None:
            git(repo, "rm", "-q", "--sparse", "--", name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        if text.startswith("->"):
            path.symlink_to(text[2:])
        else:
            path.write_text(text)
        git(repo, "add", "--sparse", "--", name)
    git(repo, "commit", "-q", "--no-verify", "-m", "c")
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repos(tmp_path: Path) -> dict:
    """An analysis-like repository at commit ``a`` (results left out), and ``b``: a
    merge's change (a job's results added, another job's replaced, merged.tsv edited)."""
    root = tmp_path / "ana"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.name", "t")
    git(root, "config", "user.email", "t@t")
    a = write(root, {"code/run.sh": "echo\n", ".fairbig/merged.tsv": "job_id\n",
                     "results/j1/a.txt": "1\n", "results/j1/old.txt": "o\n"})
    sync.leave_out_results(root, "results")
    b = write(root, {"results/j2/a.txt": "2\n", "results/j2/k.txt": "->../../x/KEY",
                     "results/j1/a.txt": "1b\n", "results/j1/old.txt": None,
                     ".fairbig/merged.tsv": "job_id\nj1\nj2\n"})
    git(root, "reset", "-q", "--hard", a)
    return {"root": root, "a": a, "b": b}


def forward(repos: dict, monkeypatch) -> list[list[str]]:
    """fast_forward from a to b; the commands it ran."""
    ran: list[list[str]] = []
    real = proc.run

    def spy(cmd, **kw):
        ran.append([str(c) for c in cmd])
        return real(cmd, **kw)

    monkeypatch.setattr(sync, "run", spy)
    root = repos["root"]
    changes = list(diff_tree(root / ".git", repos["a"], repos["b"]))
    sync.fast_forward(root, repos["a"], repos["b"], changes, "results")
    return ran


def staged_like_read_tree(root: Path) -> tuple[str, str]:
    """The index with its flags (``ls-files -s -t``) and ``git status``."""
    return (git(root, "ls-files", "-s", "-t"),
            git(root, "status", "--porcelain", "--untracked-files=all"))


def test_merge_changes_reach_the_index_without_read_tree(repos, monkeypatch, tmp_path):
    """A merge's change is written into the index entry by entry: results skip-worktree,
    merged.tsv checked out, HEAD moved; the same index and status as ``read-tree -m -u``
    gives (run on a copy), and no ``read-tree``, no lock left."""
    root = repos["root"]
    twin = tmp_path / "twin"
    subprocess.run(["cp", "-a", str(root), str(twin)], check=True)
    ran = forward(repos, monkeypatch)
    assert not [c for c in ran if "read-tree" in c]
    assert git(root, "rev-parse", "HEAD").strip() == repos["b"]
    assert git(root, "diff-index", "--cached", repos["b"]) == ""
    assert (root / ".fairbig" / "merged.tsv").read_text() == "job_id\nj1\nj2\n"
    assert not (root / "results").exists()
    assert not (root / ".git" / "index.lock").exists()
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    subprocess.run(["git", "update-index", "-q", "--refresh"], cwd=twin)  # a copy's stat
    git(twin, "read-tree", "-m", "-u", repos["a"], repos["b"])
    git(twin, "update-ref", "HEAD", repos["b"])
    assert staged_like_read_tree(root) == staged_like_read_tree(twin)
    assert {line[0] for line in git(root, "ls-files", "-t", "results").splitlines()} == {"S"}


@pytest.mark.parametrize("how", ["unstaged", "staged", "untracked in the way"])
def test_a_local_change_in_the_way_is_refused_in_one_line(repos, monkeypatch, how):
    """A local change to a file the merge changes, staged or not, or an untracked file
    where the merge adds one (which ``read-tree -m -u`` overwrites in a sparse checkout):
    refused in one line naming it; HEAD, index and the file unchanged."""
    root = repos["root"]
    if how == "untracked in the way":
        git(root, "rm", "-q", "--cached", ".fairbig/merged.tsv")
        git(root, "commit", "-q", "--no-verify", "-m", "no table")
        repos["a"] = git(root, "rev-parse", "HEAD").strip()
        # the merge (from the new a) adds merged.tsv, which is there untracked
        repos["b"] = write(root, {".fairbig/merged.tsv": "job_id\nj1\nj2\n",
                                  "results/j2/a.txt": "2\n"})
        git(root, "reset", "-q", "--hard", repos["a"])
        (root / ".fairbig").mkdir()
    (root / ".fairbig" / "merged.tsv").write_text("mine\n")
    if how == "staged":
        git(root, "add", ".fairbig/merged.tsv")
        (root / ".fairbig" / "merged.tsv").write_text("job_id\n")  # staged only
    before = (git(root, "ls-files", "-s", "-t"),
              (root / ".fairbig" / "merged.tsv").read_text())
    with pytest.raises(FairbigError) as err:
        forward(repos, monkeypatch)
    assert err.value.message == f"1 local change(s) in the analysis dataset {root} where " \
        "the merged main changes files, first: .fairbig/merged.tsv"
    assert git(root, "rev-parse", "HEAD").strip() == repos["a"]
    assert (git(root, "ls-files", "-s", "-t"),
            (root / ".fairbig" / "merged.tsv").read_text()) == before


def test_own_sparse_patterns_are_left_to_read_tree(repos, monkeypatch):
    """A user who checked a job's results out (``sparse-checkout add``) gets the merged
    ones written there, as read-tree does."""
    root = repos["root"]
    git(root, "sparse-checkout", "add", "/results/j2/")
    ran = forward(repos, monkeypatch)
    assert [c for c in ran if "read-tree" in c]
    assert (root / "results" / "j2" / "a.txt").read_text() == "2\n"
    assert git(root, "status", "--porcelain") == ""


def test_index_lock_held_by_another_git_is_one_line(repos, monkeypatch):
    root = repos["root"]
    (root / ".git" / "index.lock").write_text("")
    before = git(root, "ls-files", "-s", "-t")
    with pytest.raises(FairbigError) as err:
        forward(repos, monkeypatch)
    assert err.value.message == (
        "another git process is changing the analysis dataset's index "
        f"({root / '.git' / 'index.lock'} exists)")
    assert git(root, "rev-parse", "HEAD").strip() == repos["a"]
    os.unlink(root / ".git" / "index.lock")
    assert git(root, "ls-files", "-s", "-t") == before
