"""``fairbig cleanup``: remove ephemeral clones that killed jobs left on this host."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from ..dataset import Analysis, paths
from ..jobstate import read_records
from ..proc import run
from .status import current_status


def leftovers(a: Analysis) -> list[tuple[str, str]]:
    """Ephemeral clones of jobs that were killed before their clean-up could run."""
    state_dir, _, _ = paths(a)
    here = socket.gethostname()
    host = "".join(c for c in here if c.isalnum() or c in "._-")
    from ..backends.local import alive

    report = current_status(a)
    # not only lost/failed/cancelled jobs: one killed in its clean-up, after its branch
    # arrived, is done and still leaves its clone behind
    active = {j.job_id for j in report.jobs if j.state in ("queued", "running")}
    out = []
    for jid, rec in read_records(state_dir).items():
        if (jid not in active and rec.host == host and rec.workdir
                and not (rec.status == "running" and alive(rec.pid))
                and Path(rec.workdir).exists()):
            out.append((jid, rec.workdir))
    return sorted(out)


def remove_tree(path: str) -> None:
    """Remove a job's clone. Only its directories are made writable (removing needs
    that): a file may be a hard link into the node's template of the container dataset
    (fairbig.jobinstall), whose modes stay as they are, as the job body's cleanup does."""
    run(["find", path, "-type", "d", "!", "-perm", "-u+w", "-exec", "chmod", "u+w", "{}",
         "+"], check=False)
    shutil.rmtree(path, ignore_errors=True)
