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


def sparse_patterns(results: str) -> list[str]:
    """Non-cone sparse-checkout patterns: everything but ``<results>/``. Non-cone, as
    cone mode cannot leave out one folder without listing every other one (a folder
    the user adds later would vanish from the working tree)."""
    return ["/*", f"!/{results}/"]


def leave_out_results(root: Path, results: str) -> bool:
    """Take ``<results>/`` out of the analysis dataset's working tree; False if the
    sparse checkout was on already (the user's own patterns, e.g. a job folder added
    with ``git sparse-checkout add``, are kept).

    The merged results stay in HEAD and the store; annexed content already here stays
    in ``.git/annex``. Refused if anything under ``<results>/`` is not committed, so
    nothing a user has there is lost. DataLad counts a file that is not checked out as
    deleted: a ``datalad save`` without paths would commit the deletion of every result,
    so a pre-commit hook refuses commits that delete anything under ``<results>/``.
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


def sync(a: Analysis) -> int:
    """Fast-forward the analysis dataset to the store's main; returns keys recorded."""
    branch = a.default_branch
    leave_out_results(a.root, a.config.results)
    # --no-recurse-submodules: the analysis dataset has subdatasets, so git's default
    # (on-demand) diffs every fetched commit against all its parents looking for
    # gitlink changes: merge commits of 1,000 parents over a tree of every result, two
    # minutes for 1,000 new jobs at 42k merged. The merge never changes a subdataset.
    run(["git", "fetch", "-q", "--no-recurse-submodules", OUTPUT,
         f"+refs/heads/{branch}:refs/remotes/{OUTPUT}/{branch}",
         f"+refs/heads/git-annex:refs/remotes/{OUTPUT}/git-annex"], cwd=a.root,
        hint="check that the output store is reachable")
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
    run(["git", "merge", "-q", "--ff-only", f"refs/remotes/{OUTPUT}/{branch}"], cwd=a.root)
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
