"""Keep the analysis dataset in step with the output store's main branch.

``fairbig merge`` moves the store's main forward; the analysis dataset must
follow (fast-forward) before it can plan again, and the git-annex branch
must learn where the merged results are. Doing this as its own idempotent
step means a merge killed after publishing main is completed by the next
``merge`` or ``plan``.
"""

from __future__ import annotations

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


def sync(a: Analysis) -> int:
    """Fast-forward the analysis dataset to the store's main; returns keys recorded."""
    branch = a.default_branch
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
