"""Merge tens of thousands of job branches with git plumbing, in seconds.

``git merge`` (octopus) rewrites the whole index once per branch, so the
42,767 branches of the UK Biobank run took hours; it stops at the first
conflict and cannot say which jobs clashed. Here every step is ONE git
process for all branches, never one per branch: refs, parents and changes
are read in bulk, conflicts are decided in Python (naming paths and jobs),
and the result is written as a short chain of merge commits.

Nothing here moves a ref except :func:`update_ref`, a compare-and-swap: a
merge that is computed and written but never published leaves only
unreachable objects behind.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .contract import JOB_REF_PREFIX
from .gitcmd import (
    DELETED,
    GITLINK,
    TREE,
    Entry,
    cat_file,
    diff_tree,
    for_each_ref,
    git,
    ls_tree,
    ls_tree_names,
    missing_objects,
)

FSCK_HINT = "check the output store's repository with 'git fsck'"
WHOLE_BRANCH = "."  # Conflict.path when a whole branch is refused

NO_WALK_LEVELS = 2  # commits per job branch read without walking base's history

UNRELATED = "unrelated history"
DIFFERENT = "written by several jobs with different content"
NOT_SHARED = "written by several jobs (same content, but not a shared path)"
OUTSIDE = "outside the job's area (allowed: {})"
CLASH = "file/directory clash"
BASE_CHANGED = "changed on base since the job's fork point"


@dataclass(frozen=True)
class JobBranch:
    job_id: str
    ref: str                  # full ref name, e.g. refs/heads/job-1234567
    tip: str                  # commit sha
    allowed: tuple[str, ...]  # path prefixes this job may write, e.g. ("results/1234567/",)


@dataclass(frozen=True, slots=True)
class Change:
    """One path of the merged tree as a job left it (mode ``000000``: deleted)."""

    path: str
    mode: str
    sha: str
    job_id: str

    @property
    def deleted(self) -> bool:
        return self.mode == DELETED


@dataclass(frozen=True)
class Conflict:
    path: str               # WHOLE_BRANCH for a branch refused as a whole
    jobs: tuple[str, ...]
    reason: str


@dataclass
class MergeComputation:
    """What merging the branches onto ``base`` would do; nothing is written yet.

    ``to_merge`` holds every branch with history shared with base and commits
    not yet in it, conflicting ones included (a conflict refuses the whole
    merge, see :func:`write_merge`); ``changes`` has one entry per path.
    """

    base: str  # commit sha
    to_merge: list[JobBranch] = field(default_factory=list)
    identical: list[JobBranch] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


def _git(git_dir: Path, *args: str, input: bytes = b"",
         env: Mapping[str, str] | None = None) -> bytes:
    return git(git_dir, *args, input=input, env=env, text=False, hint=FSCK_HINT).stdout


def _commit_sha(git_dir: Path, rev: str) -> str:
    return _git(git_dir, "rev-parse", "--verify", f"{rev}^{{commit}}").decode().strip()


def list_refs(git_dir: Path, prefix: str = JOB_REF_PREFIX) -> dict[str, str]:
    """Every ref starting with ``prefix`` -> the sha it points at, from one ``for-each-ref``.

    for-each-ref patterns match whole path components or globs; asking for the
    prefix's directory and filtering here matches exactly what was asked.
    """
    folder = prefix[: prefix.rfind("/") + 1]
    return {ref: sha for ref, sha in for_each_ref(git_dir, ("refname", "objectname"),
                                                   *([folder] if folder else []))
            if ref.startswith(prefix)}


def _parents(git_dir: Path, revs: Iterable[str], *opts: str) -> dict[str, list[str]]:
    stdin = "".join(f"{r}\n" for r in revs).encode()
    out = _git(git_dir, "rev-list", "--parents", *opts, "--stdin", input=stdin)
    return {shas[0]: shas[1:] for shas in (line.split() for line in out.decode().splitlines())}


def _fork_points(git_dir: Path, base: str, history: dict[str, int], tips: Sequence[str],
                 graph: dict[str, list[str]]) -> dict[str, str | None]:
    """The nearest commit of base's history below each tip; None: unrelated history.

    A job branch is normally one or two commits on its fork point, so
    ``--no-walk`` reads of all tips' parents, then of their parents, settle
    almost every tip; the private history of all other tips (commits not
    reachable from base) comes from one more ``rev-list`` (which walks base's
    whole history to exclude it: seconds at 42k merged jobs). Of several
    candidates the nearest is the one listed first in base's ``--topo-order``
    history: none of the others descends from it.
    ``graph`` (empty when called) receives the parents of every private commit.
    """
    graph.update(_parents(git_dir, tips, "--no-walk=unsorted"))
    deeper = {p for t in tips for p in graph[t] if p not in history and p not in graph}
    for _ in range(NO_WALK_LEVELS):  # a job branch's first commit, without a history walk
        if not deeper:
            break
        found = _parents(git_dir, sorted(deeper), "--no-walk=unsorted")
        graph.update(found)
        deeper = {p for c in found.values() for p in c if p not in history and p not in graph}
    if deeper:
        graph.update(_parents(git_dir, [*sorted(deeper), f"^{base}"]))
    nearest: dict[str, str | None] = {}
    for tip in tips:
        stack = [tip]
        while stack:  # depth first, iterative: private histories may be long
            commit = stack[-1]
            if commit in nearest:
                stack.pop()
                continue
            todo = [p for p in graph[commit] if p not in history and p not in nearest]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            found = [p if p in history else nearest[p] for p in graph[commit]]
            nearest[commit] = min((f for f in found if f), key=history.__getitem__,
                                  default=None)
    return {t: nearest[t] for t in tips}


Diff = tuple[str, str, str, str, str]  # path, old mode, old sha, new mode, new sha


def _diffs(git_dir: Path, pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, list[Diff]]]:
    """``(commit, changes)`` for each ``(commit, other)`` pair that differs, from one process.

    ``diff-tree --stdin`` fed ``<commit> <other>`` diffs other -> commit and
    heads the block with ``<commit>`` alone (NUL-terminated under ``-z``);
    each change is ``:<old mode> <new mode> <old sha> <new sha> <status>``
    then the path. Pairs without differences print nothing.
    """
    stdin = "".join(f"{a} {b}\n" for a, b in pairs).encode()
    if not stdin:
        return
    for commit, changes in itertools.groupby(diff_tree(git_dir, "--stdin", input=stdin),
                                             key=lambda d: d.commit):
        yield commit, [(d.path, d.old_mode, d.old_sha, d.new_mode, d.new_sha) for d in changes]


def without_path(git_dir: Path, tree: str, path: str) -> str:
    """``tree`` without ``path`` (folders it leaves empty dropped too).

    The first commit of a job's branch has the plan commit's tree without the
    results folder (templates/job.sh.j2, ``jobstep checkout``), and a merge
    recognises such branches by computing the same tree. One ``ls-tree`` and
    one ``mktree`` per level of ``path``: the big results tree itself is
    never read, only dropped from its parent.
    """
    return _without(Path(git_dir), tree, path.strip("/").split("/")) or _mktree(git_dir, [])


def _without(git_dir: Path, tree: str, parts: list[str]) -> str | None:
    entries = list(ls_tree(git_dir, tree))
    for i, e in enumerate(entries):
        if e.path == parts[0]:
            if len(parts) == 1:
                del entries[i]
            elif e.mode == TREE:
                sub = _without(git_dir, e.sha, parts[1:])
                if sub is None:
                    del entries[i]
                else:
                    entries[i] = e._replace(sha=sub)
            break
    return _mktree(git_dir, entries) if entries else None


def _mktree(git_dir: Path, entries: Iterable[Entry]) -> str:
    return _git(git_dir, "mktree", "-z", input=b"".join(
        f"{e.mode} {e.type} {e.sha}\t{e.path}\0".encode("utf-8", "surrogateescape")
        for e in entries)).decode().strip()


def job_bases(git_dir: Path, graph: Mapping[str, list[str]], history: Mapping[str, int],
              forks: Mapping[str, str | None], results: str) -> dict[str, str]:
    """Tip -> first commit of its branch, for the branches of the job layout.

    In that layout a job's branch starts with a commit whose only parent is
    the fork point (the plan commit) and whose tree is the fork point's
    without ``results``: the job's run commit then holds its own results
    only. Any other branch (the layout before it: the run commit on the plan
    commit itself) is left out and merged by its fork-point diff. One
    ``mktree`` per distinct fork point (a handful of plan commits) and one
    ``cat-file`` for all first commits.
    """
    first: dict[str, str] = {}
    for tip, fork in forks.items():
        commit = tip
        while fork is not None and graph[commit] and graph[commit][0] not in history:
            commit = graph[commit][0]
        if fork is not None and graph[commit] == [fork]:
            first[tip] = commit
    if not first:
        return {}
    stripped = {f: without_path(git_dir, f"{f}^{{tree}}", results)
                for f in dict.fromkeys(forks[t] for t in first) if f}
    commits = list(dict.fromkeys(first.values()))
    trees = {c: o.data.split(b"\n", 1)[0].removeprefix(b"tree ").decode()
             for c, o in zip(commits, cat_file(git_dir, commits), strict=True)}
    return {tip: c for tip, c in first.items() if trees[c] == stripped[forks[tip]]}


def _replaced(git_dir: Path, base: str, starts: Mapping[str, str],
              groups: Mapping[str, list[JobBranch]]) -> dict[str, list[Diff]]:
    """Deletions of base's files in the areas of job-layout branches, as diff entries.

    Such a branch's diff holds only what the job wrote (its first commit has
    no results); what base has in the job's area from an earlier run goes.
    The areas' parent folders are listed with one ``ls-tree`` (typically one
    folder: ``results/``, 43k names at UK Biobank scale, which git parses faster than
    Python reads a tree object); only areas present in base are listed further.
    """
    areas = {a.rstrip("/"): tip for tip in starts for b in groups[tip] for a in b.allowed}
    if not areas:
        return {}
    folders = dict.fromkeys(a.rpartition("/")[0] for a in areas)
    names = set(ls_tree_names(git_dir, base, *(f"{f}/" for f in folders if f))
                ) if any(folders) else set()
    if "" in folders:
        names.update(ls_tree_names(git_dir, base))
    found = sorted(a for a in areas if a in names)
    if not found:
        return {}
    old: dict[str, list[Diff]] = {}
    for e in ls_tree(git_dir, base, *found, recursive=True):
        area = next(a for a in found if e.path == a or e.path.startswith(a + "/"))
        old.setdefault(areas[area], []).append((e.path, e.mode, e.sha, DELETED, "0" * 40))
    return old


def _ancestors(path: str) -> Iterator[str]:
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


def _matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """fnmatch globs over whole paths (``*`` also matches ``/``)."""
    if not patterns:
        return lambda _path: False
    rx = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))
    return lambda path: rx.match(path) is not None


Write = tuple[tuple[str, ...], Change]  # the jobs of one commit, and what it writes


def compute_merge(git_dir: Path, base: str, branches: Sequence[JobBranch],
                  shared: Sequence[str] = (), results: str = "") -> MergeComputation:
    """Decide what merging ``branches`` onto ``base`` does, with every conflict named.

    Each branch's changes are its diff against its fork point (the nearest
    commit of base's history), all branches in one ``diff-tree``. A path may
    be written by one job only, inside its ``allowed`` area; paths matching a
    ``shared`` glob may be written outside the areas and by several jobs if
    their content is identical. Jobs whose branches point at the same commit
    merge as one, within the union of their areas.

    A branch of the job layout (see :func:`job_bases`; ``results`` names the
    results folder) is diffed against its own first commit instead, which
    holds no results: a diff of the job's files, not of two trees holding
    every merged result. Its areas replace base's: base's files there that
    the job did not write are deleted, as the fork-point diff of a branch of
    the old layout deletes them.
    """
    git_dir = Path(git_dir)
    seen: set[str] = set()
    for b in branches:
        if b.job_id in seen:
            raise ValueError(f"job {b.job_id} given twice")
        seen.add(b.job_id)
    base = _commit_sha(git_dir, base)
    history = {sha: i for i, sha in
               enumerate(_git(git_dir, "rev-list", "--topo-order", base).decode().split())}
    groups: dict[str, list[JobBranch]] = {}
    for b in sorted(branches, key=lambda b: b.job_id):
        groups.setdefault(b.tip, []).append(b)
    comp = MergeComputation(base)
    pending = []
    for tip, jobs in groups.items():
        if tip in history:
            comp.identical.extend(jobs)
        else:
            pending.append(tip)
    graph: dict[str, list[str]] = {}
    forks = _fork_points(git_dir, base, history, pending, graph) if pending else {}
    for tip, fork in forks.items():
        if fork is None:
            comp.conflicts.append(Conflict(WHOLE_BRANCH, _names(groups[tip]), UNRELATED))
        else:
            comp.to_merge.extend(groups[tip])
    comp.to_merge.sort(key=lambda b: b.job_id)

    is_shared = _matcher(shared)
    writes: dict[str, list[Write]] = {}
    old_forks: dict[str, list[Write]] = {}
    starts = job_bases(git_dir, graph, history, forks, results) if results else {}
    related = [(tip, starts.get(tip, fork)) for tip, fork in forks.items() if fork is not None]
    diffs = dict(_diffs(git_dir, related))
    for tip, gone in _replaced(git_dir, base, starts, groups).items():
        written = {d[0] for d in diffs.get(tip, ())}
        diffs.setdefault(tip, []).extend(d for d in gone if d[0] not in written)
    for tip, diff in diffs.items():
        jobs = groups[tip]
        names = _names(jobs)
        allowed = tuple(dict.fromkeys(p for b in jobs for p in b.allowed))
        for path, _old_mode, _old_sha, mode, sha in diff:
            owner = next((b for b in jobs if path.startswith(b.allowed)), jobs[0])
            write = (names, Change(path, mode, sha, owner.job_id))
            if not is_shared(path) and not path.startswith(allowed):
                comp.conflicts.append(Conflict(path, names,
                                               OUTSIDE.format(", ".join(allowed) or "nothing")))
            writes.setdefault(path, []).append(write)
            if forks[tip] != base:
                old_forks.setdefault(forks[tip], []).append(write)

    for path, ws in writes.items():
        comp.changes.append(ws[0][1])
        if len(ws) > 1:
            names = tuple(n for jobs, _ in ws for n in jobs)
            if len({(c.mode, c.sha) for _, c in ws}) > 1:
                comp.conflicts.append(Conflict(path, names, DIFFERENT))
            elif not is_shared(path):
                comp.conflicts.append(Conflict(path, names, NOT_SHARED))
    comp.conflicts += _clashes(writes)
    comp.conflicts += _base_changes(git_dir, base, old_forks)
    comp.conflicts.sort(key=lambda c: (c.path, c.reason, c.jobs))
    return comp


def _names(jobs: Iterable[JobBranch]) -> tuple[str, ...]:
    return tuple(b.job_id for b in jobs)


def _clashes(writes: Mapping[str, list[Write]]) -> list[Conflict]:
    """A file one job writes where another job writes into a directory of that name.

    Checked here because ``update-index --index-info`` would silently drop
    one side. A single job cannot clash with itself: its own tree is valid.
    """
    files = {p: ws for p, ws in writes.items() if any(not c.deleted for _, c in ws)}
    clashes: dict[str, dict[str, None]] = {}
    for path, ws in files.items():
        for d in _ancestors(path):
            if d in files:
                jobs = clashes.setdefault(d, {})
                jobs.update(dict.fromkeys(n for w in (files[d], ws) for names, _ in w
                                          for n in names))
    return [Conflict(d, tuple(jobs), CLASH) for d, jobs in clashes.items()]


def _base_changes(git_dir: Path, base: str,
                  old_forks: Mapping[str, list[Write]]) -> list[Conflict]:
    """Paths a job wrote that base changed after the job's (older) fork point.

    One ``diff-tree`` of base against every distinct old fork point (usually
    a handful: the plan commits), streamed one fork at a time. Writing what
    base already has is no conflict.
    """
    found = []
    for fork, diff in _diffs(git_dir, ((fork, base) for fork in old_forks)):
        now = {path: (old_mode, old_sha) for path, old_mode, old_sha, _m, _s in diff}
        files = {p for p, (mode, _) in now.items() if mode != DELETED}
        dirs = {d for p in files for d in _ancestors(p)}
        for names, c in old_forks[fork]:
            if c.path in now:
                changed = now[c.path] != (c.mode, c.sha)
            else:
                changed = not c.deleted and (c.path in dirs or
                                             any(d in files for d in _ancestors(c.path)))
            if changed:
                found.append(Conflict(c.path, names, BASE_CHANGED))
    return found


def _chunks(branches: Sequence[JobBranch], size: int) -> list[list[JobBranch]]:
    """Branches in job-ID order, cut so that each chunk has at most ``size`` distinct tips.

    Jobs sharing a commit stay together: a commit is a parent only once.
    """
    groups: dict[str, list[JobBranch]] = {}
    for b in sorted(branches, key=lambda b: b.job_id):
        groups.setdefault(b.tip, []).append(b)
    tips = list(groups)
    return [[b for t in tips[i:i + size] for b in groups[t]]
            for i in range(0, len(tips), size)] or [[]]


def write_merge(git_dir: Path, base: str, comp: MergeComputation, *, chunk_size: int = 1000,
                message: Callable[[list[JobBranch]], str] | str,
                ident: dict[str, str] | None = None) -> str:
    """Write the merge as a chain of commits and return the last one; no ref moves.

    Each commit has base (then the previous commit) as first parent and at
    most ``chunk_size`` job commits as further parents, and a cumulative tree:
    one commit with 42,767 parents is valid, but ``git log -- path`` takes
    minutes on it and ``git show`` runs out of memory. Trees come from a
    temporary index (``read-tree`` base, ``update-index`` per chunk,
    ``write-tree``); commits from ``hash-object``, since ``commit-tree`` with
    tens of thousands of ``-p`` exceeds the argument-length limit. Changes
    of no merged job (e.g. a bookkeeping file the caller added) go into the
    last commit. ``ident``: environment such as ``GIT_AUTHOR_NAME`` or
    ``GIT_COMMITTER_DATE``; with fixed dates the result is reproducible.

    ``write-tree --missing-ok``: otherwise every chunk re-checks every entry
    of every tree it rebuilds (42,767 object look-ups for ``results/`` alone,
    each a ``stat`` in a store full of loose objects). Objects of job changes
    exist (the store accepted the job commits); those of the caller's own
    changes are checked once here.
    """
    if comp.conflicts:
        raise ValueError(f"{len(comp.conflicts)} conflict(s); refusing to write the merge")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    git_dir = Path(git_dir)
    base = _commit_sha(git_dir, base)
    if base != comp.base:
        raise ValueError(f"the merge was computed on {comp.base}, not on {base}")
    env = dict(ident or {})
    author = _git(git_dir, "var", "GIT_AUTHOR_IDENT", env=env).decode().strip()
    committer = _git(git_dir, "var", "GIT_COMMITTER_IDENT", env=env).decode().strip()
    chunks = _chunks(comp.to_merge, chunk_size)
    merged = {b.job_id for b in comp.to_merge}
    by_job: dict[str | None, list[Change]] = {}
    for c in comp.changes:
        by_job.setdefault(c.job_id if c.job_id in merged else None, []).append(c)
    _require_objects(git_dir, [c.sha for c in by_job.get(None, [])
                               if not c.deleted and c.mode != GITLINK])
    with tempfile.TemporaryDirectory(prefix="fairbig-merge-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(git_dir, "read-tree", base, env=index)
        head = base
        for n, chunk in enumerate(chunks, 1):
            changes = [c for b in chunk for c in by_job.get(b.job_id, ())]
            if n == len(chunks):
                changes += by_job.get(None, [])
            if changes:
                _git(git_dir, "update-index", "-z", "--index-info", env=index, input=b"".join(
                    f"{c.mode} {c.sha}\t{c.path}\0".encode("utf-8", "surrogateescape")
                    for c in changes))
            tree = _git(git_dir, "write-tree", "--missing-ok", env=index).decode().strip()
            parents = [head, *dict.fromkeys(b.tip for b in chunk)]
            text = message(chunk) if callable(message) else message
            obj = _commit_object(tree, parents, author, committer, text)
            head = _git(git_dir, "hash-object", "-t", "commit", "-w", "--stdin",
                        input=obj).decode().strip()
    return head


def _require_objects(git_dir: Path, shas: Sequence[str]) -> None:
    if not shas:
        return
    missing = missing_objects(git_dir, shas)
    if missing:
        raise ValueError(f"objects of changes not in the repository: {', '.join(missing)}")


def _commit_object(tree: str, parents: Sequence[str], author: str, committer: str,
                   message: str) -> bytes:
    header = [f"tree {tree}", *(f"parent {p}" for p in parents),
              f"author {author}", f"committer {committer}"]
    return ("\n".join(header) + "\n\n" + message.rstrip("\n") + "\n").encode()


def update_ref(git_dir: Path, ref: str, new: str, old: str) -> None:
    """Point ``ref`` at ``new`` only if it still points at ``old``; GitError if it moved.

    The single publishing step of a merge: a concurrent merge or push between
    computing and publishing makes this fail instead of being overwritten.
    """
    _git(Path(git_dir), "update-ref", ref, new, old)
