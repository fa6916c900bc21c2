"""Annex keys of trees and diffs, read in bulk: one git process per question."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .gitcmd import SYMLINK, cat_file, diff_tree
from .proc import run


@dataclass(frozen=True)
class AnnexedFile:
    path: str
    key: str


def key_of_link(target: str) -> str:
    """The annex key a symlink target ends in (``…/annex/objects/Xx/Yy/KEY/KEY``), or ""
    for a link that is not into the annex."""
    name = os.path.basename(target)
    return name if "/annex/objects/" in target and "--" in name else ""


def got_content(repo: Path, key: str, *source: str, hint: str = "") -> Path:
    """The local file of ``key`` in ``repo``, got first (``git annex get --key``, from
    ``source`` options such as ``--from REMOTE``); raises :class:`CommandError` if it
    cannot be got. One place for what fetch and the plan's annexed tables both need."""
    run(["git", "annex", "get", "--quiet", "--key", key, *source], cwd=repo, hint=hint)
    return repo / run(["git", "annex", "contentlocation", key], cwd=repo).stdout.strip()


def key_fields(key: str) -> tuple[str, str]:
    """Backend and size (``""`` if the key records none) of ``BACKEND-sSIZE--NAME``."""
    backend, *fields = key.split("--", 1)[0].split("-")
    return backend, next((f[1:] for f in fields if f[:1] == "s" and f[1:].isdigit()), "")


def blob_texts(git_dir: Path, shas: Sequence[str]) -> list[str]:
    """Contents of many small blobs through one ``cat-file --batch``."""
    return [o.data.decode(errors="replace") for o in cat_file(git_dir, shas)]


def keys_of(git_dir: Path, entries: Iterable[tuple[str, str, str]]) -> list[AnnexedFile]:
    """Annexed files among ``(path, mode, blob sha)`` entries."""
    links = [(p, s) for p, m, s in entries if m == SYMLINK]
    keys = map(key_of_link, blob_texts(git_dir, [s for _, s in links]))
    return [AnnexedFile(p, k) for (p, _), k in zip(links, keys, strict=True) if k]


def diff_entries(git_dir: Path, old: str, new: str, path: str = "") -> list[tuple[str, str, str]]:
    """Added or modified ``(path, mode, sha)`` between two commits, one process."""
    spec = ["--", path] if path else []
    return [(d.path, d.new_mode, d.new_sha)
            for d in diff_tree(git_dir, "--diff-filter=AM", old, new, *spec)]


def missing_in(repo: Path, remote: str, keys: Sequence[str]) -> list[str]:
    """Keys ``remote`` does not have, asked in one batch (no content transferred)."""
    if not keys:
        return []
    res = run(["git", "annex", "checkpresentkey", "--batch", remote], cwd=repo,
              input="".join(k + "\n" for k in keys))
    answers = res.stdout.split()
    return [k for k, a in zip(keys, answers, strict=True) if a != "1"]


def record_present(repo: Path, remote: str, keys: Sequence[str]) -> None:
    """Tell the git-annex branch that ``remote`` holds ``keys``, in one batch."""
    if not keys:
        return
    uuid = run(["git", "config", f"remote.{remote}.annex-uuid"], cwd=repo).stdout.strip()
    run(["git", "annex", "setpresentkey", "--batch"], cwd=repo,
        input="".join(f"{k} {uuid} 1\n" for k in keys))
