"""The analysis dataset as fairbig sees it: its root, config, id and work area."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import config as cfgmod
from .contract import CALL_FMT, INPUT, LOGS, OUTPUT, PLAN_FILE, SCHEDULER_SAID, STATE, WORK_DIR
from .errors import FairbigError
from .proc import run
from .stores import RiaStore, parse_store

# The one name of the main branch: the analysis dataset's, its subdatasets', and the
# branch (and HEAD) of its repositories in both stores. Merges land on it; compare
# defaults to it; the README and --help examples write STORE@main.
MAIN_BRANCH = "main"



def dataset_id_of(path: Path) -> str:
    """The DataLad dataset ID of the dataset at ``path`` (a RIA store names it so)."""
    return run(["git", "config", "-f", str(path / ".datalad" / "config"),
                "datalad.dataset.id"]).stdout.strip()


@contextmanager
def new_repos_on_main_branch() -> Iterator[None]:
    """Every ``git init`` in this block (datalad create, the stores' bare repositories
    that create-sibling-ria makes) starts on MAIN_BRANCH, whatever the user's or git's
    default (git 2.39 still says ``master``). Added as one more ``GIT_CONFIG_*`` entry,
    so settings already given that way stay."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("GIT_CONFIG_")}
    n = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    os.environ.update({f"GIT_CONFIG_KEY_{n}": "init.defaultBranch",
                       f"GIT_CONFIG_VALUE_{n}": MAIN_BRANCH, "GIT_CONFIG_COUNT": str(n + 1)})
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("GIT_CONFIG_")]:
            del os.environ[k]
        os.environ.update(saved)


@dataclass(frozen=True)
class ContainerInfo:
    """A datalad-container entry, as the jobs will see it."""

    name: str           # as in fairbig.yaml, e.g. containers/ukb-mini
    ds_rel: str         # the container dataset, relative to the analysis dataset
    ds: Path
    image: str          # relative to the container dataset
    cmdexec: str        # the call format

    @property
    def command_as_words(self) -> bool:
        """A call format of the dataset's own takes the command as words (contract.CALL_FMT)."""
        return self.cmdexec != CALL_FMT

    @property
    def image_path(self) -> str:
        """The image relative to the analysis dataset."""
        return f"{self.ds_rel}/{self.image}" if self.ds_rel else self.image


@dataclass
class Analysis:
    root: Path

    @classmethod
    def find(cls, start: Path | None = None) -> Analysis:
        here = (start or Path.cwd()).resolve()
        datasets = [d for d in (here, *here.parents) if (d / ".datalad").exists()]
        for d in datasets:
            if (d / cfgmod.CONFIG_NAME).exists():
                return cls(d)
        if datasets:  # a dataset whose fairbig.yaml was deleted, or a plain DataLad one
            raise FairbigError(f"no {cfgmod.CONFIG_NAME} in the dataset {datasets[0]}",
                               f"restore it ('git checkout -- {cfgmod.CONFIG_NAME}') or "
                               "create an analysis dataset with 'fairbig init'")
        raise FairbigError(f"no analysis dataset at or above {here}",
                           "cd into one, pass -C DIR, or create one with 'fairbig init'")

    @cached_property
    def config(self) -> cfgmod.Config:
        return cfgmod.load(self.root / cfgmod.CONFIG_NAME)

    @cached_property
    def dataset_id(self) -> str:
        return dataset_id_of(self.root)

    @property
    def work(self) -> Path:
        return self.root / WORK_DIR

    @property
    def plan_file(self) -> Path:
        return self.root / PLAN_FILE

    @cached_property
    def output_store(self) -> RiaStore:
        """Looked up for reading (status diagnoses a read-only store); each writing
        operation asks :meth:`RiaStore.require_writable` itself."""
        return parse_store(self.config.stores.output, OUTPUT, writable=False)

    @cached_property
    def input_store(self) -> RiaStore:
        return parse_store(self.config.stores.input, INPUT, writable=False)

    @property
    def output_git(self) -> Path:
        """The bare repository of this dataset in the output store."""
        path = self.output_store.dataset_dir(self.dataset_id)
        if not path.exists():
            raise FairbigError(f"the output store has no copy of this dataset at {path}",
                               "run 'fairbig init' again or check stores.output")
        return path

    def container(self) -> ContainerInfo:
        name = self.config.container
        ds_rel, _, cname = name.rpartition("/")
        ds = self.root / ds_rel if ds_rel else self.root

        def setting(key: str) -> str:
            return run(["git", "config", "-f", str(ds / ".datalad" / "config"),
                        f"datalad.containers.{cname}.{key}"], check=False).stdout.strip()

        image, fmt = setting("image"), setting("cmdexec")
        if not image or not fmt:
            raise FairbigError(f"container '{name}' is not configured",
                               "check 'container' in fairbig.yaml against "
                               "'datalad containers-list'")
        return ContainerInfo(name, ds_rel, ds, image, fmt)

    @cached_property
    def default_branch(self) -> str:
        ref = run(["git", "symbolic-ref", "--short", "HEAD"], cwd=self.root).stdout.strip()
        return ref or MAIN_BRANCH


def paths(a: Analysis) -> tuple[Path, Path, Path]:
    """The job state directory, the log directory and the submission log."""
    return a.work / STATE, a.work / LOGS, a.work / "submissions.jsonl"


def said_path(a: Analysis) -> Path:
    """What schedulers said of attempts that ended (status asks them no more)."""
    return a.work / SCHEDULER_SAID


def lock_path(a: Analysis) -> Path:
    """Held while a submit chooses and claims jobs."""
    return a.work / "submit.lock"
