"""Where content is: location records written into the git-annex branch in one commit.

``git annex setpresentkey --batch`` writes a journal file per key and commits them at
the end; file creation dominates (0.6 ms a file on this ext4: 25.7 s of a first merge
of 42,767 jobs with distinct results). The records are plain files of the git-annex
branch, a format git-annex documents (``doc/internals``): the location log of a key is
``<hashdirlower><key>.log``, ``hashdirlower`` being the first 3 and next 3 hex digits
of the key's md5, one line per repository, ``<seconds>s <1|0|X> <uuid>``, the newest
line of a UUID its state. :func:`record_present` writes such files for many keys as one
``git fast-import`` commit on the branch (1.2 s for 42,767, all in one pack), and
git-annex, which notes in its index the branch commit that index was built from,
rebuilds the index on its next run (0.2 s at 43k records).

Only under the git-annex version fairbig pins (``tests/test_annexlog.py`` compares
what it writes with ``setpresentkey``'s own records and with ``examinekey``'s hash
directories); under another version, for keys whose file name git-annex escapes, or
if another git-annex process left a journal meanwhile, ``setpresentkey`` does it.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from .annexkeys import blob_texts
from .gitcmd import git, ls_tree, many_objects_env
from .jobinstall import annex_version
from .proc import run
from .render import annex_version as pinned_annex_version

BRANCH = "refs/heads/git-annex"
ESCAPED = frozenset("&%:/\n")   # keyFile escapes these in the branch's file names


def log_path(key: str) -> str:
    """The location log of ``key`` (not a chunk key) in the git-annex branch."""
    digest = hashlib.md5(key.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{digest[:3]}/{digest[3:6]}/{key}.log"


def _clock(stamp: str) -> float:
    """A line's timestamp (``1796433519s``, older logs ``1287290776.765152s``)."""
    try:
        return float(stamp.rstrip("s"))
    except ValueError:
        return 0.0


def with_present(text: str, uuid: str, now: int) -> str | None:
    """Location log ``text`` with ``uuid`` present, or None if it already says so.

    The new line's time is ``now``, or one second past the log's newest line if that is
    not older (git-annex's vector clock: a new line must be the newest)."""
    lines = [line for line in text.splitlines() if line.strip()]
    fields = [line.split() for line in lines]
    ours = [(_clock(f[0]), i) for i, f in enumerate(fields) if len(f) >= 3 and f[2] == uuid]
    if ours and fields[max(ours)[1]][1] == "1":
        return None
    newest = max((_clock(f[0]) for f in fields if f), default=0.0)
    stamp = now if newest < now else math.floor(newest) + 1
    kept = [line for line, f in zip(lines, fields, strict=True)
            if not (len(f) >= 3 and f[2] == uuid)]
    return "".join(f"{line}\n" for line in kept) + f"{stamp}s 1 {uuid}\n"


def record_present(repo: Path, remote: str, keys: Sequence[str]) -> None:
    """Record in ``repo``'s git-annex branch that ``remote`` holds ``keys``, after
    uniting it with the remote-tracking git-annex branches (``git annex merge``, which
    also commits what a journal holds), even if there are no keys."""
    run(["git", "annex", "merge"], cwd=repo)
    if not keys:
        return
    uuid = git(repo / ".git", "config", f"remote.{remote}.annex-uuid").stdout.strip()
    pinned = pinned_annex_version()
    if pinned and annex_version() == pinned and not any(ESCAPED & set(k) for k in keys) \
            and _write(repo / ".git", uuid, keys):
        return
    run(["git", "annex", "setpresentkey", "--batch"], cwd=repo,
        input="".join(f"{k} {uuid} 1\n" for k in keys))
    run(["git", "annex", "merge"], cwd=repo)


@contextmanager
def _journal_locked(git_dir: Path) -> Iterator[bool]:
    """git-annex's journal lock held (no git-annex process writes the branch or its
    journal meanwhile); yields whether the journal is empty, which the new commit
    requires: a journal file would replace the record written beside it."""
    annex = git_dir / "annex"
    with open(annex / "journal.lck", "a") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        journal = annex / "journal"
        yield not journal.is_dir() or not any(journal.iterdir())


def _write(git_dir: Path, uuid: str, keys: Sequence[str]) -> bool:
    """One commit on the git-annex branch with ``uuid`` present for ``keys``; False
    (nothing written) if the journal is not empty."""
    with _journal_locked(git_dir) as clean:
        if not clean:
            return False
        base = git(git_dir, "rev-parse", "--verify", BRANCH).stdout.strip()
        paths = sorted({log_path(k) for k in keys})
        old = _texts(git_dir, base, paths)
        now = int(time.time())
        logs = {p: log for p in paths
                if (log := with_present(old.get(p, ""), uuid, now)) is not None}
        if logs:
            committer = git(git_dir, "var", "GIT_COMMITTER_IDENT").stdout.strip()
            git(git_dir, "fast-import", "--quiet", input=_commit(base, logs, committer),
                text=False, env=many_objects_env())
    return True


def _texts(git_dir: Path, base: str, paths: Sequence[str]) -> dict[str, str]:
    """The texts of those of ``paths`` that ``base`` has. Listed from the whole tree
    (``ls-tree -r``: 0.1 s at 43k records), then read by blob id: asked as
    ``base:path`` each, git reads the 4,096-entry top tree once per path."""
    wanted = set(paths)
    found = [(e.path, e.sha) for e in ls_tree(git_dir, base, recursive=True)
             if e.path in wanted]
    shas = sorted({sha for _, sha in found})
    texts = dict(zip(shas, blob_texts(git_dir, shas), strict=True))
    return {path: texts[sha] for path, sha in found}


def _commit(base: str, logs: Mapping[str, str], committer: str) -> bytes:
    """A ``fast-import`` stream: ``logs`` (path: text) committed on top of ``base``,
    each distinct text one blob (a merge's new records are mostly one and the same)."""
    marks: dict[str, int] = {}
    out = []
    for text in logs.values():
        if text not in marks:
            marks[text] = len(marks) + 1
            data = text.encode()
            out.append(b"blob\nmark :%d\ndata %d\n%s\n" % (marks[text], len(data), data))
    out.append(f"commit {BRANCH}\ncommitter {committer}\ndata 6\nupdate\nfrom {base}\n"
               .encode())
    out += [f"M 100644 :{marks[text]} {path}\n".encode("utf-8", "surrogateescape")
            for path, text in logs.items()]
    return b"".join(out)
