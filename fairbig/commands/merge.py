"""``fairbig merge``: every finished job branch into the store's main, in seconds.

The tree is built with git plumbing (see :mod:`fairbig.treemerge`), checked
for conflicts and for annexed content actually being in the encrypted
storage *before* main moves; main then moves with one compare-and-swap
``update-ref``, the only step that publishes anything. Everything after it
(deleting merged branches, repacking, availability records, fast-forwarding
the analysis dataset) is idempotent and redone by the next run if a merge is
interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .. import treemerge as tm
from .. import ui
from ..annexkeys import keys_of, missing_in
from ..contract import JOB_REF_PREFIX, OUTPUT_STORAGE
from ..dataset import Analysis
from ..errors import FairbigError
from ..gitcmd import GitError, delete_refs, for_each_ref, git, pack_refs
from ..jobtable import Job
from ..stores import exclusive, waiting_for
from ..storeview import MERGED_FILE, read_finished, read_merged_rows
from ..sync import OUTPUT, push_annex_records, store_main, sync
from .plan import current_jobs
from .report import record_merge

T = TypeVar("T")
CHUNK = 1000
REPACK_LOOSE = 2000  # loose objects, not refs, are what slow clones down
REPACK_PACKS = 20  # more packs than this: roll them up (repack --geometric)


@dataclass
class MergeOutcome:
    merged: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    outdated: list[str] = field(default_factory=list)
    unplanned: list[str] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    missing: dict[str, list[str]] = field(default_factory=dict)
    commit: str = ""
    deleted_branches: int = 0
    dry_run: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


class MergeRefused(FairbigError):
    """Refused before anything was written; ``details`` names every path and job."""

    def __init__(self, message: str, hint: str, details: list[str],
                 outcome: MergeOutcome) -> None:
        super().__init__(message, hint)
        self.details = details
        self.outcome = outcome


def _collect(a: Analysis, base: str, jobs: dict[str, Job], merged: dict[str, tuple[str, str]],
             out: MergeOutcome) -> list[tm.JobBranch]:
    finished = read_finished(a.output_git, a.default_branch, merged)
    stale = {jid for jid, (_, state) in finished.branches.items()
             if jid in jobs and state != jobs[jid].input_state}
    # A job run again whose result main already holds (``verify --repair`` of a
    # deterministic job) pushes a branch with no commit of its own: identical, pruned.
    contained = _contained(a.output_git, base) if stale else set()
    branches = []
    for jid, (sha, _) in sorted(finished.branches.items()):
        job = jobs.get(jid)
        if job is None:
            out.unplanned.append(jid)
        elif jid in stale and jid not in contained:
            out.outdated.append(jid)
        else:
            branches.append(tm.JobBranch(jid, JOB_REF_PREFIX + jid, sha,
                                         tuple(f"{o}/" for o in job.outputs)))
    return branches


def _contained(store_git: Path, base: str) -> set[str]:
    """Jobs whose branch tip ``base`` already contains, from one ``for-each-ref``."""
    refs = for_each_ref(store_git, ("refname",), f"--merged={base}", JOB_REF_PREFIX + "*")
    return {ref[len(JOB_REF_PREFIX):] for ref, in refs}


def merge(a: Analysis, dry_run: bool = False, keep_branches: bool = False,
          shared: Sequence[str] = ()) -> MergeOutcome:
    """Merge every finished job branch; a dry run only reads the store (it may be
    read-only). Writing merges take the store's merge lock: a second merge at the same
    time is refused in one line instead of losing a race halfway."""
    if dry_run:
        return _merge(a, True, keep_branches, shared)
    store = a.output_store
    store.require_writable(OUTPUT)
    with exclusive(store.merge_lock_file, "another 'fairbig merge' is writing to this "
                   "output store", "it merges these job branches too: wait for it to end, "
                   "then check with 'fairbig status'"):
        return _merge(a, False, keep_branches, shared)


def _merge(a: Analysis, dry_run: bool, keep_branches: bool,
           shared: Sequence[str]) -> MergeOutcome:
    out = MergeOutcome(dry_run=dry_run)
    clock = start = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        out.seconds[name] = round(time.monotonic() - clock, 3)
        clock = time.monotonic()
        ui.step(f"merge: {name} done ({out.seconds[name]:.2f} s)")

    # two at a time beside this thread: the branch packing, then the availability check
    # beside it; after main moves, the prune beside the repack, then the commit-graph
    with ThreadPoolExecutor(max_workers=2) as pool:
        # the job branches move into packed-refs from now on: invisible to every reader
        # (a refused merge changes nothing), and by the time main moves, deleting the
        # merged ones is one rewrite of that file (:func:`_pack_branches`)
        packing_refs = pool.submit(_timed, _pack_branches, a) \
            if not (dry_run or keep_branches) else None
        if not dry_run:
            sync(a, push=False)  # finish an interrupted earlier merge first (pushed at the end)
        sgit, branch = a.output_git, a.default_branch
        base = store_main(a)
        # the plan and the merged table, each read once: at 42k jobs a second and a half
        jobs = {j.job_id: j for j in current_jobs(a)}
        merged = read_merged_rows(sgit, branch)
        branches = _collect(a, base, jobs, merged, out)
        ui.step(f"merge: {len(branches)} job branch(es) to consider")
        lap("collect")
        comp = tm.compute_merge(sgit, base, branches, shared, a.config.results)
        out.identical = sorted(b.job_id for b in comp.identical)
        out.merged = sorted(b.job_id for b in comp.to_merge)
        lap("compute")
        if comp.conflicts:
            out.conflicts = [{"path": c.path, "jobs": list(c.jobs), "reason": c.reason}
                             for c in comp.conflicts]
            details = [f"{c.path}: {c.reason} ({', '.join(c.jobs)})" for c in comp.conflicts]
            raise MergeRefused(f"{len(comp.conflicts)} conflict(s), nothing merged; first: "
                               f"{details[0]}",
                               "leave the jobs out with 'fairbig plan --exclude', or allow an "
                               "identical shared file with --shared PATTERN", details, out)
        files = keys_of(sgit, [(c.path, c.mode, c.sha) for c in comp.changes if not c.deleted])
        job_of = {c.path: c.job_id for c in comp.changes}
        writing = not dry_run and bool(comp.to_merge)
        new = base
        # git-annex asks the storage for each key while the merge's objects are written
        # (2 cores: the write is no longer waited for); main moves only after both
        checking = pool.submit(_timed, missing_in, a.root, OUTPUT_STORAGE,
                               sorted({f.key for f in files}))
        if writing:
            _add_merged_table(a, comp, jobs, merged)
            new = tm.write_merge(sgit, base, comp, chunk_size=CHUNK,
                                 message=lambda bs: f"fairbig: merge {len(bs)} job(s)\n\n"
                                 + "".join(f"Fairbig-Job: {b.job_id}\n" for b in bs))
            lap("write")
        found, out.seconds["availability"] = checking.result()
        clock = time.monotonic()
        missing = set(found)
        for f in files:
            if f.key in missing:
                out.missing.setdefault(job_of[f.path], []).append(f.path)
        if out.missing:
            jobs = sorted(out.missing)
            raise MergeRefused(f"content missing in the output store for {len(jobs)} job(s), "
                               f"nothing merged: {', '.join(jobs[:10])}",
                               "resubmit them: delete their branches and run 'fairbig submit "
                               "--failed'",
                               [f"{j}: {p}" for j in jobs for p in out.missing[j]], out)
        if not writing:
            out.commit = base
            if comp.identical and not (keep_branches or dry_run):
                _prune(a, comp.identical, False, out)
                _pack_loose(a)
                _commit_graph(a)
            if not dry_run:
                push_annex_records(a)
            return out
        if packing_refs:
            # a failure there is a bug to hear of before main moves
            out.seconds["pack_refs"] = packing_refs.result()[1]
        try:
            tm.update_ref(sgit, f"refs/heads/{branch}", new, base)
        except GitError:
            now = store_main(a)
            if now == base:
                raise
            raise FairbigError(f"the output store's {branch} moved to {now[:12]} while this "
                               "merge ran (not through 'fairbig merge'); nothing was merged",
                               "run 'fairbig merge' again: it starts from the new "
                               f"{branch}") from None
        out.commit = new
        # Three things at once, none reading what another writes: the merged branches
        # go (packed: :func:`_pack_branches`), the new objects are packed, and the
        # analysis dataset follows the store
        pruning = pool.submit(_timed, _prune, a, [*comp.to_merge, *comp.identical],
                              keep_branches, out)
        repacking = pool.submit(_timed, _pack_loose, a, (base, new)) \
            if not keep_branches else None
        sync(a, push=False)
        lap("sync")
        out.seconds["prune"] = pruning.result()[1]
        if repacking:
            out.seconds["pack"] = repacking.result()[1]
        # after the prune: a push reads every ref of the store, in the folder it empties
        # (1.9 s beside it, 0.4 s after); so does the commit-graph, written meanwhile
        graphing = pool.submit(_commit_graph, a) if not keep_branches else None
        push_annex_records(a)
        if graphing:
            graphing.result()
        lap("finish")
        record_merge(a, new, len(comp.to_merge), time.monotonic() - start)
        return out


def _timed(fn: Callable[..., T], *args: object) -> tuple[T, float]:
    """``fn(*args)`` and its wall time: the phases that overlap time themselves."""
    t0 = time.monotonic()
    return fn(*args), round(time.monotonic() - t0, 3)


def _add_merged_table(a: Analysis, comp: tm.MergeComputation, jobs: dict[str, Job],
                      merged: dict[str, tuple[str, str]]) -> None:
    """``.fairbig/merged.tsv`` records which input state each merged job used
    (``merged``: the table in base, :func:`read_merged_rows`)."""
    merged = dict(merged)
    for b in comp.to_merge:
        merged[b.job_id] = (jobs[b.job_id].input_state, b.tip)
    text = "job_id\tinput_state\tcommit\n" + "".join(
        f"{j}\t{s}\t{c}\n" for j, (s, c) in sorted(merged.items()))
    sha = git(a.output_git, "hash-object", "-w", "--stdin", input=text).stdout.strip()
    comp.changes.append(tm.Change(MERGED_FILE, "100644", sha, ""))


def _pack_branches(a: Analysis) -> None:
    """Job branches move into ``packed-refs`` while a merge collects, computes and
    writes (under the jobs' push lock, at the values read under it), so that deleting
    those it merged, once main has moved, is one rewrite of that file. A packed branch
    is the same branch to every reader: a merge refused or killed before it publishes
    has changed nothing. Their loose files take a file deletion each (4.4 s at 42k on
    this ext4, two thirds of it waiting for the disk): beside the merge's work, which
    until the write keeps one core busy, not after it."""
    with waiting_for(a.output_store.lock_file):
        pack_refs(a.output_git, tm.list_refs(a.output_git, JOB_REF_PREFIX))


def _prune(a: Analysis, done: Sequence[tm.JobBranch], keep: bool, out: MergeOutcome) -> None:
    """Delete merged branches: 42k refs make clones slow (and loose objects: :func:`_pack_loose`).

    Under the jobs' push lock, and only branches still at the tip that was merged: a
    job that pushed again meanwhile keeps its newer branch for the next merge.
    """
    if keep or not done:
        return
    with waiting_for(a.output_store.lock_file):
        now = tm.list_refs(a.output_git, JOB_REF_PREFIX)
        gone = [b for b in done if now.get(b.ref) == b.tip]
        delete_refs(a.output_git, {b.ref: b.tip for b in gone})
    out.deleted_branches = len(gone)


def _pack_loose(a: Analysis, merged: tuple[str, str] | None = None) -> None:
    """Pack what is loose once it piles up (``merged``: see :func:`repack`)."""
    if loose_objects(a.output_git) > REPACK_LOOSE:
        ui.step("repacking the output store")
        repack(a.output_git, merged)


def _commit_graph(a: Analysis) -> None:
    """The next merge reads main's whole history (fork points, --topo-order): from a
    commit-graph file that is a fraction of parsing every commit object (seconds at 42k
    merged jobs); appended to incrementally, so it costs what is new."""
    git(a.output_git, "commit-graph", "write", "--reachable", "--split")


def repack(git_dir: Path, merged: tuple[str, str] | None = None) -> None:
    """Pack loose objects at a cost that follows what is new.

    ``merged`` (old main, new main): the objects the merge brought into main (the job
    commits, pushed loose, and the merge's trees) go into one new pack, listed by a
    walk from new main that stops at old main. ``repack --geometric`` found them by
    walking every object of main instead (2 s at 42k merged jobs, for a merge of
    1,000); it now only rolls packs up once they pile up, which keeps their number
    logarithmic. ``--incremental``: what is in a pack already is not packed again.
    """
    if merged is None or len(list((git_dir / "objects" / "pack").glob("*.pack"))) \
            > REPACK_PACKS:
        git(git_dir, "repack", "-dq", "--geometric=2")
        return
    old, new = merged
    objects = git(git_dir, "rev-list", "--objects", new, "--not", old).stdout
    # zlib level 1: a merge's objects are mostly trees of object ids, which do not
    # compress; level 1 writes them in 2/3 of the CPU time for a pack 2.5 % larger
    git(git_dir, "pack-objects", "-q", "--incremental", "--compression=1",
        str(git_dir / "objects" / "pack" / "pack"), input=objects)
    git(git_dir, "prune-packed")


def loose_objects(git_dir: Path) -> int:
    stats = git(git_dir, "count-objects", "-v").stdout
    return int(next(line.split()[1] for line in stats.splitlines()
                    if line.startswith("count:")))
