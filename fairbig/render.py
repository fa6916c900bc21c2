"""Rendering job scripts: pure functions from values to text.

Every value goes through the ``q`` filter (shell quoting) and Jinja runs
with ``StrictUndefined``, so a typo in a template fails loudly instead of
producing a script that does something else.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import jinja2

from . import contract
from .ids import job_id_bash_function
from .resources import templates_dir


@dataclass(frozen=True)
class JobContext:
    input_url: str
    input_git: str            # the repository input_url names, which the job clones with git
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
    command_as_words: bool = False  # the container's own call format splices {cmd} as words
    # FAIRBIG_CONTAINER_* settings of the container wrapper (fairbig.sandbox)
    container_env: tuple[tuple[str, str], ...] = ()
    run_id: str = ""  # the submission's run directory name, marks each attempt's log
    header: str = ""
    annex_bindir: str = ""  # the git-annex binary's own directory (annex_bindir()), or ""
    # the stores a job may install datasets from and enable special remotes of
    stores: tuple[str, ...] = ()
    annex_version: str = ""    # the pinned git-annex (jobinstall writes its init's keys)
    container_image: str = ""  # the container's image, relative to the analysis dataset


def annex_bindir() -> str:
    """The directory of the git-annex binary the ``git-annex`` Python package ships, or
    "" without it. The venv's ``bin/git-annex`` is a Python script that execs this binary:
    about 21 ms of CPU per call, some 70 calls per job; the job body puts the binary's
    own directory first on PATH (found without importing the package)."""
    spec = importlib.util.find_spec("git_annex")
    if spec is None or not spec.origin:
        return ""
    return str(Path(spec.origin).parent)


def annex_version() -> str:
    """The version of the git-annex package pyproject.toml pins, as installed ("" if
    it is not): the job writes the config keys of this version's ``init`` only."""
    try:
        return importlib.metadata.version("git-annex")
    except importlib.metadata.PackageNotFoundError:
        return ""


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


def contract_values() -> dict[str, object]:
    """What the job body must agree on with fairbig's Python, each from its one
    definition: the job-ID rule, the plan's file, columns and list separator, the run
    commit's subject, the job branch, the output store's remote name."""
    from .jobstep import SUPERSEDED
    from .jobtable import HEADER, LIST_SEP

    return {"valid_job_id": job_id_bash_function("valid_job_id"),
            "plan_file": contract.PLAN_FILE, "list_sep": LIST_SEP,
            "col": {name: n for n, name in enumerate(HEADER, start=1)},
            "pubkey_file": contract.PUBKEY_FILE, "output_remote": contract.OUTPUT,
            "job_branch": contract.JOB_BRANCH, "message_format": contract.job_message_printf(),
            "cancel_mark": contract.CANCEL_MARK, "job_workdir": contract.JOB_WORKDIR,
            "workdir_fallback": contract.WORKDIR_FALLBACK,
            "superseded_exit": SUPERSEDED, "replace_env": contract.REPLACE_ENV}


def job_body(ctx: JobContext) -> str:
    return render("job.sh.j2", **asdict(ctx), **contract_values())
