"""Reading dataset layouts from git trees: no checkout, no annex, no subdataset install."""

from __future__ import annotations

from pathlib import Path

from .gitcmd import GITLINK, SYMLINK, cat_file, ls_tree


def git_dir_of(worktree: Path) -> Path:
    """The git directory of a work tree (``.git`` may be a file pointing elsewhere)."""
    dotgit = worktree / ".git"
    if dotgit.is_file():
        target = dotgit.read_text().strip().removeprefix("gitdir: ")
        return (worktree / target).resolve()
    return dotgit


def gitlink(git_dir: Path, treeish: str, path: str) -> str:
    """The commit a superdataset records for the subdataset at ``path``."""
    entries = list(ls_tree(git_dir, treeish, path))
    if not entries or entries[0].mode != GITLINK:
        return ""
    return entries[0].sha


def symlinked_outputs(git_dir: Path, treeish: str, outputs: list[str]) -> list[tuple[str, str]]:
    """``(output, symlink)`` for each output path that goes through a committed symlink.

    A job deletes and writes its outputs; a link in the tree on the way (``code/escape``
    -> a host directory) would take that outside the dataset. One ``ls-tree`` per
    distinct parent directory, not per output, so 42k ``results/<job>`` cost one call.
    The output itself may be an annexed file (a link into the annex): that one is fine.
    """
    wanted: dict[str, set[str]] = {}  # parent directory -> names on some output's way
    for out in outputs:
        parts = out.split("/")
        for i in range(len(parts)):
            wanted.setdefault("/".join(parts[:i]), set()).add(parts[i])
    links: dict[str, str] = {}
    for parent, names in wanted.items():
        for e in ls_tree(git_dir, treeish, *([parent + "/"] if parent else [])):
            name = e.path.rsplit("/", 1)[-1]
            if e.mode == SYMLINK and name in names:
                links[e.path] = e.sha
    found = []
    for out in outputs:
        parts = out.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix not in links:
                continue
            if prefix == out and b"/annex/objects/" in next(cat_file(git_dir,
                                                                      [links[prefix]])).data:
                continue
            found.append((out, prefix))
            break
    return found
