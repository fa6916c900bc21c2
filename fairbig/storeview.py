"""What the output store already holds: job branches and merged jobs.

Read straight from the store's bare repository with one ``for-each-ref``
and one blob read, however many jobs there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .contract import JOB_MESSAGE_RE, JOB_REF_PREFIX, MERGED_FILE
from .gitcmd import for_each_ref, git


@dataclass(frozen=True)
class Finished:
    branches: dict[str, tuple[str, str]]   # job ID -> (tip sha, input state)
    merged: dict[str, str]                 # job ID -> input state

    def states(self) -> dict[str, str]:
        out = dict(self.merged)
        out.update({j: s for j, (_, s) in self.branches.items()})
        return out


def read_finished(store_git: Path, branch: str,
                  merged_rows: dict[str, tuple[str, str]] | None = None) -> Finished:
    """``merged_rows``: :func:`read_merged_rows` of ``branch`` if the caller has them."""
    branches: dict[str, tuple[str, str]] = {}
    for ref, sha, subject in for_each_ref(store_git, ("refname", "objectname", "contents:subject"),
                                          JOB_REF_PREFIX + "*"):
        m = JOB_MESSAGE_RE.search(subject)
        jid = ref[len(JOB_REF_PREFIX):]
        branches[jid] = (sha, m.group(2) if m and m.group(1) == jid else "")
    rows = read_merged_rows(store_git, branch) if merged_rows is None else merged_rows
    return Finished(branches, {j: state for j, (state, _) in rows.items()})


def read_merged_rows(store_git: Path, branch: str) -> dict[str, tuple[str, str]]:
    """Job ID -> (input state, job commit) of every merged job."""
    res = git(store_git, "cat-file", "blob", f"refs/heads/{branch}:{MERGED_FILE}", check=False)
    if res.returncode != 0:
        return {}
    rows = (line.split("\t") for line in res.stdout.splitlines()[1:])
    return {f[0]: (f[1], f[2] if len(f) > 2 else "") for f in rows if len(f) >= 2}
