"""Location records written straight into the git-annex branch (``annexlog``): the
same files git-annex's own ``setpresentkey`` writes, read back by git-annex itself, on
real repositories with the pinned git-annex."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from fairbig import annexlog

UUID = "0a0a0a0a-1111-2222-3333-444444444444"
OTHER = "5b5b5b5b-6666-7777-8888-999999999999"
KEYS = ["SHA256E-s6--" + "ab" * 32 + ".nii.gz", "MD5E-s0--d41d8cd98f00b204e9800998ecf8427e",
        "WORM-s3-m1700000000--notes.v2.txt", "SHA1-s12--" + "0f" * 20]


def run(repo: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(args, cwd=repo, input=input, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git-annex repository with a special remote ``store`` (uuid :data:`UUID`)."""
    repo = tmp_path / "r"
    repo.mkdir()
    run(repo, "git", "init", "-q")
    run(repo, "git", "annex", "init", "-q", "r")
    (tmp_path / "d").mkdir()
    run(repo, "git", "annex", "initremote", "-q", "store", "type=directory",
        f"directory={tmp_path / 'd'}", "encryption=none", f"uuid={UUID}")
    return repo


def logs(repo: Path, keys: list[str]) -> list[str]:
    return [run(repo, "git", "show", f"git-annex:{annexlog.log_path(k)}") for k in keys]


def where(repo: Path, keys: list[str]) -> list[list[str]]:
    """git-annex's own answer: the UUIDs holding each key."""
    out = run(repo, "git", "annex", "whereis", "--json", "--batch-keys",
              input="".join(f"{k}\n" for k in keys))
    return [sorted(w["uuid"] for w in json.loads(line)["whereis"])
            for line in out.splitlines()]


def test_log_paths_are_git_annex_hash_directories(repo: Path):
    out = run(repo, "git", "annex", "examinekey", "--batch",
              "--format=${hashdirlower}${key}.log\n", input="".join(f"{k}\n" for k in KEYS))
    assert out.splitlines() == [annexlog.log_path(k) for k in KEYS]


def test_records_are_setpresentkeys_records(repo: Path, tmp_path: Path):
    twin = tmp_path / "twin"
    subprocess.run(["cp", "-a", str(repo), str(twin)], check=True)
    run(twin, "git", "annex", "setpresentkey", "--batch",
        input="".join(f"{k} {UUID} 1\n" for k in KEYS))
    run(twin, "git", "annex", "merge")   # commits the journal setpresentkey leaves
    before = run(repo, "git", "rev-parse", "git-annex")

    annexlog.record_present(repo, "store", KEYS)

    stamp = re.compile(r"^\d+s ", re.M)
    ours, theirs = logs(repo, KEYS), logs(twin, KEYS)
    assert [stamp.sub("T ", t) for t in ours] == [stamp.sub("T ", t) for t in theirs] \
        == [f"T 1 {UUID}\n"] * len(KEYS)
    assert run(repo, "git", "rev-parse", "git-annex^") == before   # one commit on top
    assert where(repo, KEYS) == [[UUID]] * len(KEYS)


def test_a_record_of_absence_is_overtaken_and_other_lines_kept(repo: Path):
    key = KEYS[0]
    future = 4_000_000_000
    path = annexlog.log_path(key)
    # a log as a clone with a fast clock left it: the store dropped the key, another
    # repository has it
    log = f"{future}s 0 {UUID}\n{future - 5}s 1 {OTHER}\n"
    head = run(repo, "git", "rev-parse", "git-annex").strip()
    run(repo, "git", "fast-import", "--quiet", input=(
        f"commit refs/heads/git-annex\ncommitter t <t> 0 +0000\ndata 1\nm\nfrom {head}\n"
        f"M 100644 inline {path}\ndata {len(log)}\n{log}\n"))

    annexlog.record_present(repo, "store", [key])

    assert logs(repo, [key]) == [f"{future - 5}s 1 {OTHER}\n{future + 1}s 1 {UUID}\n"]
    assert where(repo, [key]) == [sorted([UUID, OTHER])]


def test_keys_recorded_already_make_no_commit(repo: Path):
    annexlog.record_present(repo, "store", KEYS)
    tip = run(repo, "git", "rev-parse", "git-annex")
    annexlog.record_present(repo, "store", KEYS[::-1])
    assert run(repo, "git", "rev-parse", "git-annex") == tip


def test_another_git_annex_version_records_through_setpresentkey(repo: Path, monkeypatch):
    monkeypatch.setattr(annexlog, "annex_version", lambda: "8.20210223")
    monkeypatch.setattr(annexlog, "_write", lambda *a: pytest.fail("wrote the branch"))
    annexlog.record_present(repo, "store", KEYS)
    assert where(repo, KEYS) == [[UUID]] * len(KEYS)


def test_a_journal_left_meanwhile_is_left_to_setpresentkey(repo: Path):
    """A journal file would replace the record written beside it when git-annex commits
    it: with one there, nothing is written and the caller falls back."""
    run(repo, "git", "-c", "annex.alwayscommit=false", "annex", "setpresentkey", KEYS[0],
        OTHER, "1")
    assert list((repo / ".git/annex/journal").iterdir())
    tip = run(repo, "git", "rev-parse", "git-annex")
    assert annexlog._write(repo / ".git", UUID, KEYS) is False
    assert run(repo, "git", "rev-parse", "git-annex") == tip

    annexlog.record_present(repo, "store", KEYS)   # its git annex merge commits the journal
    assert where(repo, KEYS) == [sorted([UUID, OTHER])] + [[UUID]] * 3


@pytest.mark.parametrize(("log", "expected"), [
    ("", f"100s 1 {UUID}\n"),
    (f"90s 1 {UUID}\n", None),
    (f"90s 0 {UUID}\n80s 1 {UUID}\n", f"100s 1 {UUID}\n"),
    (f"80s 0 {UUID}\n90s 1 {UUID}\n", None),
    (f"90s 1 {OTHER}\n", f"90s 1 {OTHER}\n100s 1 {UUID}\n"),
    (f"1287290776.765152s 0 {UUID}\n", f"100s 1 {UUID}\n"),
    (f"150.5s X {UUID}\n", f"151s 1 {UUID}\n"),
    (f"100s 0 {UUID}\n", f"101s 1 {UUID}\n"),
])
def test_with_present(log: str, expected: str | None):
    now = 100 if "1287290776" not in log else 1_800_000_000
    if expected and now != 100:
        expected = expected.replace("100s", f"{now}s")
    assert annexlog.with_present(log, UUID, now) == expected
