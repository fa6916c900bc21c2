"""``fairbig plan`` as a command: read, decide, write atomically, commit, publish."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import dl
from .dataset import Analysis
from .errors import FairbigError
from .plan import Job, PlanDiff, diff, make_jobs, parse_tsv, read_layout, render_tsv, select
from .proc import run
from .results import read_finished


@dataclass
class PlanOutcome:
    layout: str
    jobs: int
    new: list[str]
    changed: list[str]
    done: list[str]
    skipped: list[str] = field(default_factory=list)
    committed: bool = False
    commit: str = ""


def read_ids(values: tuple[str, ...]) -> set[str]:
    """IDs from the command line; ``@FILE`` reads one ID per line."""
    out: set[str] = set()
    for v in values:
        if v.startswith("@"):
            path = Path(v[1:])
            if not path.exists():
                raise FairbigError(f"ID file {path} does not exist", "give an existing file")
            out |= {line.strip() for line in path.read_text().splitlines() if line.strip()}
        else:
            out.add(v)
    return out


def current_jobs(a: Analysis) -> list[Job]:
    if not a.plan_file.exists():
        raise FairbigError("there is no plan yet", "run 'fairbig plan' first")
    return parse_tsv(a.plan_file.read_text())


def finished_states(a: Analysis) -> dict[str, str]:
    return read_finished(a.output_git, a.default_branch).states()


def compute(a: Analysis, by: str | None, only: set[str], exclude: set[str]) -> tuple[
        list[Job], PlanDiff, list[str], str]:
    cfg = a.config
    layout = read_layout(a.root, cfg.inputs.path, cfg.inputs.layout, by or cfg.inputs.by)
    units = select(layout.units, only, exclude)
    jobs = make_jobs(units, cfg.inputs.path, cfg.results, cfg.command)
    previous = {j.job_id: j.input_state for j in current_jobs(a)} if a.plan_file.exists() else {}
    return jobs, diff(jobs, finished_states(a), previous), layout.skipped, layout.kind


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def update_inputs(a: Analysis) -> None:
    """Bring the input dataset to its origin's newest state and record it."""
    import datalad.api as dapi

    dl.call(dapi.update, dataset=str(a.root / a.config.inputs.path), how="merge",
            hint="check that the input dataset's origin is reachable")
    dl.call(dapi.save, dataset=str(a.root), path=[a.config.inputs.path],
            message="fairbig: update input dataset")


def plan(a: Analysis, by: str | None = None, only: set[str] | None = None,
         exclude: set[str] | None = None, dry_run: bool = False) -> PlanOutcome:
    import datalad.api as dapi

    jobs, d, skipped, kind = compute(a, by, only or set(), exclude or set())
    out = PlanOutcome(kind, len(jobs), d.new, d.changed, d.done, skipped)
    if dry_run:
        return out
    text = render_tsv(jobs)
    if not a.plan_file.exists() or a.plan_file.read_text() != text:
        # a plan commit that cannot be published is one no job can clone: store first
        where = a.input_store.dataset_dir(a.dataset_id)
        if not where.exists():
            raise FairbigError(f"the input store has no copy of this dataset at {where}",
                               "check stores.input in fairbig.yaml and that the store is "
                               "mounted; nothing was planned")
        write_atomic(a.plan_file, text)
        dl.call(dapi.save, dataset=str(a.root), path=[str(a.plan_file)],
                message=f"fairbig: plan of {len(jobs)} jobs")
        out.committed = True
    publish(a)
    out.commit = run(["git", "rev-parse", "HEAD"], cwd=a.root).stdout.strip()
    return out


def publish(a: Analysis) -> None:
    """Jobs clone from the input store and push onto the output store's history."""
    import datalad.api as dapi

    container_ds = a.root / a.config.container.rpartition("/")[0]
    if container_ds != a.root and (container_ds / ".datalad").exists():
        dl.call(dapi.push, dataset=str(container_ds), to="input",
                hint="check that the input store is reachable and writable")
    for sibling in ("input", "output"):
        dl.call(dapi.push, dataset=str(a.root), to=sibling, data="nothing",
                hint=f"check that the '{sibling}' store is reachable and writable")
