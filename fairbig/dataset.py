"""The analysis dataset as fairbig sees it: its root, config, id and work area."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from . import config as cfgmod
from .errors import FairbigError
from .proc import run
from .stores import RiaStore, parse_store

WORK = Path(".fairbig") / "work"


@dataclass(frozen=True)
class ContainerInfo:
    """A datalad-container entry, as the jobs will see it."""

    name: str           # as in fairbig.yaml, e.g. containers/ukb-mini
    ds_rel: str         # the container dataset, relative to the analysis dataset
    ds: Path
    image: str          # relative to the container dataset
    cmdexec: str        # the call format

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
        return run(["git", "config", "-f", str(self.root / ".datalad" / "config"),
                    "datalad.dataset.id"]).stdout.strip()

    @property
    def work(self) -> Path:
        return self.root / WORK

    @property
    def plan_file(self) -> Path:
        return self.root / ".fairbig" / "plan.tsv"

    @cached_property
    def output_store(self) -> RiaStore:
        return parse_store(self.config.stores.output, "output")

    @cached_property
    def input_store(self) -> RiaStore:
        return parse_store(self.config.stores.input, "input")

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
        return ref or "master"
