"""``fairbig plan`` as a command: read, decide, refuse or write atomically, commit, publish.

Nothing is written until the whole plan is decided and accepted: unknown IDs, a plan
that would drop jobs with results or hold no jobs at all are refused first, and
``--update`` fetches the input dataset's origin but moves it only together with the
commit of the plan made from it (and back, if that commit fails).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import config as cfgmod
from .. import dl
from ..bids import PARTICIPANTS, ColumnChange, column_change, refuse_bad_labels
from ..contract import INPUT, OUTPUT
from ..dataset import Analysis
from ..derivatives import description_file
from ..errors import FairbigError
from ..gittree import git_dir_of, gitlink, symlinked_outputs
from ..jobtable import (
    BidsOptions,
    Job,
    diff,
    dropped_with_results,
    filter_files,
    make_jobs,
    parse_tsv,
    read_layout,
    refuse_unknown,
    render_tsv,
    row_table,
    select,
    unknown_ids,
)
from ..proc import run
from ..secondary import add_secondaries, read_secondary
from ..storeview import read_finished

SHOWN = 10  # IDs named in one line of output or of an error


@dataclass(frozen=True)
class Selection:
    """Which jobs a plan holds. Kept in ``fairbig.yaml`` (``inputs.by``, ``inputs.only``,
    ``inputs.exclude``) and committed with the plan, so a plain ``fairbig plan`` plans the
    same set as the last one did."""

    by: str
    only: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: cfgmod.Config) -> Selection:
        return cls(cfg.inputs.by, tuple(cfg.inputs.only), tuple(cfg.inputs.exclude))

    def updates(self) -> dict[str, Any]:
        """The ``fairbig.yaml`` settings that keep this selection."""
        return {"inputs.by": self.by, "inputs.only": cfgmod.flow_list(list(self.only)),
                "inputs.exclude": cfgmod.flow_list(list(self.exclude))}

    def describe(self) -> str:
        def ids(values: tuple[str, ...]) -> str:
            return " ".join(values[:SHOWN]) + (f" … ({len(values)})" if len(values) > SHOWN
                                                else "")

        parts = [f"by {self.by}", f"only {ids(self.only)}" if self.only else "all subjects"]
        if self.exclude:
            parts.append(f"excluding {ids(self.exclude)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class PlanRequest:
    """What the command line asked for; ``None`` keeps what ``fairbig.yaml`` holds."""

    by: str | None = None
    only: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    everything: bool = False        # --all: forget the kept --only/--exclude lists
    update: bool = False
    dry_run: bool = False
    allow_shrink: bool = False
    columns_changed: str | None = None  # "rerun": accept a changed participants.tsv header

    def selection(self, kept: Selection) -> Selection:
        def pick(given: tuple[str, ...] | None, old: tuple[str, ...]) -> tuple[str, ...]:
            if given is not None:
                return tuple(sorted(set(given)))
            return () if self.everything else old

        return Selection(self.by or kept.by, pick(self.only, kept.only),
                         pick(self.exclude, kept.exclude))


@dataclass
class PlanOutcome:
    layout: str
    jobs: int
    new: list[str]
    changed: list[str]
    done: list[str]
    skipped: dict[str, str] = field(default_factory=dict)   # ID -> why it has no job
    sessionless: list[str] = field(default_factory=list)    # --by session, planned by subject
    mixed: bool = False             # --by session: subjects with and without sessions
    dropped: list[str] = field(default_factory=list)
    stale_ids: list[str] = field(default_factory=list)
    # participants.tsv's columns changed (accepted with --columns-changed rerun):
    # {"table", "added", "removed", "changed": jobs with results it changes}
    columns: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    input_commit: str = ""
    input_updated: bool = False
    committed: bool = False
    commit: str = ""


def group_skipped(skipped: dict[str, str]) -> dict[str, list[str]]:
    """Skipped IDs by reason, so a summary says each reason once with its count."""
    out: dict[str, list[str]] = {}
    for jid, reason in sorted(skipped.items()):
        out.setdefault(reason, []).append(jid)
    return out


def read_ids(values: tuple[str, ...]) -> set[str]:
    """IDs from the command line; ``@FILE`` reads one ID per line (relative to the
    current directory; blank lines and ``#`` comments ignored)."""
    out: set[str] = set()
    for v in values:
        if not v.startswith("@"):
            out.add(v)
            continue
        path = Path(v[1:]).absolute()
        if not path.is_file():
            raise FairbigError(f"ID file {path} does not exist",
                               "give an existing file after '@', one ID per line")
        ids = {s for line in path.read_text().splitlines() if (s := line.split("#")[0].strip())}
        if not ids:
            raise FairbigError(f"ID file {path} holds no IDs",
                               "write one subject or job ID per line")
        out |= ids
    return out


def current_jobs(a: Analysis) -> list[Job]:
    if not a.plan_file.exists():
        raise FairbigError("there is no plan yet", "run 'fairbig plan' first")
    return parse_tsv(a.plan_file.read_text())


def finished_states(a: Analysis) -> dict[str, str]:
    return read_finished(a.output_git, a.default_branch).states()


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class InputUpdate:
    """``plan --update``: the input dataset fetched from its origin, not yet moved.

    ``target`` is what the plan is made from; :meth:`apply` fast-forwards the input
    dataset to it only when the plan is committed, :meth:`undo` puts it back."""

    path: Path          # the input dataset, absolute: datalad resolves relative paths
    before: str         # against the process's directory, which -C does not change
    target: str

    @classmethod
    def fetch(cls, a: Analysis, rel: str = "") -> InputUpdate:
        """The input dataset at ``rel`` (default: the primary one, ``inputs.path``)."""
        import datalad.api as dapi

        rel = rel or a.config.inputs.path
        path = a.root / rel
        dl.call(dapi.update, dataset=str(path), how="fetch",
                hint="check that the input dataset's origin is reachable; nothing was changed")
        before = run(["git", "rev-parse", "HEAD"], cwd=path).stdout.strip()
        upstream = run(["git", "rev-parse", "--verify", "-q", "@{upstream}"], cwd=path,
                       check=False).stdout.strip()
        if not upstream:
            raise FairbigError(f"the input dataset {rel} is not on a branch "
                               "that tracks its origin",
                               f"check out its branch in {path} (git -C {path} status)")
        if run(["git", "merge-base", "--is-ancestor", before, upstream], cwd=path,
               check=False).returncode != 0:
            raise FairbigError(f"the input dataset {rel} has commits its "
                               "origin does not have",
                               f"push or drop them in {path}; nothing was changed")
        return cls(path, before, upstream)

    def apply(self) -> None:
        run(["git", "merge", "-q", "--ff-only", self.target], cwd=self.path)

    def undo(self) -> None:
        run(["git", "reset", "-q", "--keep", self.before], cwd=self.path)


def plan(a: Analysis, req: PlanRequest) -> PlanOutcome:
    """Decide the plan; refuse it, report it (``dry_run``) or commit and publish it."""
    cfg = a.config
    kept = Selection.of(cfg)
    sel = req.selection(kept)
    update = InputUpdate.fetch(a) if req.update else None
    more = {s.path: InputUpdate.fetch(a, s.path) for s in cfg.inputs.secondary} \
        if req.update else {}
    layout = read_layout(a.root, cfg.inputs.path, cfg.inputs.layout, sel.by,
                         update.target if update else None,
                         BidsOptions(cfg.inputs.bids_emptyroom, tuple(cfg.inputs.required_files),
                                     tuple(cfg.inputs.ignore_columns)))
    refuse_unknown("--only", req.only or (), layout.units)
    refuse_unknown("--exclude", req.exclude or (), layout.units)
    chosen = select(layout.units, sel.only, sel.exclude)
    if layout.kind == "bids":
        refuse_bad_labels((u.subject, u.session) for u in chosen)
    elif cfg.results_layout == "bids":
        raise FairbigError(f"results_layout 'bids' needs BIDS inputs (sub-XX subjects); the "
                           f"input dataset has the {layout.kind} layout",
                           "set results_layout: flat in fairbig.yaml; nothing was planned")
    jobs = make_jobs(chosen, cfg.inputs.path, cfg.results, cfg.command, cfg.results_layout)
    jobs = add_secondaries(jobs, [read_secondary(a.root, s.name, s.path, more[s.path].target
                                                 if s.path in more else None)
                                  for s in cfg.inputs.secondary], layout.skipped)
    refuse_symlinked_outputs(a, jobs)
    old_jobs = current_jobs(a) if a.plan_file.exists() else []
    previous = {j.job_id: j.input_state for j in old_jobs}
    finished = finished_states(a)
    refuse_moved(old_jobs, jobs, finished)
    if not req.allow_shrink:
        refuse_shrink(jobs, dropped_with_results(previous, jobs, finished), sel)
    d = diff(jobs, finished)
    recorded = gitlink(git_dir_of(a.root), "HEAD", cfg.inputs.path) or ""
    columns = columns_changed(a, recorded, update.target if update else recorded) \
        if layout.kind == "bids" and d.changed else None
    if columns and req.columns_changed != "rerun":
        refuse_columns(columns, len(d.changed))
    moved = [u for rel, u in ((cfg.inputs.path, update), *more.items())
             if u and u.target != gitlink(git_dir_of(a.root), "HEAD", rel)]
    out = PlanOutcome(
        layout.kind, len(jobs), d.new, d.changed, d.done, layout.skipped,
        layout.sessionless, layout.mixed,
        dropped=sorted(set(previous) - {j.job_id for j in jobs}),
        stale_ids=unknown_ids(layout.units, (*sel.only, *sel.exclude)),
        selection=asdict(sel), input_commit=update.target if update else recorded,
        input_updated=bool(moved),
        columns=[{**columns._asdict(), "changed": len(d.changed)}] if columns else [])
    if req.dry_run:
        return out
    text = render_tsv(jobs)
    # the BIDS filter files and the derivatives description: committed with the plan
    filters = {a.root / p: t for p, t in filter_files(jobs, cfg.command).items()}
    filters |= description_file(a, {rel: u.target for rel, u in ((cfg.inputs.path, update),
                                                                 *more.items()) if u})
    plan_changed = not a.plan_file.exists() or a.plan_file.read_text() != text or any(
        not p.exists() or p.read_text() != t for p, t in filters.items())
    if plan_changed or out.input_updated or sel != kept:
        # a plan commit that cannot be published is one no job can clone: store first
        where = a.input_store.dataset_dir(a.dataset_id)
        if not where.exists():
            raise FairbigError(f"the input store has no copy of this dataset at {where}",
                               "check stores.input in fairbig.yaml and that the store is "
                               "mounted; nothing was planned")
        commit_plan(a, text, sel if sel != kept else None, moved, len(jobs), filters)
        out.committed = True
    publish(a)
    out.commit = run(["git", "rev-parse", "HEAD"], cwd=a.root).stdout.strip()
    return out


def columns_changed(a: Analysis, before: str, after: str) -> ColumnChange | None:
    """How ``participants.tsv``'s columns differ between the input commit the previous
    plan recorded and the one planned now (not ignored ones added: those change no row).
    An annexed table is read from the input dataset's annex (:func:`row_table`)."""
    if not before or before == after:
        return None
    path = a.config.inputs.path
    return column_change(PARTICIPANTS, row_table(a.root, path, before),
                         row_table(a.root, path, after), a.config.inputs.ignore_columns)


def refuse_columns(change: ColumnChange, n: int) -> None:
    """A header changed in every row's state: the user says whether that re-runs the
    jobs with results (a new column nobody's pipeline reads should not)."""
    rerun = "re-plan them with 'fairbig plan --update --columns-changed rerun'"
    raise FairbigError(
        f"{change.table}'s columns changed ({change.describe()}): that changes {n} job(s) "
        "with results",
        (f"{rerun}, or keep their results with inputs.ignore_columns: "
         f"[{', '.join(change.added)}] in fairbig.yaml" if change.ignorable else
         f"{rerun} (a removed or reordered column cannot be ignored)")
        + "; nothing was planned")


def refuse_symlinked_outputs(a: Analysis, jobs: list[Job]) -> None:
    """Outputs are checked for what they are: a job deletes its outputs before the run,
    and a committed symlink on the way would point that outside the dataset."""
    found = symlinked_outputs(git_dir_of(a.root), "HEAD",
                              sorted({o for j in jobs for o in j.outputs}))
    if found:
        out, link = found[0]
        raise FairbigError(f"{len(found)} job output path(s) go through a committed symlink, "
                           f"e.g. '{out}' through '{link}'",
                           f"remove the symlink '{link}' from the analysis dataset "
                           "(git rm) or change 'results' in fairbig.yaml; nothing was planned")


def shown(ids: list[str]) -> str:
    """The first IDs of a list for a one-line error."""
    return ", ".join(ids[:SHOWN]) + (" …" if len(ids) > SHOWN else "")


def refuse_moved(old_jobs: list[Job], jobs: list[Job], finished: dict[str, str]) -> None:
    """A job whose result exists keeps its area: with another ``results_layout`` (or
    ``results``) its result would count as done where it no longer is."""
    old = {j.job_id: j.outputs for j in old_jobs}
    moved = [j.job_id for j in jobs if j.job_id in finished and old.get(j.job_id, j.outputs)
             != j.outputs]
    if moved:
        raise FairbigError(f"{len(moved)} job(s) with results in the output store would move "
                           f"to another area (results_layout or results changed): "
                           f"{shown(moved)}",
                           "set them back in fairbig.yaml, or start a new analysis dataset "
                           "with 'fairbig init'; nothing was planned")


def refuse_shrink(jobs: list[Job], lost: list[str], sel: Selection) -> None:
    """A plan never silently forgets results or becomes empty: the user says so."""
    if lost:
        raise FairbigError(f"this plan would drop {len(lost)} job(s) whose results are in the "
                           f"output store: {shown(lost)}",
                           "keep them in --only/--exclude, or pass --allow-shrink to drop "
                           "them; nothing was planned")
    if not jobs:
        raise FairbigError(f"this plan would have no jobs (selection: {sel.describe()})",
                           "change --only/--exclude (--all plans every subject), or pass "
                           "--allow-shrink for an empty plan; nothing was planned")


def commit_plan(a: Analysis, text: str, sel: Selection | None, updates: list[InputUpdate],
                n_jobs: int, filters: dict[Path, str]) -> None:
    """One commit of the plan, the selection that made it, the BIDS filter files its
    commands name and the input datasets' states it was made from; on any failure every
    file, the input datasets and HEAD are put back."""
    import datalad.api as dapi

    config_file = a.root / cfgmod.CONFIG_NAME
    files = {p: p.read_bytes() if p.exists() else None
             for p in (a.plan_file, config_file, *filters)}
    head = run(["git", "rev-parse", "HEAD"], cwd=a.root).stdout.strip()
    paths = [a.plan_file, *filters] + ([config_file] if sel else []) + [u.path for u in updates]
    message = f"fairbig: plan of {n_jobs} jobs" + (
        f" (input dataset updated to {updates[0].target[:12]})" if len(updates) == 1
        and updates[0].path == a.root / a.config.inputs.path else
        " (input datasets updated: " + ", ".join(
            f"{u.path.relative_to(a.root)} to {u.target[:12]}" for u in updates) + ")"
        if updates else "")
    try:
        for update in updates:
            update.apply()
        write_atomic(a.plan_file, text)
        for path, body in filters.items():
            write_atomic(path, body)
        if sel:
            cfgmod.update_file(config_file, sel.updates())
        dl.call(dapi.save, dataset=str(a.root), path=[str(p) for p in paths], message=message)
    except BaseException:
        run(["git", "reset", "-q", "--soft", head], cwd=a.root, check=False)
        run(["git", "reset", "-q", "--", *map(str, paths)], cwd=a.root, check=False)
        for path, data in files.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)
        for update in updates:
            update.undo()
        raise


def publish(a: Analysis) -> None:
    """Jobs clone from the input store and push onto the output store's history."""
    import datalad.api as dapi

    a.output_store.require_writable(OUTPUT)  # before anything is pushed anywhere

    container_ds = a.root / a.config.container.rpartition("/")[0]
    if container_ds != a.root and (container_ds / ".datalad").exists():
        dl.call(dapi.push, dataset=str(container_ds), to=INPUT,
                hint="check that the input store is reachable and writable")
    for sibling in (INPUT, OUTPUT):
        dl.call(dapi.push, dataset=str(a.root), to=sibling, data="nothing",
                hint=f"check that the '{sibling}' store is reachable and writable, then run "
                "'fairbig plan' again to publish the committed plan")
