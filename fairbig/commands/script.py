"""``fairbig script``: publish the dataset and write the job body an outside driver
(Snakemake, ``workflows/Snakefile``) runs, one per plan commit."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..dataset import Analysis
from ..driver import plan_commit, script_path
from ..render import job_body
from .plan import publish
from .submit import job_context, preflight


def prepare(a: Analysis) -> Path:
    """Publish the dataset, check what every job needs, and write the job body of the plan commit.

    The body is rewritten only when its text changes (atomically: a running job
    keeps reading the file it started with), and no job list is written: a
    driver names the job on the command line.
    """
    publish(a)
    preflight(a)
    commit = plan_commit(a)
    path = script_path(a, commit)
    text = job_body(job_context(a, commit=commit))
    if path.exists() and path.read_text() == text:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".job.sh.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, path)
    return path
