"""Annex keys of trees and diffs, read in bulk: one git process per question."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .proc import git, run

SYMLINK = "120000"


@dataclass(frozen=True)
class AnnexedFile:
    path: str
    key: str


def looks_like_key(target: str) -> bool:
    return "/annex/objects/" in target and "--" in os.path.basename(target)


def blob_texts(git_dir: Path, shas: Sequence[str]) -> list[str]:
    """Contents of many small blobs through one ``cat-file --batch``."""
    if not shas:
        return []
    out = git(git_dir, "cat-file", "--batch", input="".join(f"{s}\n" for s in shas).encode(),
              text=False).stdout
    texts, pos = [], 0
    for _ in shas:
        nl = out.index(b"\n", pos)
        size = int(out[pos:nl].split()[2])
        texts.append(out[nl + 1: nl + 1 + size].decode(errors="replace"))
        pos = nl + 1 + size + 1
    return texts


def keys_of(git_dir: Path, entries: Iterable[tuple[str, str, str]]) -> list[AnnexedFile]:
    """Annexed files among ``(path, mode, blob sha)`` entries."""
    links = [(p, s) for p, m, s in entries if m == SYMLINK]
    targets = blob_texts(git_dir, [s for _, s in links])
    return [AnnexedFile(p, os.path.basename(t)) for (p, _), t in zip(links, targets, strict=True)
            if looks_like_key(t)]


def diff_entries(git_dir: Path, old: str, new: str, path: str = "") -> list[tuple[str, str, str]]:
    """Added or modified ``(path, mode, sha)`` between two commits, one process."""
    args = ["diff-tree", "-r", "-z", "--no-renames", "--diff-filter=AM", old, new]
    if path:
        args += ["--", path]
    fields = git(git_dir, *args).stdout.split("\0")
    out = []
    for meta, p in zip(fields[0::2], fields[1::2], strict=False):
        parts = meta.lstrip(":").split()
        if len(parts) >= 5:
            out.append((p, parts[1], parts[3]))
    return out


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
