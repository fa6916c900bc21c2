"""The git layer: one pure test per output format (bytes captured from git 2.39),
the annex-key parse, and the runners against a real repository with awkward paths."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fairbig import gitcmd
from fairbig.annexkeys import key_fields, key_of_link
from fairbig.gitcmd import DiffEntry, Entry, GitObject

KEY = "MD5E-s4--ba1f2511fc30423bdbb183fe33f3dd0f.txt"
LINK = f"../.git/annex/objects/Xk/3v/{KEY}/{KEY}"
GITLINK_SHA = "1234567890123456789012345678901234567890"
ZERO = "0" * 40

# ls-tree -z -r --full-tree of a commit holding a space, a newline, a quote and a
# backslash, UTF-8, an annex symlink, a subdirectory and a gitlink (submodule)
LS_TREE = (
    b"100644 blob c1b0730e0133447badcfd47fd144e254807b06e1\ta b.txt\x00"
    b"100644 blob 6bf0c97a7f84620a0bb4cf6380ec307748e043bd\td/f\x00"
    b"120000 blob 29a3c1696c2338f1fe452c5feece710a6e1cd86f\tlink\x00"
    b"100644 blob 975fbec8256d3e8a3797e7a3611380f27c49f4ac\tnew\nline\x00"
    b'100644 blob ea0c8a85cb7293feae2c9e151d1d395be59b61fa\tquote"back\\slash\x00'
    b"160000 commit 1234567890123456789012345678901234567890\tsub\x00"
    b"100644 blob fa7af8bf5fdd704f73beb3adc5612682a98e1af5\t\xc3\xbcn\xc3\xaf.txt\x00")


def test_parse_ls_tree_keeps_every_path_verbatim():
    entries = list(gitcmd.parse_ls_tree(LS_TREE.split(b"\0")))
    assert [e.path for e in entries] == ["a b.txt", "d/f", "link", "new\nline",
                                         'quote"back\\slash', "sub", "ünï.txt"]
    assert entries[2] == Entry("120000", "blob", "29a3c1696c2338f1fe452c5feece710a6e1cd86f",
                               "link")
    assert entries[5] == Entry(gitcmd.GITLINK, "commit", GITLINK_SHA, "sub")


def test_parse_ls_tree_survives_a_name_that_is_not_utf8():
    rec = b"100644 blob c1b0730e0133447badcfd47fd144e254807b06e1\tbad\xff.txt"
    (entry,) = gitcmd.parse_ls_tree([rec])
    assert entry.path.encode("utf-8", "surrogateescape") == b"bad\xff.txt"


@pytest.mark.parametrize("cut", [1, 7, 60, 200, len(LS_TREE)])
def test_ls_tree_batches_are_the_records_from_chunks_cut_anywhere(cut: int):
    chunks = [LS_TREE[i:i + cut] for i in range(0, len(LS_TREE), cut)]
    batches = list(gitcmd.split_batches(chunks))
    records = [r for b in batches for r in b]
    assert records == [gitcmd.path_of(r) for r in LS_TREE.split(b"\0")[:-1]]
    assert all(batches) and all(records)   # nothing empty
    # an Entry's record() is the record it was parsed from
    assert [e.record() for e in gitcmd.parse_ls_tree(LS_TREE.split(b"\0"))] == records
    bad = b"100644 blob c1b0730e0133447badcfd47fd144e254807b06e1\tbad\xff.txt\0"
    ((rec,),) = gitcmd.split_batches([bad[:60], bad[60:]])
    assert rec.encode("utf-8", "surrogateescape") == bad[:-1]


# cat-file --batch of an annex symlink, a tree object and a missing name
TREE_BODY = (
    b"100644 a b.txt\x00\xc1\xb0s\x0e\x013D{\xad\xcf\xd4\x7f\xd1D\xe2T\x80{\x06\xe1"
    b"40000 d\x00\xadg\x86\x1ac'~\xd8\x7f\xa9\x13\r\x8d.\x90\xc9\xadW\xf0a"
    b"120000 link\x00)\xa3\xc1il#8\xf1\xfeE,_\xee\xceq\nn\x1c\xd8o"
    b"100644 new\nline\x00\x97_\xbe\xc8%m>\x8a7\x97\xe7\xa3a\x13\x80\xf2|I\xf4\xac"
    b'100644 quote"back\\slash\x00\xea\x0c\x8a\x85\xcbr\x93\xfe\xae,\x9e\x15\x1d\x1d9[\xe5\x9ba\xfa'
    b"160000 sub\x00\x124Vx\x90\x124Vx\x90\x124Vx\x90\x124Vx\x90"
    b"100644 \xc3\xbcn\xc3\xaf.txt\x00\xfaz\xf8\xbf_\xddpOs\xbe\xb3\xad\xc5a&\x82\xa9\x8e\x1a\xf5")
CAT_FILE = (b"29a3c1696c2338f1fe452c5feece710a6e1cd86f blob 119\n" + LINK.encode() + b"\n"
            b"3c2dc97b3bf88f0a7ac43654ba7e97dd82038960 tree 243\n" + TREE_BODY + b"\n"
            b"no such:name missing\n")


@pytest.mark.parametrize("cut", [1, 7, 50, 120, 200, len(CAT_FILE)])
def test_parse_cat_file_across_any_chunk_boundary(cut: int):
    chunks = [CAT_FILE[i:i + cut] for i in range(0, len(CAT_FILE), cut)]
    link, tree, missing = gitcmd.parse_cat_file(chunks)
    assert link == GitObject("29a3c1696c2338f1fe452c5feece710a6e1cd86f", "blob", 119,
                             LINK.encode())
    assert (tree.type, tree.size, len(tree.data)) == ("tree", 243, 243)
    assert missing == GitObject("no such:name", "missing", 0)


def test_parse_cat_file_refuses_truncated_output():
    with pytest.raises(ValueError, match="ends inside an object"):
        list(gitcmd.parse_cat_file([CAT_FILE[:80]]))


def test_parse_cat_file_batch_check():
    out = b"29a3c1696c2338f1fe452c5feece710a6e1cd86f blob 119\nnosuch missing\n"
    assert list(gitcmd.parse_cat_file([out], contents=False)) == [
        GitObject("29a3c1696c2338f1fe452c5feece710a6e1cd86f", "blob", 119),
        GitObject("nosuch", "missing", 0)]


# diff-tree -r -z --no-renames --stdin fed "<second> <first>": a deletion, a deleted
# gitlink and a modified UTF-8 path; without --stdin the same minus the commit record
DIFF = (b":100644 000000 c1b0730e0133447badcfd47fd144e254807b06e1 " + ZERO.encode()
        + b" D\x00a b.txt\x00:160000 000000 " + GITLINK_SHA.encode() + b" " + ZERO.encode()
        + b" D\x00sub\x00:100644 100644 fa7af8bf5fdd704f73beb3adc5612682a98e1af5 "
        b"bb79ec2de59197fe11eeb60d312673a87c1b8932 M\x00\xc3\xbcn\xc3\xaf.txt\x00")
COMMIT = "d87a9a67fd58ae1635fe632ab8d3fe5dd033191c"


def test_parse_diff_tree_with_and_without_commit_records():
    plain = list(gitcmd.parse_diff_tree(DIFF.split(b"\0")))
    assert [(d.path, d.status, d.new_mode) for d in plain] == [
        ("a b.txt", "D", gitcmd.DELETED), ("sub", "D", gitcmd.DELETED), ("ünï.txt", "M", "100644")]
    assert plain[1] == DiffEntry("", "sub", gitcmd.GITLINK, gitcmd.DELETED, GITLINK_SHA, ZERO,
                                 "D")
    stdin = (COMMIT.encode() + b"\0" + DIFF + b"ee1adca1465276660ce1ea6958336a7328c63c9b\0"
             + DIFF).split(b"\0")
    commits = [d.commit for d in gitcmd.parse_diff_tree(stdin)]
    assert commits == [COMMIT] * 3 + ["ee1adca1465276660ce1ea6958336a7328c63c9b"] * 3


def test_parse_diff_tree_takes_the_destination_of_a_rename():
    recs = [b":100644 100644 " + b"1" * 40 + b" " + b"1" * 40 + b" R100", b"old name",
            b"new\nname"]
    (d,) = gitcmd.parse_diff_tree(recs)
    assert (d.path, d.status) == ("new\nname", "R100")


FOR_EACH_REF = (b"refs/heads/job-1\x00ee1adca1465276660ce1ea6958336a7328c63c9b\x00first\twith"
                b" tab\x00\nrefs/heads/main\x00d87a9a67fd58ae1635fe632ab8d3fe5dd033191c\x00"
                b"second\x00\n")


def test_parse_for_each_ref_fields_may_hold_tabs_and_spaces():
    assert list(gitcmd.parse_for_each_ref(FOR_EACH_REF, 3)) == [
        ("refs/heads/job-1", "ee1adca1465276660ce1ea6958336a7328c63c9b", "first\twith tab"),
        ("refs/heads/main", COMMIT, "second")]
    assert list(gitcmd.parse_for_each_ref(b"", 3)) == []
    with pytest.raises(ValueError, match="2 fields, not 3"):
        list(gitcmd.parse_for_each_ref(b"refs/heads/x\x00abc\x00\n", 3))


@pytest.mark.parametrize(("target", "key"), [
    (LINK, KEY),
    (f"../../.git/annex/objects/pX/Zq/{KEY}/{KEY}", KEY),           # from a subdirectory
    ("/abs/.git/annex/objects/a/b/SHA256E-s0--e3b0c4.nii.gz/SHA256E-s0--e3b0c4.nii.gz",
     "SHA256E-s0--e3b0c4.nii.gz"),
    ("/annex/objects/URL--https&c%%example.org%x", "URL--https&c%%example.org%x"),  # unlocked
    ("../data/plain-file.txt", ""),                                  # a link, not annexed
    ("../.git/annex/objects/no-double-dash", ""),
])
def test_key_of_link(target: str, key: str):
    assert key_of_link(target) == key


@pytest.mark.parametrize(("key", "fields"), [
    (KEY, ("MD5E", "4")),
    ("SHA256E-s1048576--abc.nii.gz", ("SHA256E", "1048576")),
    ("URL--https&c%%example.org%x", ("URL", "")),                    # records no size
    ("SHA1-s12-S1048576-C2--abc", ("SHA1", "12")),                   # a chunked key
])
def test_key_fields(key: str, fields: tuple[str, str]):
    assert key_fields(key) == fields


# ---------------------------------------------------------------- against real git

@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with awkward paths, an annex-style link and a gitlink; two commits."""
    repo = tmp_path_factory.mktemp("awkward")

    def g(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    g("init", "-q", "-b", "main")
    for name in ("a b.txt", "new\nline", "ünï.txt", 'quote"back\\slash', "star*"):
        (repo / name).write_text(name)
    (repo.joinpath(b"bad\xff".decode("utf-8", "surrogateescape"))).write_text("x")
    (repo / "link").symlink_to(LINK)
    g("add", "-A")
    g("update-index", "--add", "--cacheinfo", f"160000,{GITLINK_SHA},sub")
    g("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first\twith tab")
    (repo / "ünï.txt").write_text("changed")
    g("add", "ünï.txt")
    g("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "second")
    g("branch", "job-1", "HEAD~1")
    return repo / ".git"


def test_runners_read_awkward_paths_from_real_git(awkward: Path):
    entries = {e.path: e for e in gitcmd.ls_tree(awkward, "HEAD~1")}
    bad = b"bad\xff".decode("utf-8", "surrogateescape")
    assert set(entries) == {"a b.txt", "new\nline", "ünï.txt", 'quote"back\\slash', "star*",
                            bad, "link", "sub"}
    assert entries["sub"].mode == gitcmd.GITLINK
    assert [e.path for e in gitcmd.ls_tree(awkward, "HEAD", "star*")] == ["star*"]  # literal
    (link,) = gitcmd.cat_file(awkward, [entries["link"].sha])
    assert key_of_link(link.data.decode()) == KEY
    (d,) = gitcmd.diff_tree(awkward, "HEAD~1", "HEAD")
    assert (d.path, d.status) == ("ünï.txt", "M")
    assert gitcmd.for_each_ref(awkward, ("refname", "contents:subject"), "refs/heads/job-*") \
        == [("refs/heads/job-1", "first\twith tab")]
    assert gitcmd.missing_objects(awkward, [entries["link"].sha, ZERO]) == [ZERO]


def test_a_failing_stream_raises_git_error_with_stderr(awkward: Path):
    with pytest.raises(gitcmd.GitError, match="no-such-rev"):
        list(gitcmd.ls_tree(awkward, "no-such-rev"))


def test_stream_does_not_deadlock_on_large_input_and_output(awkward: Path):
    """Megabytes in and out of one process: a write-all-then-read runner blocks forever
    once both pipes (64 kB each) are full."""
    (blob,) = gitcmd.ls_tree(awkward, "HEAD", "a b.txt")
    objects = list(gitcmd.cat_file(awkward, [blob.sha] * 5_000))  # 200 kB in, 450 kB out
    assert len(objects) == 5_000 and objects[-1].data == b"a b.txt"


@pytest.fixture
def refs_repo(tmp_path: Path) -> Path:
    """A bare repository: main, an annotated tag and job branches, some packed, some
    loose (as a merge finds them: earlier ones packed, new pushes loose)."""
    bare = tmp_path / "store.git"
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ["PATH"]}

    def g(*args: str) -> str:
        return subprocess.run(["git", f"--git-dir={bare}", *args], capture_output=True,
                              text=True, check=True, env=env).stdout.strip()

    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    tree = g("mktree", "--missing")  # empty tree
    commits = [g("commit-tree", tree, "-m", str(i)) for i in range(6)]
    g("update-ref", "refs/heads/main", commits[0])
    g("tag", "-a", "-m", "v", "v1", commits[0])
    for i in (1, 2, 3):
        g("update-ref", f"refs/heads/job-{i}", commits[i])
    g("pack-refs", "--all")
    for i in (4, 5):
        g("update-ref", f"refs/heads/job-{i}", commits[i])
    g("update-ref", "refs/heads/job-3", commits[5])  # a loose value over a packed one
    return bare


def show_refs(bare: Path) -> str:
    return subprocess.run(["git", f"--git-dir={bare}", "for-each-ref",
                           "--format=%(refname) %(objectname) %(*objectname)"],
                          capture_output=True, text=True, check=True).stdout


def test_delete_refs_drops_packed_and_loose_refs_in_one_rewrite(refs_repo: Path):
    """A packed, a loose and a loose-over-packed job branch go (no stale packed value
    shows through); main, the tag with its peeled value and the other branches stay as
    they were; no lock is left and git reads the file."""
    before = show_refs(refs_repo).splitlines()
    sha = {line.split()[0]: line.split()[1] for line in before}
    gone = ["refs/heads/job-1", "refs/heads/job-3", "refs/heads/job-5"]
    gitcmd.delete_refs(refs_repo, {r: sha[r] for r in gone})
    assert show_refs(refs_repo).splitlines() == [
        line for line in before if line.split()[0] not in gone]
    assert not (refs_repo / "packed-refs.lock").exists()
    assert not (refs_repo / "refs" / "heads" / "job-5").exists()
    assert "refs/heads/job-3" not in (refs_repo / "packed-refs").read_text()
    packed = (refs_repo / "packed-refs").read_text().splitlines()
    assert packed[0].startswith("# pack-refs with:")
    assert packed[packed.index(f"{sha['refs/tags/v1']} refs/tags/v1") + 1] == \
        f"^{sha['refs/heads/main']}"  # the tag's peeled value stays with it
    subprocess.run(["git", f"--git-dir={refs_repo}", "fsck", "--no-progress"], check=True,
                   capture_output=True)


def test_delete_refs_refuses_a_ref_that_moved(refs_repo: Path):
    """A branch that is not at the sha the caller merged is not deleted: update-ref
    refuses (the caller's merged tip is stale), and the others are gone."""
    sha = {line.split()[0]: line.split()[1] for line in show_refs(refs_repo).splitlines()}
    with pytest.raises(gitcmd.GitError, match="job-2"):
        gitcmd.delete_refs(refs_repo, {"refs/heads/job-1": sha["refs/heads/job-1"],
                                       "refs/heads/job-2": sha["refs/heads/job-3"]})
    left = show_refs(refs_repo)
    assert f"refs/heads/job-2 {sha['refs/heads/job-2']}" in left
    assert "refs/heads/job-1 " not in left


def test_pack_refs_moves_loose_branches_into_packed_refs_unchanged(refs_repo: Path):
    """Loose branches (one over a packed value) move into packed-refs, which stays sorted
    as git writes it, the tag keeps its peeled value; every ref reads as before, no
    loose file or lock is left, and git pack-refs would write the same file."""
    before = show_refs(refs_repo)
    sha = {line.split()[0]: line.split()[1] for line in before.splitlines()}
    loose = ["refs/heads/job-3", "refs/heads/job-4", "refs/heads/job-5", "refs/heads/main"]
    gitcmd.pack_refs(refs_repo, {r: sha[r] for r in loose})
    assert show_refs(refs_repo) == before
    assert not any((refs_repo / r).exists() for r in loose)
    assert not (refs_repo / "packed-refs.lock").exists()
    ours = (refs_repo / "packed-refs").read_text()
    subprocess.run(["git", f"--git-dir={refs_repo}", "pack-refs", "--all"], check=True)
    assert (refs_repo / "packed-refs").read_text() == ours
    subprocess.run(["git", f"--git-dir={refs_repo}", "fsck", "--no-progress"], check=True,
                   capture_output=True)


def test_pack_refs_leaves_a_moved_branch_loose_and_a_locked_file_alone(refs_repo: Path):
    """A branch not at the sha the caller read stays loose at its own value; with
    packed-refs locked by another writer, nothing changes."""
    before = show_refs(refs_repo)
    sha = {line.split()[0]: line.split()[1] for line in before.splitlines()}
    lock = refs_repo / "packed-refs.lock"
    lock.touch()
    gitcmd.pack_refs(refs_repo, {"refs/heads/job-4": sha["refs/heads/job-4"]})
    assert (refs_repo / "refs/heads/job-4").exists() and show_refs(refs_repo) == before
    lock.unlink()
    gitcmd.pack_refs(refs_repo, {"refs/heads/job-4": sha["refs/heads/job-4"],
                                 "refs/heads/job-5": sha["refs/heads/job-1"]})
    assert show_refs(refs_repo) == before
    assert not (refs_repo / "refs/heads/job-4").exists()
    assert (refs_repo / "refs/heads/job-5").read_text() == f"{sha['refs/heads/job-5']}\n"
