"""Rendering job scripts: pure functions from values to text.

Every value goes through the ``q`` filter (shell quoting) and Jinja runs
with ``StrictUndefined``, so a typo in a template fails loudly instead of
producing a script that does something else.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import jinja2

from .resources import templates_dir


@dataclass(frozen=True)
class JobContext:
    input_url: str
    output_url: str
    storage: str
    lock_file: str
    state_dir: str
    log_dir: str
    plan_commit: str
    results: str
    container: str
    workdir: str
    bindir: str
    main_branch: str          # the store's main branch, where merges and plans land
    push_lock_timeout: int    # seconds a job waits for the store's push lock
    env_setup: tuple[str, ...] = ()
    # FAIRBIG_CONTAINER_* settings of the container wrapper (fairbig.sandbox)
    container_env: tuple[tuple[str, str], ...] = ()
    run_id: str = ""  # the submission's run directory name, marks each attempt's log
    header: str = ""


@cache
def environment(directory: Path | None = None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory or templates_dir())),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env


def render(template: str, **values: object) -> str:
    return environment().get_template(template).render(**values)


def job_body(ctx: JobContext) -> str:
    from .jobstep import SUPERSEDED

    return render("job.sh.j2", **asdict(ctx), superseded_exit=SUPERSEDED)
