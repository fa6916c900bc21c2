"""Annex keys of trees and diffs, read in bulk: one git process per question (the
availability of many keys: one per core, see :func:`missing_in`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .gitcmd import SYMLINK, cat_file, diff_tree
from .proc import run, run_each


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


# Availability checks in parallel (:func:`missing_in`). One ``checkpresentkey --batch``
# against the encrypted ORA remote costs ~0.43 ms per key in git-annex <-> ORA round
# trips (one core, neither side busy all the time) plus ~0.2 s to start. Measured on
# the 2-core machine (median of 5): 500 keys 0.39 s serial / 0.28 s two processes,
# 2,000 keys 0.99 / 0.60 s, 4,000 keys 1.81 / 0.97 s, 42,767 keys 21.9 / 13.5 s
# (benchmarks/bench_merge_full.py, load 0.7-4.8); three processes on two cores lose
# to two.
MIN_KEYS_PER_WORKER = 250   # below it a process's start costs more than it saves
MAX_WORKERS = 8             # each process pair also opens the store: do not flood it


def _cpus() -> int:
    """CPUs this process may run on (a SLURM or cgroup allotment, not the node's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        (os.cpu_count() or 1)


def check_workers(n: int) -> int:
    """How many ``checkpresentkey`` processes :func:`missing_in` runs for ``n`` keys:
    one per CPU, at most :data:`MAX_WORKERS`, each with at least
    :data:`MIN_KEYS_PER_WORKER` keys."""
    return max(1, min(_cpus(), MAX_WORKERS, n // MIN_KEYS_PER_WORKER))


def missing_in(repo: Path, remote: str, keys: Sequence[str]) -> list[str]:
    """Keys ``remote`` does not have, in the order of ``keys`` (no content transferred).

    Asked in :func:`check_workers` batches at once, each a contiguous slice of ``keys``
    (its answers come back in its order); a failing batch raises its
    :class:`CommandError`."""
    if not keys:
        return []
    size = -(-len(keys) // check_workers(len(keys)))
    chunks = [keys[i:i + size] for i in range(0, len(keys), size)]
    done = run_each(["git", "annex", "checkpresentkey", "--batch", remote],
                    ["".join(k + "\n" for k in chunk) for chunk in chunks], cwd=repo)
    answers = [a for res in done for a in res.stdout.split()]
    return [k for k, a in zip(keys, answers, strict=True) if a != "1"]

