"""The plumbing merge engine against real git repositories (small, fast)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from fairbig import treemerge as tm
from fairbig.gitcmd import GitError

IDENT = {
    "GIT_AUTHOR_NAME": "Merger", "GIT_AUTHOR_EMAIL": "merge@example.org",
    "GIT_AUTHOR_DATE": "@1700000000 +0000",
    "GIT_COMMITTER_NAME": "Merger", "GIT_COMMITTER_EMAIL": "merge@example.org",
    "GIT_COMMITTER_DATE": "@1700000000 +0000",
}
ENV = {**os.environ, **IDENT, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


@dataclass(frozen=True)
class Link:
    target: str


Files = Mapping[str, "str | Link | None"]  # None: delete


class Repo:
    """A non-bare repository whose commits are made with plumbing (no checkout needed)."""

    def __init__(self, path: Path) -> None:
        subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=ENV)
        self.path = path
        self.git_dir = path / ".git"

    def git(self, *args: str, input: str | None = None, **env: str) -> str:
        return subprocess.run(["git", "-C", str(self.path), *args], input=input, text=True,
                              capture_output=True, check=True, env={**ENV, **env}).stdout.strip()

    def commit(self, parents: list[str], files: Files, message: str = "c") -> str:
        index = str(self.git_dir / "test-index")
        self.git("read-tree", *(parents[:1] or ["--empty"]), GIT_INDEX_FILE=index)
        lines = []
        for path, content in files.items():
            if content is None:
                lines.append(f"0 {'0' * 40}\t{path}")
            else:
                mode = "120000" if isinstance(content, Link) else "100644"
                data = content.target if isinstance(content, Link) else content
                sha = self.git("hash-object", "-w", "--stdin", input=data)
                lines.append(f"{mode} {sha}\t{path}")
        self.git("update-index", "--index-info", input="\n".join(lines) + "\n",
                 GIT_INDEX_FILE=index)
        tree = self.git("write-tree", GIT_INDEX_FILE=index)
        return self.git("commit-tree", tree, *(a for p in parents for a in ("-p", p)),
                        "-m", message)

    def job(self, job_id: str, parent: str, files: Files,
            allowed: tuple[str, ...] | None = None) -> tm.JobBranch:
        tip = self.commit([parent], files, f"job {job_id}")
        ref = f"refs/heads/job-{job_id}"
        self.git("update-ref", ref, tip)
        return tm.JobBranch(job_id, ref, tip,
                            (f"results/{job_id}/",) if allowed is None else allowed)

    def tree(self, rev: str) -> dict[str, tuple[str, str]]:
        out = self.git("ls-tree", "-r", "--full-tree", rev)
        return {line.split("\t")[1]: tuple(line.split("\t")[0].split(" ")[::2])
                for line in out.splitlines()}

    def files(self, rev: str) -> set[str]:
        return set(self.tree(rev))

    def is_ancestor(self, a: str, b: str) -> bool:
        return subprocess.run(["git", "-C", str(self.path), "merge-base", "--is-ancestor", a, b],
                              env=ENV).returncode == 0


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    r = Repo(tmp_path / "store")
    base = r.commit([], {"README": "hi\n", "code/run.sh": "echo\n", "results/.keep": ""})
    r.git("update-ref", "refs/heads/main", base)
    return r


def merge(repo: Repo, branches: list[tm.JobBranch], **kw) -> tuple[tm.MergeComputation, str]:
    comp = tm.compute_merge(repo.git_dir, "main", branches, results="results")
    assert comp.conflicts == []
    return comp, tm.write_merge(repo.git_dir, "main", comp, message="merge", ident=IDENT, **kw)


def test_union_tree_and_every_tip_reachable(repo: Repo) -> None:
    base = repo.git("rev-parse", "main")
    jobs = [repo.job(j, base, {f"results/{j}/out.txt": j, f"results/{j}/data": Link(f"k{j}")})
            for j in ("a", "b", "c")]
    jobs.append(repo.job("d", base, {"results/d/x": "d"}, allowed=("results/d/", "results/")))
    deleter = repo.job("e", base, {"results/.keep": None}, allowed=("results/",))
    comp, new = merge(repo, [*reversed(jobs), deleter])

    assert [b.job_id for b in comp.to_merge] == ["a", "b", "c", "d", "e"]
    assert repo.files(new) == {"README", "code/run.sh", "results/d/x",
                               *(f"results/{j}/{f}" for j in "abc" for f in ("out.txt", "data"))}
    assert repo.tree(new)["results/a/data"][0] == "120000"
    assert all(repo.is_ancestor(b.tip, new) for b in [*jobs, deleter])
    assert repo.git("rev-parse", f"{new}^1") == base
    assert {c.path: c.job_id for c in comp.changes}["results/d/x"] == "d"
    assert [c.path for c in comp.changes if c.deleted] == ["results/.keep"]


def test_list_refs_matches_the_prefix_exactly(repo: Repo) -> None:
    a = repo.job("a", "main", {"results/a/x": "a"})
    repo.git("update-ref", "refs/heads/jobless", a.tip)
    repo.git("update-ref", "refs/heads/job-x/nested", a.tip)
    assert tm.list_refs(repo.git_dir) == {a.ref: a.tip, "refs/heads/job-x/nested": a.tip}
    assert tm.list_refs(repo.git_dir, "refs/heads/jobl") == {"refs/heads/jobless": a.tip}


def test_identical_branches_are_skipped(repo: Repo) -> None:
    old = repo.git("rev-parse", "main")
    newer = repo.commit([old], {"README": "v2\n"})
    repo.git("update-ref", "refs/heads/main", newer)
    at_base = tm.JobBranch("a", "refs/heads/job-a", newer, ("results/a/",))
    contained = tm.JobBranch("b", "refs/heads/job-b", old, ("results/b/",))
    real = repo.job("c", newer, {"results/c/x": "c"})

    comp = tm.compute_merge(repo.git_dir, "main", [real, contained, at_base])
    assert comp.identical == [at_base, contained]
    assert comp.to_merge == [real]
    assert [c.path for c in comp.changes] == ["results/c/x"]


def test_same_path_different_content_names_both_jobs(repo: Repo) -> None:
    a = repo.job("a", "main", {"results/common.txt": "a"}, allowed=("results/",))
    b = repo.job("b", "main", {"results/common.txt": "b"}, allowed=("results/",))
    comp = tm.compute_merge(repo.git_dir, "main", [b, a])
    assert comp.conflicts == [tm.Conflict("results/common.txt", ("a", "b"), tm.DIFFERENT)]
    with pytest.raises(ValueError, match="conflict"):
        tm.write_merge(repo.git_dir, "main", comp, message="m", ident=IDENT)


@pytest.mark.parametrize(("content_b", "shared", "reason"), [
    ("same", ["summary/*.tsv"], None),
    ("other", ["summary/*.tsv"], tm.DIFFERENT),
    ("same", [], tm.NOT_SHARED),
])
def test_shared_paths_need_identical_content(repo: Repo, content_b: str, shared: list[str],
                                             reason: str | None) -> None:
    a = repo.job("a", "main", {"results/a/x": "a", "summary/all.tsv": "same"},
                 allowed=("results/a/", "summary/"))
    b = repo.job("b", "main", {"results/b/x": "b", "summary/all.tsv": content_b},
                 allowed=("results/b/", "summary/"))
    comp = tm.compute_merge(repo.git_dir, "main", [a, b], shared)
    if reason is None:
        assert comp.conflicts == []
        assert [c.path for c in comp.changes].count("summary/all.tsv") == 1
        new = tm.write_merge(repo.git_dir, "main", comp, message="m", ident=IDENT)
        assert {"results/a/x", "results/b/x", "summary/all.tsv"} <= repo.files(new)
    else:
        assert comp.conflicts == [tm.Conflict("summary/all.tsv", ("a", "b"), reason)]


def test_shared_paths_may_lie_outside_the_areas(repo: Repo) -> None:
    a = repo.job("a", "main", {"results/a/x": "a", "CHANGELOG": "run\n"})
    b = repo.job("b", "main", {"results/b/x": "b", "CHANGELOG": "run\n"})
    assert tm.compute_merge(repo.git_dir, "main", [a, b], ["CHANGELOG"]).conflicts == []


def test_writing_outside_the_area(repo: Repo) -> None:
    a = repo.job("a", "main", {"results/a/x": "a", "results/b/x": "sneaky", "README": "x"})
    comp = tm.compute_merge(repo.git_dir, "main", [a])
    reason = "outside the job's area (allowed: results/a/)"
    assert comp.conflicts == [tm.Conflict("README", ("a",), reason),
                              tm.Conflict("results/b/x", ("a",), reason)]


def test_file_directory_clash(repo: Repo) -> None:
    a = repo.job("a", "main", {"results/x": "file"}, allowed=("results/",))
    b = repo.job("b", "main", {"results/x/y": "inside"}, allowed=("results/",))
    c = repo.job("c", "main", {"results/c/z": "fine"})
    comp = tm.compute_merge(repo.git_dir, "main", [a, b, c])
    assert comp.conflicts == [tm.Conflict("results/x", ("a", "b"), tm.CLASH)]


def test_base_changed_after_an_old_fork_point(repo: Repo) -> None:
    fork = repo.git("rev-parse", "main")
    newer = repo.commit([fork], {"results/a/x": "merged earlier", "results/b/x": "b",
                                 "results/d": "a file now"})
    repo.git("update-ref", "refs/heads/main", newer)
    rerun = repo.job("a", fork, {"results/a/x": "rerun"})
    same = repo.job("b", fork, {"results/b/x": "b"})
    fresh = repo.job("c", fork, {"results/c/x": "c"})
    under = repo.job("d", fork, {"results/d/y": "d"}, allowed=("results/d",))

    comp = tm.compute_merge(repo.git_dir, "main", [rerun, same, fresh, under])
    assert comp.conflicts == [tm.Conflict("results/a/x", ("a",), tm.BASE_CHANGED),
                              tm.Conflict("results/d/y", ("d",), tm.BASE_CHANGED)]

    comp, new = merge(repo, [same, fresh])
    assert repo.files(new) >= {"results/a/x", "results/b/x", "results/c/x", "results/d"}
    assert repo.tree(new)["results/a/x"] == repo.tree(newer)["results/a/x"]


def test_multi_commit_branch_forks_at_the_nearest_base_commit(repo: Repo) -> None:
    old = repo.git("rev-parse", "main")
    newer = repo.commit([old], {"README": "changed on main\n"})
    repo.git("update-ref", "refs/heads/main", newer)
    first = repo.commit([old], {"results/a/x": "1"})
    synced = repo.commit([first, newer], {"results/a/x": "1", "README": "changed on main\n"})
    tip = repo.commit([synced], {"results/a/y": "2"})
    job = tm.JobBranch("a", "refs/heads/job-a", tip, ("results/a/",))

    comp, new = merge(repo, [job])
    assert sorted(c.path for c in comp.changes) == ["results/a/x", "results/a/y"]
    assert repo.is_ancestor(tip, new)


def test_unrelated_history_is_refused(repo: Repo) -> None:
    orphan = repo.commit([], {"results/a/x": "a"})
    ok = repo.job("b", "main", {"results/b/x": "b"})
    comp = tm.compute_merge(repo.git_dir, "main",
                            [tm.JobBranch("a", "refs/heads/job-a", orphan, ("results/a/",)), ok])
    assert comp.conflicts == [tm.Conflict(tm.WHOLE_BRANCH, ("a",), tm.UNRELATED)]
    assert comp.to_merge == [ok]


def test_two_branches_at_one_commit(repo: Repo) -> None:
    tip = repo.commit(["main"], {"results/a/x": "a", "results/b/x": "b"})
    a, b = (tm.JobBranch(j, f"refs/heads/job-{j}", tip, (f"results/{j}/",)) for j in "ab")
    c = repo.job("c", "main", {"results/c/x": "c"})

    comp, new = merge(repo, [b, c, a])
    assert [j.job_id for j in comp.to_merge] == ["a", "b", "c"]
    assert {c.path: c.job_id for c in comp.changes} == {
        "results/a/x": "a", "results/b/x": "b", "results/c/x": "c"}
    base = repo.git("rev-parse", "main")
    assert repo.git("rev-list", "--parents", "-1", new).split()[1:] == [base, tip, c.tip]


def test_chunks_form_a_chain_with_cumulative_trees(repo: Repo) -> None:
    base = repo.git("rev-parse", "main")
    jobs = [repo.job(f"j{i}", base, {f"results/j{i}/x": str(i)}) for i in range(5)]
    _, new = merge(repo, jobs, chunk_size=2)

    chain = [line.split() for line in repo.git("rev-list", "--parents", "--first-parent",
                                               f"{base}..{new}").splitlines()]
    c3, c2, c1 = (row[0] for row in chain)
    assert chain == [[c3, c2, jobs[4].tip], [c2, c1, jobs[2].tip, jobs[3].tip],
                     [c1, base, jobs[0].tip, jobs[1].tip]]
    assert repo.files(c1) - repo.files(base) == {"results/j0/x", "results/j1/x"}
    assert repo.files(c2) - repo.files(base) == {f"results/j{i}/x" for i in range(4)}
    assert repo.files(new) - repo.files(base) == {f"results/j{i}/x" for i in range(5)}


def test_changes_of_no_job_go_into_the_last_commit(repo: Repo) -> None:
    jobs = [repo.job(j, "main", {f"results/{j}/x": j}) for j in "abc"]
    comp = tm.compute_merge(repo.git_dir, "main", jobs)
    sha = repo.git("hash-object", "-w", "--stdin", input="a\nb\nc\n")
    comp.changes.append(tm.Change(".fairbig/merged.tsv", "100644", sha, ""))
    new = tm.write_merge(repo.git_dir, "main", comp, chunk_size=2, message="m", ident=IDENT)
    assert ".fairbig/merged.tsv" in repo.files(new)
    assert ".fairbig/merged.tsv" not in repo.files(f"{new}^1")


def test_objects_of_added_changes_must_exist(repo: Repo) -> None:
    comp = tm.compute_merge(repo.git_dir, "main", [repo.job("a", "main", {"results/a/x": "a"})])
    comp.changes.append(tm.Change("extra", "100644", "1" * 40, ""))
    with pytest.raises(ValueError, match="1111111111"):
        tm.write_merge(repo.git_dir, "main", comp, message="m", ident=IDENT)


def test_same_inputs_same_commit(repo: Repo) -> None:
    jobs = [repo.job(j, "main", {f"results/{j}/x": j}) for j in "abcde"]

    def once(order: list[tm.JobBranch]) -> str:
        comp = tm.compute_merge(repo.git_dir, "main", order)
        return tm.write_merge(repo.git_dir, "main", comp, chunk_size=2, ident=IDENT,
                              message=lambda bs: "merge " + " ".join(b.job_id for b in bs))

    first = once(jobs)
    assert once(list(reversed(jobs))) == first
    assert repo.git("log", "-1", "--format=%s%n%an %ad", "--date=unix", first) == \
        "merge e\nMerger 1700000000"


def test_update_ref_refuses_when_the_ref_moved(repo: Repo) -> None:
    base = repo.git("rev-parse", "main")
    _, new = merge(repo, [repo.job("a", base, {"results/a/x": "a"})])
    moved = repo.commit([base], {"README": "pushed meanwhile\n"})
    repo.git("update-ref", "refs/heads/main", moved)

    with pytest.raises(GitError) as err:
        tm.update_ref(repo.git_dir, "refs/heads/main", new, base)
    assert err.value.returncode != 0 and "update-ref" in err.value.cmd
    assert repo.git("rev-parse", "main") == moved
    tm.update_ref(repo.git_dir, "refs/heads/main", new, moved)
    assert repo.git("rev-parse", "main") == new


def test_write_refuses_another_base(repo: Repo) -> None:
    comp = tm.compute_merge(repo.git_dir, "main", [repo.job("a", "main", {"results/a/x": "a"})])
    repo.git("update-ref", "refs/heads/main", repo.commit(["main"], {"README": "moved\n"}))
    with pytest.raises(ValueError, match="computed on"):
        tm.write_merge(repo.git_dir, "main", comp, message="m", ident=IDENT)


def test_git_errors_carry_command_and_stderr(repo: Repo) -> None:
    with pytest.raises(GitError) as err:
        tm.compute_merge(repo.git_dir, "no-such-branch", [])
    assert err.value.returncode == 128
    assert "rev-parse" in err.value.cmd
    assert err.value.stderr


def test_tree_equals_octopus_merge(repo: Repo) -> None:
    base = repo.git("rev-parse", "main")
    jobs = [repo.job(j, base, {f"results/{j}/out": j, f"results/{j}/key": Link(f"../../k{j}")})
            for j in ("01", "02", "03", "04")]
    _, new = merge(repo, jobs)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "--no-edit", "-q", *(f"job-{b.job_id}" for b in jobs))
    assert repo.git("rev-parse", "HEAD^{tree}") == repo.git("rev-parse", f"{new}^{{tree}}")


def test_rerun_branch_removal_commit_then_run_commit_merges(repo: Repo) -> None:
    """A job running again over its merged results: one commit removes its old outputs,
    the next adds the new ones (some unchanged); merged as one change of its area."""
    old = repo.commit([repo.git("rev-parse", "main")],
                      {"results/a/same": "kept", "results/a/changed": "v1",
                       "results/a/gone": "v1", "results/b/x": "b"})
    repo.git("update-ref", "refs/heads/main", old)
    removal = repo.commit([old], {"results/a/same": None, "results/a/changed": None,
                                  "results/a/gone": None}, "remove the outputs")
    tip = repo.commit([removal], {"results/a/same": "kept", "results/a/changed": "v2",
                                  "results/a/new": "v2"}, "run")
    repo.git("update-ref", "refs/heads/job-a", tip)
    job = tm.JobBranch("a", "refs/heads/job-a", tip, ("results/a/",))
    comp, new = merge(repo, [job])
    assert comp.to_merge == [job]
    assert repo.tree(new) == repo.tree(tip)
    assert repo.is_ancestor(tip, new)


def job_layout(repo: Repo, job_id: str, plan: str, files: Files,
               allowed: tuple[str, ...] | None = None, start: Files | None = None
               ) -> tm.JobBranch:
    """A branch as the job script makes it: a first commit of the plan commit's tree
    without results/ (``start``: more changes in it), then the run commit."""
    gone: dict[str, str | Link | None] = {p: None for p in repo.files(plan)
                                          if p.startswith("results/")}
    first = repo.commit([plan], {**gone, **(start or {})}, f"fairbig job {job_id}: start")
    return repo.job(job_id, first, files, allowed)


def test_job_layout_branch_replaces_its_area_only(repo: Repo) -> None:
    """The run commit holds its own results only; merged, they replace the job's area
    (an earlier run's file it did not write again goes), everything else stays."""
    old = repo.commit([repo.git("rev-parse", "main")],
                      {"results/a/same": "kept", "results/a/changed": "v1",
                       "results/a/gone": "v1", "results/b/x": "b"})
    repo.git("update-ref", "refs/heads/main", old)
    a = job_layout(repo, "a", old, {"results/a/same": "kept", "results/a/changed": "v2",
                                    "results/a/new": "v2"})
    c = job_layout(repo, "c", old, {"results/c/x": "c"})
    assert {p for p in repo.files(a.tip) if p.startswith("results/")} == {
        "results/a/same", "results/a/changed", "results/a/new"}

    comp, new = merge(repo, [a, c])
    assert {(ch.path, ch.deleted) for ch in comp.changes} == {
        ("results/a/same", False), ("results/a/changed", False), ("results/a/new", False),
        ("results/a/gone", True), ("results/c/x", False)}
    want = {**repo.tree(old), **{p: e for p, e in repo.tree(a.tip).items()
                                 if p.startswith("results/a/")}, **{
        "results/c/x": repo.tree(c.tip)["results/c/x"]}}
    del want["results/a/gone"]
    assert repo.tree(new) == want
    assert repo.is_ancestor(a.tip, new) and repo.is_ancestor(c.tip, new)


def test_job_layout_nested_areas(repo: Repo) -> None:
    """Areas results/<subject>/<session>/: base's other sessions stay."""
    old = repo.commit([repo.git("rev-parse", "main")],
                      {"results/s1/ses-1/x": "1", "results/s1/ses-2/x": "2"})
    repo.git("update-ref", "refs/heads/main", old)
    job = job_layout(repo, "s1-1", old, {"results/s1/ses-1/y": "new"},
                     allowed=("results/s1/ses-1/",))
    new_ses = job_layout(repo, "s2-1", old, {"results/s2/ses-1/x": "s2"},
                         allowed=("results/s2/ses-1/",))
    _, new = merge(repo, [job, new_ses])
    assert {p for p in repo.files(new) if p.startswith("results/")} == {
        "results/.keep", "results/s1/ses-1/y", "results/s1/ses-2/x", "results/s2/ses-1/x"}


def test_job_layout_writing_outside_its_area_is_refused(repo: Repo) -> None:
    a = job_layout(repo, "a", "main", {"results/a/x": "a", "results/b/x": "not a's",
                                       "README": "changed"})
    comp = tm.compute_merge(repo.git_dir, "main", [a], results="results")
    outside = tm.OUTSIDE.format("results/a/")
    assert comp.conflicts == [tm.Conflict("README", ("a",), outside),
                              tm.Conflict("results/b/x", ("a",), outside)]


def test_first_commit_not_the_plan_without_results_is_diffed_against_the_fork(
        repo: Repo) -> None:
    """A first commit that changes anything else is no job-layout start: the branch is
    diffed against its fork point, so dropping the results of others is refused."""
    other = repo.commit([repo.git("rev-parse", "main")], {"results/b/x": "b"})
    repo.git("update-ref", "refs/heads/main", other)
    a = job_layout(repo, "a", other, {"results/a/x": "a"}, start={"code/run.sh": "rm -rf\n"})
    comp = tm.compute_merge(repo.git_dir, "main", [a], results="results")
    outside = tm.OUTSIDE.format("results/a/")
    assert comp.conflicts == [tm.Conflict(p, ("a",), outside)
                              for p in ("code/run.sh", "results/.keep", "results/b/x")]


def test_job_layout_base_changed_after_an_old_fork_point(repo: Repo) -> None:
    fork = repo.commit([repo.git("rev-parse", "main")], {"results/a/x": "v1"})
    newer = repo.commit([fork], {"results/a/x": "merged later", "results/d/y": "merged later"})
    repo.git("update-ref", "refs/heads/main", newer)
    a = job_layout(repo, "a", fork, {"results/a/x": "v3"})
    d = job_layout(repo, "d", fork, {"results/d/z": "d"})  # would delete results/d/y
    same = job_layout(repo, "e", fork, {"results/e/x": "e"})
    comp = tm.compute_merge(repo.git_dir, "main", [a, d, same], results="results")
    assert comp.conflicts == [tm.Conflict("results/a/x", ("a",), tm.BASE_CHANGED),
                              tm.Conflict("results/d/y", ("d",), tm.BASE_CHANGED)]
    _, new = merge(repo, [same])
    assert repo.tree(new)["results/e/x"] == repo.tree(same.tip)["results/e/x"]


def test_without_path_drops_the_folders_it_empties(repo: Repo) -> None:
    tip = repo.commit(["main"], {"d/r/x": "1", "d/keep": "2", "e/r/x": "3"})
    tree = repo.git("rev-parse", f"{tip}^{{tree}}")
    kept = repo.git("ls-tree", "-r", "--name-only", tm.without_path(repo.git_dir, tree, "d/r"))
    assert kept.split() == ["README", "code/run.sh", "d/keep", "e/r/x", "results/.keep"]
    kept = repo.git("ls-tree", "-r", "--name-only", tm.without_path(repo.git_dir, tree, "e/r"))
    assert kept.split() == ["README", "code/run.sh", "d/keep", "d/r/x", "results/.keep"]
    assert tm.without_path(repo.git_dir, tree, "nowhere/r") == tree


def test_repack_packs_what_the_merge_brought_and_nothing_else(repo: Repo) -> None:
    """After a merge, the objects new main reaches and old main does not (job commits,
    their files, the merge's trees) leave the loose store for one new pack; a loose
    object of a branch not merged stays loose (the geometric roll-up packs it later)."""
    from fairbig.commands.merge import loose_objects, repack

    old = repo.git("rev-parse", "main")
    jobs = [repo.job(j, old, {f"results/{j}/out.txt": f"{j}\n"}) for j in ("a", "b")]
    unmerged = repo.job("c", old, {"results/c/out.txt": "not merged\n"})
    _, new = merge(repo, jobs)
    repo.git("update-ref", "refs/heads/main", new, old)
    loose_before = loose_objects(repo.git_dir)
    brought = repo.git("rev-list", "--objects", new, "--not", old).split("\n")
    packs = set((repo.git_dir / "objects" / "pack").glob("*.pack"))
    repack(repo.git_dir, (old, new))
    new_packs = set((repo.git_dir / "objects" / "pack").glob("*.pack")) - packs
    assert len(new_packs) == 1
    packed = repo.git("verify-pack", "-v", str(new_packs.pop().with_suffix(".idx")))
    in_pack = {line.split()[0] for line in packed.splitlines() if len(line.split()[0]) == 40}
    assert in_pack == {line.split()[0] for line in brought}
    assert loose_objects(repo.git_dir) == loose_before - len(in_pack)
    only_c = repo.git("rev-list", "--objects", unmerged.tip, "--not", new).split("\n")
    assert only_c and all((repo.git_dir / "objects" / o[:2] / o[2:40]).is_file()
                          for o in only_c)
    assert repo.git("fsck", "--no-progress", "--no-dangling") == ""
