"""compare: per-file and per-job statuses from trees and keys, no content."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fairbig.compare import compare, compare_sides, file_status, resolve_side
from fairbig.errors import FairbigError

K1 = "MD5E-s3--0123456789abcdef0123456789abcdef.txt"
K2 = "MD5E-s3--fedcba9876543210fedcba9876543210.txt"
K3 = "SHA256E-s3--" + "a" * 64 + ".txt"


def link(key: str) -> str:
    return f"../../.git/annex/objects/Xx/Yy/{key}/{key}"


def commit(repo: Path, ref: str, files: dict[str, str], links: dict[str, str]) -> None:
    """One commit on ``ref`` with plain files and annex symlinks, via fast-import."""
    out = [f"commit refs/heads/{ref}\ncommitter t <t@t> 0 +0000\ndata 1\nx\n"]
    for path, text in files.items():
        out.append(f"M 100644 inline {path}\ndata {len(text)}\n{text}\n")
    for path, key in links.items():
        out.append(f"M 120000 inline {path}\ndata {len(link(key))}\n{link(key)}\n")
    subprocess.run(["git", f"--git-dir={repo}", "fast-import", "--quiet"],
                   input="".join(out).encode(), check=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(r)], check=True)
    commit(r, "a", {"results/s1/x.txt": "1", "results/s3/y.txt": "y"},
           {"results/s1/k.txt": K1, "results/s2/k.txt": K1, "results/s4/k.txt": K1})
    commit(r, "b", {"results/s1/x.txt": "1", "results/s3/y.txt": "Y"},
           {"results/s1/k.txt": K1, "results/s2/k.txt": K2, "results/s4/k.txt": K3,
            "results/s5/k.txt": K1})
    return r


def test_statuses_per_file_and_job(repo: Path):
    comp = compare_sides(f"{repo}@a", f"{repo}@b")
    assert comp.units == {"results/s1": "identical", "results/s2": "differs",
                          "results/s3": "differs", "results/s4": "differs",
                          "results/s5": "only-in-B"}
    assert dict(comp.problems()) == {"results/s2/k.txt": "differs",
                                     "results/s3/y.txt": "differs",
                                     "results/s4/k.txt": "undecidable",
                                     "results/s5/k.txt": "only-in-B"}
    assert comp.summary["files"]["identical"] == 2 and not comp.identical


def test_identical_refs(repo: Path):
    comp = compare_sides(f"{repo}@a", f"{repo}@a")
    assert comp.identical and comp.summary["units"]["identical"] == 4


def test_pure_compare_and_file_status():
    assert file_status(K1, K1) == "identical"
    assert file_status(K1, K2) == "differs"
    assert file_status(K1, K3) == "undecidable"
    assert file_status("git:aa", K1) == "differs"
    assert file_status(None, K1) == "only-in-B"
    comp = compare({"results/j/a": K1}, {"results/j/a": K1, "results/k/b": K2})
    assert comp.units == {"results/j": "identical", "results/k": "only-in-B"}


def test_ria_resolution_and_errors(tmp_path: Path, repo: Path):
    dsid = "0123abcd-0000-0000-0000-000000000000"
    store = tmp_path / "store"
    (store / dsid[:3]).mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", "--mirror", str(repo),
                    str(store / dsid[:3] / dsid[3:])], check=True)
    side = resolve_side(f"ria+file://{store}#{dsid}@a")
    assert side.git_dir == store / dsid[:3] / dsid[3:]
    with pytest.raises(ValueError, match="ref 'nope' not found"):
        resolve_side(f"{repo}@nope")
    with pytest.raises(ValueError, match="names no dataset"):
        resolve_side(f"ria+file://{store}")
    with pytest.raises(FairbigError, match="does not exist"):
        compare_sides(str(tmp_path / "missing"), str(repo))
