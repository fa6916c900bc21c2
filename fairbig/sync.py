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
from pathlib import Path

from .annexkeys import diff_entries, keys_of, record_present
from .contract import OUTPUT, OUTPUT_STORAGE
from .dataset import Analysis
from .errors import FairbigError
from .gitcmd import git
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
    run(["git", "sparse-checkout", "set", "--no-cone", "/*", f"!/{results}/"], cwd=root)
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


def fast_forward(root: Path, head: str, new: str) -> None:
    """Move HEAD's branch from ``head`` to ``new``, index and (sparse) working tree too.

    ``read-tree -m -u`` does what ``merge --ff-only`` does to the index and working
    tree, without git-annex's post-merge hook: its scan of every new path for unlocked
    files (7 s after a merge of 42,767 jobs; results are locked links) is done by
    git-annex itself when it next needs its keys database. The compare-and-swap
    ``update-ref`` refuses if HEAD moved meanwhile.
    """
    # read-tree trusts the index's stat data; refresh it first, as merge does (the
    # entries not checked out are skipped). Non-zero when a file is modified: then
    # read-tree says which one, if the merge touches it.
    run(["git", "update-index", "-q", "--refresh"], cwd=root, check=False)
    run(["git", "read-tree", "-m", "-u", head, new], cwd=root,
        hint="commit or remove the local changes that the merged results would overwrite")
    run(["git", "update-ref", "-m", f"fairbig: fast-forward to {OUTPUT}", "HEAD", new, head],
        cwd=root)


def sync(a: Analysis) -> int:
    """Fast-forward the analysis dataset to the store's main; returns keys recorded."""
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
        _push_annex_records(a)
        return 0
    if not is_ancestor(a, head, main):
        raise FairbigError(f"the analysis dataset and the output store's {branch} have diverged",
                           f"merge them by hand: git -C {a.root} merge {OUTPUT}/{branch}")
    gdir = a.root / ".git"
    files = keys_of(gdir, diff_entries(gdir, head, main, a.config.results))
    record_present(a.root, OUTPUT_STORAGE, sorted({f.key for f in files}))
    # setpresentkey leaves its records in the journal; merge commits them
    # and unites our git-annex branch with the store's before we push it.
    run(["git", "annex", "merge"], cwd=a.root)
    fast_forward(a.root, head, main)
    run(["git", "push", "-q", OUTPUT, "git-annex"], cwd=a.root,
        hint="check that the output store is writable")
    return len(files)


def _push_annex_records(a: Analysis) -> None:
    """Availability records that a merge killed before its last push committed here
    reach the store now; otherwise a clone of the store would not know where the
    merged results are."""
    local = run(["git", "rev-parse", "--verify", "-q", "refs/heads/git-annex"], cwd=a.root,
                check=False).stdout.strip()
    store = run(["git", "rev-parse", "--verify", "-q", f"refs/remotes/{OUTPUT}/git-annex"],
                cwd=a.root, check=False).stdout.strip()
    if not local or local == store or (store and is_ancestor(a, local, store)):
        return
    run(["git", "annex", "merge"], cwd=a.root)
    run(["git", "push", "-q", OUTPUT, "git-annex"], cwd=a.root,
        hint="check that the output store is writable")
