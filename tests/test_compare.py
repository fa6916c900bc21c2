"""compare: two computations from git trees and annex keys, in real repositories."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from fairbig import gitcmd
from fairbig.commands import compare as cmp
from fairbig.commands.compare import (
    DIFFERS,
    IDENTICAL,
    ONLY_A,
    ONLY_B,
    UNDECIDABLE,
    Side,
    compare,
    compare_sides,
    compare_trees,
    file_status,
    read_results,
    resolve_side,
)
from fairbig.errors import FairbigError

K1 = "MD5E-s3--0123456789abcdef0123456789abcdef.txt"
K2 = "MD5E-s3--fedcba9876543210fedcba9876543210.txt"
K_SHA = "SHA256E-s3--" + "a" * 64 + ".txt"
K_SHA_BIG = "SHA256E-s4000--" + "b" * 64 + ".txt"
DSID = "0123abcd-4567-89ab-cdef-0123456789ab"

Files = dict[str, tuple[str, str]]   # path -> (mode, blob content)


def annex(key: str, depth: int = 2) -> tuple[str, str]:
    return "120000", "../" * depth + f".git/annex/objects/Xx/Yy/{key}/{key}"


def text(content: str, mode: str = "100644") -> tuple[str, str]:
    return mode, content


def symlink(target: str) -> tuple[str, str]:
    return "120000", target


def commit(git_dir: Path, ref: str, files: Files, message: str = "x") -> None:
    """One commit on ``ref`` holding exactly ``files``, through ``git fast-import``."""
    out = [f"commit refs/heads/{ref}\ncommitter t <t@t> 0 +0000\n"
           f"data {len(message)}\n{message}\ndeleteall\n"]
    for path, (mode, content) in files.items():
        data = content.encode()
        out.append(f"M {mode} inline {path}\ndata {len(data)}\n{content}\n")
    subprocess.run(["git", f"--git-dir={git_dir}", "fast-import", "--quiet"],
                   input="".join(out).encode(), check=True)


def bare(path: Path, **refs: Files) -> Path:
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    for ref, files in refs.items():
        commit(path, ref, files, message=f"{path.name} {ref}")
    return path


def both_ways(sa: Side, sb: Side) -> cmp.Comparison:
    """compare_trees, checked against the pure compare of two full reads."""
    fast = compare_trees(sa, sb)
    full = compare(read_results(sa), read_results(sb))
    assert fast.to_json(all_files=True) == full.to_json(all_files=True)
    return fast


BASE: Files = {
    "results/s1/k.txt": annex(K1),
    "results/s1/log.txt": text("ok\n"),
    "results/s2/k.txt": annex(K2),
    "results/s2/deep/d.txt": annex(K1, depth=3),
    "code/run.sh": text("echo\n"),
}


# ---------------------------------------------------------------- reading


def test_read_results_gives_keys_blobs_and_links(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main={
        **BASE, "results/s3/other": symlink("../s1/log.txt"),
        "results/s3/é nö.txt": annex(K2)})
    got = read_results(resolve_side(str(repo)))
    blob = subprocess.run(["git", f"--git-dir={repo}", "rev-parse", "main:results/s1/log.txt"],
                          capture_output=True, text=True, check=True).stdout.strip()
    link = subprocess.run(["git", f"--git-dir={repo}", "rev-parse", "main:results/s3/other"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert got == {"results/s1/k.txt": K1, "results/s1/log.txt": f"git:{blob}",
                   "results/s2/deep/d.txt": K1, "results/s2/k.txt": K2,
                   "results/s3/other": f"link:{link}", "results/s3/é nö.txt": K2}
    assert list(got) == sorted(got)   # tree order, placeholders replaced in place


def test_read_results_runs_one_ls_tree_and_one_cat_file(tmp_path: Path, monkeypatch):
    files = {f"results/s{i}/f{j}.txt": annex(f"MD5E-s1--{i:016x}{j:016x}.txt")
             for i in range(40) for j in range(5)}
    repo = bare(tmp_path / "r.git", main=files)
    side = resolve_side(str(repo))
    calls = []
    real = gitcmd.stream

    def spy(git_dir, args, *rest, **kwargs):
        calls.append(next(a for a in args if not a.startswith("-")))   # the git command
        return real(git_dir, args, *rest, **kwargs)

    monkeypatch.setattr(gitcmd, "stream", spy)
    assert len(read_results(side)) == 200
    assert calls == ["ls-tree", "cat-file"]


def test_streams_split_across_any_chunk_boundary(tmp_path: Path, monkeypatch):
    repo = bare(tmp_path / "r.git", main={**BASE, "results/s3/x": symlink("nowhere")})
    side = resolve_side(str(repo))
    whole = read_results(side)
    for size in (1, 7, 64):
        monkeypatch.setattr(gitcmd, "CHUNK", size)
        assert read_results(side) == whole


def test_missing_symlink_blob_is_reported(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main=BASE)

    def git(*args: str, input: str = "") -> str:
        return subprocess.run(["git", f"--git-dir={repo}", *args], input=input, text=True,
                              capture_output=True, check=True).stdout.strip()

    sub = git("mktree", "--missing", input=f"120000 blob {'1' * 40}\tk.txt\n")
    results = git("mktree", input=f"040000 tree {sub}\ts1\n")
    top = git("mktree", input=f"040000 tree {results}\tresults\n")
    head = git("commit-tree", top, "-m", "broken")
    with pytest.raises(FairbigError, match=f"object {'1' * 40} is missing"):
        read_results(Side(repo, head))


# ---------------------------------------------------------------- comparing repositories


def test_identical_computations_in_two_repositories(tmp_path: Path):
    sa = resolve_side(str(bare(tmp_path / "a.git", main=BASE)))
    sb = resolve_side(str(bare(tmp_path / "b.git", main=BASE)))
    assert sa.ref != sb.ref   # different commits, same results
    comp = both_ways(sa, sb)
    assert comp.identical and not list(comp.problems())
    assert comp.units == {"results/s1": IDENTICAL, "results/s2": IDENTICAL}
    assert comp.summary["files"] == {IDENTICAL: 4, DIFFERS: 0, UNDECIDABLE: 0,
                                     ONLY_A: 0, ONLY_B: 0}
    assert comp.files == dict.fromkeys(sorted(read_results(sa)), IDENTICAL)
    data = comp.to_json()
    assert data["files"] == {} and data["identical"] is True
    assert json.dumps(data, sort_keys=True) == json.dumps(compare_trees(sa, sb).to_json(),
                                                          sort_keys=True)


def test_one_file_differs_in_one_subject(tmp_path: Path):
    sa = resolve_side(str(bare(tmp_path / "a.git", main=BASE)))
    sb = resolve_side(str(bare(tmp_path / "b.git",
                               main={**BASE, "results/s2/deep/d.txt": annex(K2, depth=3)})))
    comp = both_ways(sa, sb)
    assert not comp.identical
    assert comp.units == {"results/s1": IDENTICAL, "results/s2": DIFFERS}
    assert list(comp.problems()) == [("results/s2/deep/d.txt", DIFFERS)]
    assert comp.summary["units"][DIFFERS] == 1 and comp.summary["files"][IDENTICAL] == 3


def test_subjects_and_files_on_one_side_only(tmp_path: Path):
    a = {**BASE, "results/s3/k.txt": annex(K1)}
    b = {k: v for k, v in BASE.items() if k != "results/s2/k.txt"}
    b |= {"results/s1/extra.txt": annex(K2), "results/s4/k.txt": annex(K1),
          "results/s4/more.txt": text("m")}
    comp = both_ways(resolve_side(str(bare(tmp_path / "a.git", main=a))),
                     resolve_side(str(bare(tmp_path / "b.git", main=b))))
    assert comp.units == {"results/s1": DIFFERS, "results/s2": DIFFERS,
                          "results/s3": ONLY_A, "results/s4": ONLY_B}
    assert dict(comp.problems()) == {
        "results/s1/extra.txt": ONLY_B, "results/s2/k.txt": ONLY_A,
        "results/s3/k.txt": ONLY_A, "results/s4/k.txt": ONLY_B, "results/s4/more.txt": ONLY_B}
    assert comp.summary["files"] == {IDENTICAL: 3, DIFFERS: 0, UNDECIDABLE: 0,
                                     ONLY_A: 2, ONLY_B: 3}
    assert comp.summary["units"] == {IDENTICAL: 0, DIFFERS: 2, UNDECIDABLE: 0,
                                     ONLY_A: 1, ONLY_B: 1}


def test_annexed_against_git_and_other_links(tmp_path: Path):
    a = {**BASE, "results/s3/k.txt": annex(K1), "results/s3/l": symlink("../s1/k.txt")}
    b = {**BASE, "results/s1/log.txt": symlink("log.old"), "results/s3/k.txt": text("abc"),
         "results/s3/l": text("../s1/k.txt")}
    comp = both_ways(resolve_side(str(bare(tmp_path / "a.git", main=a))),
                     resolve_side(str(bare(tmp_path / "b.git", main=b))))
    assert dict(comp.problems()) == {
        "results/s1/log.txt": DIFFERS,      # a file against a (non-annex) symlink
        "results/s3/k.txt": UNDECIDABLE,    # annexed here, in git there: content unknown
        "results/s3/l": DIFFERS,            # same bytes, but a symlink against a file
    }
    assert comp.units["results/s3"] == DIFFERS and comp.units["results/s2"] == IDENTICAL


def test_backends_md5e_against_sha256e(tmp_path: Path):
    a = {**BASE, "results/s3/k.txt": annex(K1), "results/s3/big.txt": annex(K1)}
    b = {**BASE, "results/s3/k.txt": annex(K_SHA), "results/s3/big.txt": annex(K_SHA_BIG)}
    comp = both_ways(resolve_side(str(bare(tmp_path / "a.git", main=a))),
                     resolve_side(str(bare(tmp_path / "b.git", main=b))))
    assert dict(comp.problems()) == {"results/s3/big.txt": DIFFERS,   # sizes differ
                                     "results/s3/k.txt": UNDECIDABLE}
    only_undecidable = {**a, "results/s3/big.txt": annex(K_SHA_BIG)}
    comp = compare(read_results(resolve_side(str(bare(tmp_path / "c.git",
                                                      main=only_undecidable)))),
                   read_results(resolve_side(str(tmp_path / "b.git"))))
    assert comp.units["results/s3"] == UNDECIDABLE and not comp.identical
    assert comp.summary["files"][UNDECIDABLE] == 1 and comp.summary["units"][UNDECIDABLE] == 1


def test_file_status_rules():
    assert file_status(K1, K1) == IDENTICAL
    assert file_status(K1, K2) == DIFFERS                 # same backend, other key
    assert file_status(K1, K_SHA) == UNDECIDABLE          # same size, other backend
    assert file_status(K1, K_SHA_BIG) == DIFFERS          # sizes differ: decided
    assert file_status("MD5E--" + "0" * 32, K_SHA) == UNDECIDABLE   # no size recorded
    assert file_status("git:aa", "git:aa") == IDENTICAL
    assert file_status("git:aa", "git:bb") == DIFFERS
    assert file_status("git:aa", K1) == UNDECIDABLE
    assert file_status(K1, "link:aa") == DIFFERS
    assert file_status("git:aa", "link:aa") == DIFFERS


def test_two_refs_of_one_repository(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main=BASE,
                rerun={**BASE, "results/s1/k.txt": annex(K2)})
    comp = both_ways(resolve_side(f"{repo}@main"), resolve_side(f"{repo}@rerun"))
    assert comp.units == {"results/s1": DIFFERS, "results/s2": IDENTICAL}
    assert list(comp.problems()) == [("results/s1/k.txt", DIFFERS)]


def test_only_the_mode_changed_is_identical(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main=BASE,
                x={**BASE, "results/s1/log.txt": text("ok\n", mode="100755")})
    assert both_ways(resolve_side(f"{repo}@main"), resolve_side(f"{repo}@x")).identical


def test_compare_trees_agrees_with_full_reads_at_random(tmp_path: Path):
    rng = random.Random(3)
    keys = [f"MD5E-s{rng.randrange(3)}--{rng.getrandbits(128):032x}.txt" for _ in range(6)]
    keys += [K_SHA, "git"]

    def computation() -> Files:
        out: Files = {}
        for s in rng.sample(range(30), 24):
            for f in rng.sample(range(6), 4):
                key = rng.choice(keys)
                out[f"results/{s}/f{f}"] = text(key) if key == "git" else annex(key)
        return out

    repo = bare(tmp_path / "r.git", main=computation(), b=computation())
    comp = both_ways(resolve_side(f"{repo}@main"), resolve_side(f"{repo}@b"))
    assert {s for s in comp.summary["files"] if comp.summary["files"][s]} == set(cmp.STATUSES)


def test_compare_trees_needs_results_on_both_sides(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main=BASE, plain={"code/run.sh": text("echo\n")})
    with pytest.raises(FairbigError, match="no files below results/"):
        compare_sides(f"{repo}@main", f"{repo}@plain")


# ---------------------------------------------------------------- the pure comparison


def test_pure_compare_units_and_json():
    a = {"results/j1/x": K1, "results/j1/y": K1, "results/README": "git:aa",
         "results/j2/ses-1/x": K1, "results/j2/ses-2/x": K1}
    b = {**a, "results/j2/ses-2/x": K2}
    comp = compare(a, b)
    assert comp.units == {"results/README": IDENTICAL, "results/j1": IDENTICAL,
                          "results/j2": DIFFERS}
    assert compare(a, b, unit_depth=2).units == {
        "results/README": IDENTICAL, "results/j1/x": IDENTICAL, "results/j1/y": IDENTICAL,
        "results/j2/ses-1": IDENTICAL, "results/j2/ses-2": DIFFERS}
    assert comp.to_json() == {
        "identical": False,
        "summary": {"units": {IDENTICAL: 2, DIFFERS: 1, UNDECIDABLE: 0, ONLY_A: 0, ONLY_B: 0},
                    "files": {IDENTICAL: 4, DIFFERS: 1, UNDECIDABLE: 0, ONLY_A: 0, ONLY_B: 0}},
        "units": {"results/README": IDENTICAL, "results/j1": IDENTICAL, "results/j2": DIFFERS},
        "files": {"results/j2/ses-2/x": DIFFERS}}
    # every file, the identical ones too, and those on one side only, sorted by path
    c = {k: v for k, v in b.items() if k != "results/j1/y"} | {"results/j0/z": K1}
    files = compare(a, c).to_json(all_files=True)["files"]
    assert files == {
        "results/README": IDENTICAL, "results/j0/z": ONLY_B, "results/j1/x": IDENTICAL,
        "results/j1/y": ONLY_A, "results/j2/ses-1/x": IDENTICAL, "results/j2/ses-2/x": DIFFERS}
    assert list(files) == sorted(files)
    with pytest.raises(ValueError, match="unit_depth must be at least 1"):
        compare(a, b, unit_depth=0)


def test_pure_compare_of_nothing_is_identical():
    comp = compare({}, {})
    assert comp.identical and comp.units == {} and comp.files == {}


# ---------------------------------------------------------------- resolving sides


def test_resolve_side_defaults_and_work_trees(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main=BASE, other=BASE)
    main = subprocess.run(["git", f"--git-dir={repo}", "rev-parse", "main"], text=True,
                          capture_output=True, check=True).stdout.strip()
    assert resolve_side(str(repo)) == Side(repo, main)
    # no 'main': HEAD
    old = bare(tmp_path / "old.git")
    subprocess.run(["git", f"--git-dir={old}", "symbolic-ref", "HEAD", "refs/heads/master"],
                   check=True)
    commit(old, "master", BASE)
    assert resolve_side(str(old)).git_dir == old
    # a work tree, and a path with '@' in it
    work = tmp_path / "w@1"
    subprocess.run(["git", "clone", "-q", "-b", "other", str(repo), str(work)], check=True)
    side = resolve_side(f"{work}@origin/main")
    assert side == Side(work / ".git", main)
    assert resolve_side(str(work)).git_dir == work / ".git"


def test_resolve_ria_store_urls(tmp_path: Path):
    repo = bare(tmp_path / "r.git", main=BASE, rerun={**BASE, "results/s1/k.txt": annex(K2)})
    store = tmp_path / "store"
    dataset = store / DSID[:3] / DSID[3:]
    subprocess.run(["git", "clone", "-q", "--mirror", str(repo), str(dataset)], check=True)
    (store / "alias").mkdir()
    (store / "alias" / "ukb").symlink_to(dataset)
    side = resolve_side(f"ria+file://{store}#{DSID}")
    assert side == Side(dataset, resolve_side(str(repo)).ref)
    rerun = resolve_side(f"ria+file://{store}#{DSID}@rerun")
    assert resolve_side(f"ria+file://{store}#~ukb@rerun").ref == rerun.ref
    assert list(compare_sides(f"ria+file://{store}#{DSID}",
                              f"ria+file://{store}#~ukb@rerun").problems()) == [
        ("results/s1/k.txt", DIFFERS)]


@pytest.mark.parametrize(("spec", "message"), [
    ("{tmp}/nothere", r"nothere does not exist: give a git repository"),
    ("{tmp}/plain", r"plain is not a git repository: give a repository"),
    ("{repo}@nope", r"ref 'nope' not found in .*r\.git: give an existing branch, tag or"
                    r" commit"),
    ("{repo}@--output=x", r"ref '--output=x' not found"),
    ("{repo}@", r"empty ref in '.*@': write PATH@REF"),
    ("{tmp}/empty.git", r"empty\.git has no commit on 'main' or HEAD: give PATH@REF"),
    ("ria+file://{tmp}/store", r"names no dataset: append #<dataset id>"),
    ("ria+file://{tmp}/store#" + DSID, r"no dataset '0123abcd-.*' in RIA store .*: check"),
    ("ria+file://{tmp}/nostore#" + DSID, r"RIA store .*nostore does not exist"),
    ("ria+ssh://host/store#" + DSID, r"is not a ria\+file:// URL"),
])
def test_resolve_side_errors(tmp_path: Path, spec: str, message: str):
    repo = bare(tmp_path / "r.git", main=BASE)
    bare(tmp_path / "empty.git")
    (tmp_path / "plain").mkdir()
    (tmp_path / "store").mkdir()
    with pytest.raises(ValueError, match=message) as info:
        resolve_side(spec.format(tmp=tmp_path, repo=repo))
    assert "\n" not in str(info.value)
    with pytest.raises(FairbigError, match=message):
        compare_sides(spec.format(tmp=tmp_path, repo=repo), str(repo))


def test_compare_reads_below_the_results_folder_fairbig_yaml_names(tmp_path: Path):
    """fairbig.yaml's `results` is the folder compared, not a literal 'results'; two
    sides that name different folders are refused in one line."""
    cfg = text("results: out/res\n")
    a = bare(tmp_path / "a", main={"fairbig.yaml": cfg, "out/res/j1/f.txt": annex(K1, 3),
                                   "results/j1/f.txt": annex(K1)})
    b = bare(tmp_path / "b", main={"fairbig.yaml": cfg, "out/res/j1/f.txt": annex(K2, 3),
                                   "results/j1/f.txt": annex(K1)})
    comp = compare_sides(f"{a}@main", f"{b}@main")
    assert comp.units == {"out/res/j1": DIFFERS}
    c = bare(tmp_path / "c", main={"fairbig.yaml": text("results: results\n"),
                                   "results/j1/f.txt": annex(K1)})
    with pytest.raises(FairbigError, match="different folders: out/res and results"):
        compare_sides(f"{a}@main", f"{c}@main")
