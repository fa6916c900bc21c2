"""Keep the analysis dataset in step with the output store's main branch.

``fairbig merge`` moves the store's main forward; the analysis dataset must
follow (fast-forward) before it can plan again, and the git-annex branch
must learn where the merged results are. Doing this as its own idempotent
step means a merge killed after publishing main is completed by the next
``merge`` or ``plan``.

The analysis dataset does not check out the results folder: its HEAD holds
every merged result (``git ls-tree``/``git show`` list them), but writing
42,767 x 3 links into its working tree took longer than the whole merge
should (see :func:`leave_out_results`).
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .annexkeys import keys_of
from .annexlog import record_present
from .contract import OUTPUT, OUTPUT_STORAGE
from .dataset import Analysis
from .errors import FairbigError
from .gitcmd import SYMLINK, DiffEntry, diff_tree, git, git_lock
from .proc import run


def store_main(a: Analysis) -> str:
    return run(["git", "--git-dir", str(a.output_git), "rev-parse",
                f"refs/heads/{a.default_branch}"]).stdout.strip()


def is_ancestor(a: Analysis, old: str, new: str) -> bool:
    return run(["git", "merge-base", "--is-ancestor", old, new], cwd=a.root,
               check=False).returncode == 0


GUARD_MARK = "# fairbig: the results folder is not checked out here"
GUARD = GUARD_MARK + """
if git rev-parse -q --verify HEAD >/dev/null &&
   ! git diff --cached --quiet --diff-filter=D HEAD -- {pathspec}; then
  echo "fairbig: this commit would delete {results}/, which is not checked out in" \
    "the analysis dataset (run 'git reset -q', then save named paths: datalad save PATH)" >&2
  exit 1
fi
"""


def sparse_patterns(results: str) -> tuple[str, ...]:
    """The analysis dataset's sparse checkout: everything but ``<results>/``."""
    return ("/*", f"!/{results}/")


def leave_out_results(root: Path, results: str) -> bool:
    """Take ``<results>/`` out of the analysis dataset's working tree; False if the
    sparse checkout was on already (the user's own patterns, e.g. a job folder added
    with ``git sparse-checkout add``, are kept).

    The merged results stay in HEAD and the store; annexed content already here stays
    in ``.git/annex``. Refused if anything under ``<results>/`` is not committed, so
    nothing a user has there is lost. DataLad counts a file that is not checked out as
    deleted: a ``datalad save`` without paths would commit the deletion of every result,
    so a pre-commit hook refuses commits that delete anything under ``<results>/``.
    Non-cone patterns (everything but ``<results>/``): cone mode cannot leave out one
    folder without listing every other one, and a folder a user adds later would be
    outside it (``git add`` refuses such paths).
    """
    on = run(["git", "config", "--bool", "core.sparseCheckout"], cwd=root,
             check=False).stdout.strip()
    if on == "true":
        return False
    dirty = run(["git", "status", "--porcelain", "--untracked-files=all", "--", f"{results}/"],
                cwd=root).stdout.splitlines()
    if dirty:
        raise FairbigError(
            f"{len(dirty)} uncommitted change(s) under {results}/ in the analysis dataset "
            f"{root}, first: {dirty[0][3:]}",
            f"save or remove them, then run again: fairbig no longer checks out {results}/ "
            "here (the merged results stay in the output store)")
    run(["git", "sparse-checkout", "set", "--no-cone", *sparse_patterns(results)], cwd=root)
    _guard_results(root, results)
    return True


def _guard_results(root: Path, results: str) -> None:
    """Append the guard to the pre-commit hook (git-annex's own line stays first)."""
    hooks = root / run(["git", "rev-parse", "--git-path", "hooks"], cwd=root).stdout.strip()
    hook = hooks / "pre-commit"
    text = hook.read_text() if hook.exists() else "#!/bin/sh\n"
    if GUARD_MARK in text:
        return
    hooks.mkdir(parents=True, exist_ok=True)
    hook.write_text(text.rstrip("\n") + "\n" + GUARD.format(
        pathspec=shlex.quote(f"{results}/"), results=results))
    hook.chmod(0o755)


def share_store_objects(root: Path, store_git: Path) -> None:
    """Read the output store's objects in place (a git alternate) instead of copying them.

    A fetch of main after a merge copied every new commit, tree and link into the
    analysis dataset (pack-objects, index-pack, then a connectivity walk): 18 s after
    the first merge of 42,767 jobs. With the store's object directory as an alternate,
    following the store only moves refs (see :func:`sync`). Safe because the store never
    drops an object main reaches (main only moves forward; job branches that are deleted
    unmerged were never fetched); objects made here stay here. The store's path is
    already what fairbig reads the store by.
    """
    alternates = root / run(["git", "rev-parse", "--git-path", "objects/info/alternates"],
                            cwd=root).stdout.strip()
    objects = str((store_git / "objects").resolve())
    lines = alternates.read_text().splitlines() if alternates.exists() else []
    if objects not in lines:
        alternates.parent.mkdir(parents=True, exist_ok=True)
        alternates.write_text("".join(f"{line}\n" for line in [*lines, objects]))


def fast_forward(root: Path, head: str, new: str, changes: Sequence[DiffEntry],
                 results: str) -> None:
    """Move HEAD's branch from ``head`` to ``new`` (``changes``: their diff), index and
    (sparse) working tree too; the compare-and-swap ``update-ref`` refuses if HEAD moved
    meanwhile.

    A merge changes ``<results>/``, which is not checked out (:func:`leave_out_results`),
    and ``.fairbig/merged.tsv``: :func:`_apply_changes` writes just those entries into the
    index. ``read-tree -m -u`` did what ``merge --ff-only`` does, without git-annex's
    post-merge hook, but walked both trees and every index entry (0.5 s and a stat
    refresh of 0.1 s at 43k merged jobs, whatever the merge brought); it remains the way
    for any other change (the user's own sparse patterns, a submodule, a deletion, a
    local change in the way), where git's own checks and messages are what we want.
    """
    if not _apply_changes(root, changes, results):
        # read-tree trusts the index's stat data; refresh it first, as merge does (the
        # entries not checked out are skipped). Non-zero when a file is modified: then
        # read-tree says which one, if the merge touches it.
        run(["git", "update-index", "-q", "--refresh"], cwd=root, check=False)
        run(["git", "read-tree", "-m", "-u", head, new], cwd=root,
            hint="commit or remove the local changes that the merged results would overwrite")
    run(["git", "update-ref", "-m", f"fairbig: fast-forward to {OUTPUT}", "HEAD", new, head],
        cwd=root)


FILE_MODES = ("100644", "100755", SYMLINK)
# git looks for every skip-worktree file in the working tree at each index read (0.06 s
# at 43k merged jobs); fairbig, which just checked, wrote nothing under the results
GIT_SPARSE = ("git", "-c", "sparse.expectFilesOutsideOfPatterns=true")


def _apply_changes(root: Path, changes: Sequence[DiffEntry], results: str) -> bool:
    """Write ``changes`` into the index, the checked-out ones into the working tree too;
    False, with nothing done, where :func:`fast_forward` must leave it to ``read-tree``.

    Only when the sparse patterns are :func:`sparse_patterns` and every checked-out change
    adds or modifies a file; one added where something is, or modified where it has a
    local change (staged or not), is refused. The index is rewritten as git does: copied
    to ``index.lock`` (taken exclusively), changed there (``GIT_INDEX_FILE``), renamed
    over the index; results are marked skip-worktree before anyone can see them.
    """
    sparse, index = (root / p for p in run(
        ["git", "rev-parse", "--git-path", "info/sparse-checkout", "--git-path", "index"],
        cwd=root).stdout.splitlines())
    if not sparse.exists() or \
            tuple(sparse.read_text().split()) != sparse_patterns(results):
        return False
    hidden = [d for d in changes if d.path.startswith(f"{results}/")]
    shown = [d for d in changes if not d.path.startswith(f"{results}/")]
    if any(d.status not in "AM" or d.new_mode not in FILE_MODES
           or (d.status == "M" and d.old_mode not in FILE_MODES) for d in shown):
        return False
    in_the_way = [d.path for d in shown if d.status == "A" and _in_the_way(root, d.path)]
    modified = [d.path for d in shown if d.status == "M"]
    if modified:
        status = run([*GIT_SPARSE, "status", "--porcelain", "-z", "--untracked-files=no",
                      "--", *modified], cwd=root).stdout
        in_the_way += [rec[3:] for rec in status.split("\0") if rec]
    if in_the_way:
        # read-tree overwrites an untracked file in a sparse checkout (git 2.39: "will
        # not overwrite with sparse update", then does): refused here, nothing written
        raise FairbigError(f"{len(in_the_way)} local change(s) in the analysis dataset "
                           f"{root} where the merged main changes files, first: "
                           f"{in_the_way[0]}", "move them away or undo them ('git checkout -- "
                           "PATH'; staged: 'git restore --staged PATH' first), then run "
                           "'fairbig merge' again")
    try:
        with git_lock(index) as lock:
            shutil.copyfile(index, lock)
            env = {"GIT_INDEX_FILE": str(lock)}
            run([*GIT_SPARSE, "update-index", "-z", "--index-info"], cwd=root, env=env,
                input="".join(f"{d.new_mode} {d.new_sha}\t{d.path}\0" for d in changes))
            kept = [d.path for d in hidden if d.status != "D"]
            if kept:
                run([*GIT_SPARSE, "update-index", "-z", "--skip-worktree", "--stdin"],
                    cwd=root, env=env, input="".join(f"{p}\0" for p in kept))
            if shown:
                run([*GIT_SPARSE, "checkout-index", "-f", "-u", "-z", "--stdin"], cwd=root,
                    env=env, input="".join(f"{d.path}\0" for d in shown))
    except FileExistsError:
        raise FairbigError(f"another git process is changing the analysis dataset's index "
                           f"({index}.lock exists)", "wait for it to end, or remove that "
                           "file if none runs, then run 'fairbig merge' again") from None
    return True


def _in_the_way(root: Path, path: str) -> bool:
    """Something (untracked) where a new file goes, or a parent folder that is not one."""
    where = root / path
    return where.is_symlink() or where.exists() or any(
        p.is_symlink() or (p.exists() and not p.is_dir()) for p in where.parents
        if root in p.parents)


def sync(a: Analysis, push: bool = True) -> int:
    """Fast-forward the analysis dataset to the store's main; returns keys recorded.
    ``push``: the availability records reach the store too (:func:`push_annex_records`;
    a merge starts without, see there)."""
    branch = a.default_branch
    leave_out_results(a.root, a.config.results)
    share_store_objects(a.root, a.output_git)
    # No fetch: the objects are shared (share_store_objects), so following the store is
    # setting the remote-tracking refs to its tips, without fetch's walk over every new
    # object to prove what the store already holds complete.
    # (cat-file looks the two refs up; for-each-ref would list the 42k job branches)
    names = (branch, "git-annex")
    tips = git(a.output_git, "cat-file", "--batch-check=%(objectname)",
               input="".join(f"refs/heads/{n}\n" for n in names)).stdout.split("\n")
    run(["git", "update-ref", "--stdin"], cwd=a.root, input="".join(
        f"update refs/remotes/{OUTPUT}/{n} {sha}\n" for n, sha in zip(names, tips, strict=False)
        if sha and not sha.endswith(" missing")))
    head = run(["git", "rev-parse", "HEAD"], cwd=a.root).stdout.strip()
    main = run(["git", "rev-parse", f"refs/remotes/{OUTPUT}/{branch}"], cwd=a.root).stdout.strip()
    if head == main or is_ancestor(a, main, head):
        if push:
            push_annex_records(a)
        return 0
    if not is_ancestor(a, head, main):
        raise FairbigError(f"the analysis dataset and the output store's {branch} have diverged",
                           f"merge them by hand: git -C {a.root} merge {OUTPUT}/{branch}")
    gdir = a.root / ".git"
    results = a.config.results
    changes = list(diff_tree(gdir, head, main))
    files = keys_of(gdir, [(d.path, d.new_mode, d.new_sha) for d in changes
                           if d.status in "AM" and d.path.startswith(f"{results}/")])
    with ThreadPoolExecutor(max_workers=1) as pool:
        # the git-annex branch learns where the results are (and takes in the store's)
        # while git moves the index and HEAD: neither reads what the other writes
        recording = pool.submit(record_present, a.root, OUTPUT_STORAGE,
                                sorted({f.key for f in files}))
        fast_forward(a.root, head, main, changes, results)
        recording.result()
    if push:
        _push_git_annex(a)
    return len(files)


def push_annex_records(a: Analysis) -> None:
    """Availability records the store lacks reach it: a merge's own, or those of a merge
    killed before its push; otherwise a clone of the store would not know where the
    merged results are.

    Not at the start of a merge: the store would advertise every job branch the merge
    is about to delete (0.4 s at 42k branches); the merge pushes once they are gone."""
    local = run(["git", "rev-parse", "--verify", "-q", "refs/heads/git-annex"], cwd=a.root,
                check=False).stdout.strip()
    store = run(["git", "rev-parse", "--verify", "-q", f"refs/remotes/{OUTPUT}/git-annex"],
                cwd=a.root, check=False).stdout.strip()
    if not local or local == store or (store and is_ancestor(a, local, store)):
        return
    run(["git", "annex", "merge"], cwd=a.root)
    _push_git_annex(a)


def _push_git_annex(a: Analysis) -> None:
    """Push the git-annex branch with the store's main out of sight of both sides.

    Both sides of a push walk from the commits pushed down to what the other side has,
    by date: with main in view, those walks went through every job commit newer than
    the store's git-annex branch (1.7 s to pack and 1.7 s to check on receipt, 5,700
    objects pushed after a first merge of 42k jobs whose analysis had recorded keys
    before it: 3.7 s; 0.35 s so). The git-annex branch shares no history with main, so
    this changes what the walks cross, not what is sent or accepted. On the store's
    side main is hidden as a ref, as HEAD (its symbolic ref) and among the refs of the
    object store the check reads during the push's quarantine. The store is a local
    path (:mod:`fairbig.stores`): its ``receive-pack`` runs here, with these settings.
    """
    settings = (f"receive.hideRefs=refs/heads/{a.default_branch}", "receive.hideRefs=HEAD",
                "core.alternateRefsPrefixes=refs/heads/git-annex")
    receive = "git " + " ".join(f"-c {s}" for s in settings) + " receive-pack"
    run(["git", "push", "-q", f"--receive-pack={receive}", OUTPUT, "git-annex"],
        cwd=a.root, hint="check that the output store is writable")
