"""The job's install step (fairbig.jobinstall): datasets installed with git from the
job's stores, only their stores' remotes enabled, as git-annex's own init would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fairbig.commands.cleanup import remove_tree
from fairbig.jobinstall import (
    CANDIDATE_KEY,
    Installer,
    install,
    parse_remote_log,
    sparse_patterns,
    store_repo,
    usable,
)
from fairbig.render import annex_version

LOG = """\
u1 autoenable=true externaltype=ora name=old type=external url=ria+file:///a timestamp=1s
u1 autoenable=true externaltype=ora name=in type=external url=ria+file:///a/ timestamp=2s
u2 autoenable=true externaltype=ora name=else type=external url=ria+file:///b timestamp=1s
u3 externaltype=ora name=manual type=external url=ria+file:///a timestamp=1s
u4 autoenable=true directory=/a name=dir type=directory timestamp=1s
"""


def test_newest_config_wins_and_only_autoenable_ora_remotes_of_job_stores_are_usable():
    remotes = {r.uuid: r for r in parse_remote_log(LOG)}
    assert remotes["u1"].name == "in"
    assert [r.name for r in remotes.values() if usable(r, {"ria+file:///a"})] == ["in"]


def test_store_repo_by_id_alias_and_template():
    dsid = "e3365358-fb07-4923-997b-de52f0b50750"
    assert store_repo("ria+file:///s#~ukb", dsid) == Path("/s/alias/ukb")
    assert store_repo("ria+file:///s#{id}", dsid) == Path("/s/e33", dsid[3:])
    assert store_repo("ria+file:///s", dsid) == store_repo("ria+file:///s#{id}", dsid)
    assert store_repo("https://example.org/s#{id}", dsid) is None


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_sparse_leaves_out_other_subdatasets_only(tmp_path):
    """A dataset of subject subdatasets is checked out with its files and folders and the
    one subdataset; where the path leads into a folder (a container dataset's images
    beside its scripts) nothing is left out."""
    repo = tmp_path / "ds"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "README").write_text("x")
    (repo / "code").mkdir()
    (repo / "code" / "run.sh").write_text("x")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    head = git(repo, "rev-parse", "HEAD")
    for sub in ("sub-a", "sub-b"):
        git(repo, "update-index", "--add", "--cacheinfo", f"160000,{head},{sub}")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "b")
    assert sparse_patterns(repo / ".git", "HEAD", "sub-a") == ["/README", "/code/", "/sub-a"]
    assert sparse_patterns(repo / ".git", "HEAD", "code") is None


def remote_keys(ds: Path) -> set[str]:
    """The special-remote keys of ``ds``'s own config (origin's annex-ignore aside)."""
    out = subprocess.run(["git", "config", "--local", "--get-regexp", r"^remote\..*\.annex-"],
                         cwd=ds, capture_output=True, text=True).stdout
    return set(out.splitlines()) - {"remote.origin.annex-ignore true"}


@pytest.mark.slow
@pytest.mark.parametrize("pinned", ["same", "other"])
def test_subject_installed_at_its_commit_with_what_annex_init_enables(ukb_input, tmp_path,
                                                                      pinned):
    """Under the pinned git-annex the remote's keys are written, under any other version
    git-annex enables and verifies it: either way the subject dataset ends at the commit
    its parent records, its content present, its remote configured as `git annex init`
    configures it (compared with a plain init of the same dataset)."""
    store, sub = ukb_input["store"], ukb_input["ids"][0]
    top = tmp_path / "top"
    git(tmp_path, "clone", "-q", str(store_repo(ukb_input["url"], "")), str(top))
    git(top, "annex", "init", "-q", "--no-autoenable")
    git(top, "config", CANDIDATE_KEY, f"{store}#{{id}}")
    version = annex_version() if pinned == "same" else "0.1"
    assert install(top, [store], version, [sub]) == []  # nothing fell back to datalad
    recorded = git(top, "ls-tree", "HEAD", sub).split()[2]
    assert git(top / sub, "rev-parse", "HEAD") == recorded
    assert git(top / sub, "annex", "find", "--not", "--in", "here") == ""
    assert git(top / sub, "annex", "find")  # it has annexed files, all present
    plain = tmp_path / "plain"
    git(tmp_path, "clone", "-q", git(top / sub, "remote", "get-url", "origin"), str(plain))
    git(plain, "annex", "init", "-q")
    # git-annex caches the cost the ORA helper reports at its first use (the get)
    keys = {k for k in remote_keys(top / sub) if ".annex-cost " not in k}
    if pinned == "same":
        assert keys == remote_keys(plain)
    else:  # enableremote/verifyremote: the same remote, verified by hand
        assert {k.split()[0] for k in keys} == {k.split()[0] for k in remote_keys(plain)}


def helper_starts(ds: Path, *args: str) -> int:
    """How many special-remote helpers ``git annex ARGS`` in ``ds`` starts."""
    out = subprocess.run(["git", "annex", "--debug", *args], cwd=ds, capture_output=True,
                         text=True, check=True)
    return sum("chat: " in line and "git-annex-remote-" in line
               for line in out.stderr.splitlines())


@pytest.mark.slow
def test_enabled_remotes_have_the_cost_their_helper_reports(ukb_input, tmp_path):
    """A remote enabled for the job has the cost ORA reports (git-annex's cached
    answer), so git-annex starts no helper just to ask it: a `whereis` of content in
    the input store asks its one remote only (a remote the command does not use would
    otherwise start too, as `copy --to output-storage` started input-storage's)."""
    store, sub = ukb_input["store"], ukb_input["ids"][0]
    top = tmp_path / "top"
    git(tmp_path, "clone", "-q", str(store_repo(ukb_input["url"], "")), str(top))
    git(top, "annex", "init", "-q", "--no-autoenable")
    git(top, "config", CANDIDATE_KEY, f"{store}#{{id}}")
    install(top, [store], annex_version(), [sub])
    costs = {k for k in remote_keys(top / sub) | remote_keys(top) if ".annex-cost " in k}
    assert costs and all(k.endswith(" 100.0") for k in costs), costs
    # the same answer the helper gives: a plain clone's git-annex asks and caches it
    plain = tmp_path / "plain"
    git(tmp_path, "clone", "-q", git(top / sub, "remote", "get-url", "origin"), str(plain))
    git(plain, "annex", "init", "-q")
    assert helper_starts(plain, "info", "--fast", "here") == 1  # GETCOST
    assert {k for k in remote_keys(plain) if ".annex-cost " in k} == {
        k for k in remote_keys(top / sub) if ".annex-cost " in k}
    assert helper_starts(top, "info", "--fast", "here") == 0


@pytest.mark.slow
def test_a_shared_dataset_comes_from_the_node_template_its_objects_linked(ukb_input,
                                                                         tmp_path):
    """A dataset holding a path every job reads alike (the container image) is built
    once per node with that content; each job's copy is at the recorded commit, has the
    content, and its annex object is the template's file (a hard link), read-only."""
    store, sub = ukb_input["store"], ukb_input["ids"][0]
    templates = tmp_path / "cache"
    tops = []
    for name in ("one", "two"):
        top = tmp_path / name
        git(tmp_path, "clone", "-q", str(store_repo(ukb_input["url"], "")), str(top))
        git(top, "annex", "init", "-q", "--no-autoenable")
        git(top, "config", CANDIDATE_KEY, f"{store}#{{id}}")
        shared = f"{sub}/20252_2_0.zip"  # one of the generator's records
        assert install(top, [store], annex_version(), [shared], [shared], templates) == []
        tops.append(top)
    [template] = [d for d in (templates / "datasets").glob("*@*") if d.is_dir()]
    recorded = git(tops[0], "ls-tree", "HEAD", sub).split()[2]
    assert template.name.endswith(f"@{recorded}")
    inodes = set()
    for top in tops:
        assert git(top / sub, "rev-parse", "HEAD") == recorded
        assert git(top / sub, "annex", "find", "--in", "here") == shared[len(sub) + 1:]
        obj = (top / shared).resolve()
        inodes.add((obj.stat().st_ino, obj.stat().st_nlink))
        assert obj.is_relative_to(top / sub / ".git" / "annex" / "objects")
    in_template = (template / shared[len(sub) + 1:]).resolve()
    assert inodes == {(in_template.stat().st_ino, 3)}
    assert in_template.stat().st_mode & 0o222 == 0


@pytest.mark.slow
def test_a_store_not_the_jobs_is_not_used(ukb_input, tmp_path):
    """The subject's store is not among the job's: no remote of it is enabled in the top
    dataset and the subject is not cloned from it by git; datalad installs it (the
    fallback, reported)."""
    store, sub = ukb_input["store"], ukb_input["ids"][1]
    top = tmp_path / "top"
    git(tmp_path, "clone", "-q", str(store_repo(ukb_input["url"], "")), str(top))
    git(top, "annex", "init", "-q", "--no-autoenable")
    git(top, "config", CANDIDATE_KEY, f"{store}#{{id}}")
    assert install(top, ["ria+file:///elsewhere"], annex_version(), [sub]) == [sub]
    assert remote_keys(top) == set()
    assert (top / sub / ".git").exists()


def test_path_into_the_second_of_sibling_subdatasets_finds_that_one(tmp_path):
    """``inputs/fmriprep/sub-01`` is in inputs/fmriprep, not in inputs/data beside it
    (``ls-tree`` lists inputs/data for the pathspec ``inputs``)."""
    top = tmp_path / "top"
    git(tmp_path, "init", "-q", "top")
    for sub in ("inputs/data", "inputs/fmriprep"):
        git(tmp_path, "init", "-q", str(top / sub))
        git(top / sub, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
            "--allow-empty", "-m", "a")
        sha = git(top / sub, "rev-parse", "HEAD")
        git(top, "update-index", "--add", "--cacheinfo", f"160000,{sha},{sub}")
    git(top, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    inst = Installer(top, [], config_keys=False)
    assert inst.dataset_of("inputs/fmriprep/sub-01/anat") == (top / "inputs" / "fmriprep",
                                                              "sub-01/anat")
    assert inst.dataset_of("inputs/data/sub-01") == (top / "inputs" / "data", "sub-01")


def test_removing_a_clone_keeps_the_modes_of_what_it_links(tmp_path):
    """`fairbig cleanup` of a killed job's clone: its read-only object directories go,
    and a hard link into the node's template leaves the template's file read-only."""
    template = tmp_path / "template" / "KEY"
    template.parent.mkdir()
    template.write_text("image\n")
    template.chmod(0o444)
    clone = tmp_path / "clone"
    obj = clone / "objects" / "xx"
    obj.mkdir(parents=True)
    os.link(template, obj / "KEY")
    obj.chmod(0o555)
    remove_tree(str(clone))
    assert not clone.exists()
    assert template.stat().st_mode & 0o777 == 0o444
