"""``fairbig submit``: choose jobs, claim them under the submit lock, hand them to a backend."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import ui
from ..annexkeys import missing_in
from ..backends import get_backend
from ..backends.base import Backend, Batch, Layout, SubmitRequest
from ..contract import CANCEL_MARK, INPUT_STORAGE, OUTPUT_STORAGE, RUNS
from ..dataset import Analysis, lock_path, paths
from ..errors import FairbigError
from ..estimate import pick_pilot
from ..jobinstall import store_base, submodule
from ..jobstate import (
    Claim,
    Submission,
    append_submissions,
    drop_claim,
    new_token,
    read_claims,
    read_records,
    submit_lock,
    take_claim,
)
from ..proc import run
from ..render import JobContext, annex_bindir, annex_version, job_body
from ..sandbox import check_binds, wrapper_env
from ..states import StatusReport
from ..stores import LOCAL_SCHEME
from .estimate import record_pilot, withdraw_pilot
from .plan import current_jobs, publish
from .status import current_status


@dataclass
class SubmitOutcome:
    backend: str
    submitted: list[str]
    backend_ids: list[str]
    run_dir: str
    dry_run: bool
    active: list[str] = field(default_factory=list)  # left alone: an attempt is live
    pilot: bool = False    # a pilot run (submit --pilot): its jobs are recorded as such


def backend_for(a: Analysis, name: str | None) -> Backend:
    return get_backend(name or a.config.backend.name, a.config)


def choose(a: Analysis, status: StatusReport, failed: bool, only: set[str],
           again: bool = False) -> list[str]:
    """Jobs to submit now: never ones still active, never done or merged ones unless
    named to run ``again`` (``verify --repair``: their stored result is damaged)."""
    wanted = {"failed", "lost", "cancelled"} if failed else {"planned"}
    if again:
        wanted = {"done", "merged"}
    chosen = [j.job_id for j in status.jobs if j.state in wanted]
    if only:
        unknown = only - {j.job_id for j in status.jobs}
        if unknown:
            raise FairbigError(f"not in the plan: {', '.join(sorted(unknown)[:5])}",
                               "check the IDs with 'fairbig status'")
        chosen = [j for j in chosen if j in only]
    return chosen


def make_batches(job_ids: list[str], layout: Layout) -> list[Batch]:
    """One batch (scheduler call, token) per ``layout.batch`` jobs, in jobs.txt order,
    its jobs shared out over at most ``layout.tasks`` tasks."""
    size = layout.batch or max(1, len(job_ids))
    out = []
    for off in range(0, len(job_ids), size):
        ids = job_ids[off:off + size]
        per_task = -(-len(ids) // layout.tasks) if layout.tasks else 1
        out.append(Batch(new_token(), ids, off, per_task))
    return out


def render_run(a: Analysis, backend: Backend, batches: list[Batch], dry_run: bool,
               record: Callable[[list[Submission]], None]) -> SubmitRequest:
    state_dir, log_dir, _ = paths(a)
    job_ids = [j for b in batches for j in b.job_ids]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = a.work / RUNS / f"{stamp}-{backend.name}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = a.work / RUNS / f"{stamp}-{backend.name}-{n}"
    run_dir.mkdir(parents=True)
    (run_dir / "jobs.txt").write_text("".join(f"{j}\n" for j in job_ids))
    req = SubmitRequest(job_ids, batches, run_dir / "job.sh", run_dir, log_dir, state_dir,
                        record=record, dry_run=dry_run)
    req.script.write_text(job_body(job_context(a, backend.header(req), run_id=run_dir.name)))
    req.script.chmod(0o755)
    return req


def job_context(a: Analysis, header: str = "", commit: str = "",
                run_id: str = "") -> JobContext:
    """The values a job body of this analysis is rendered with (HEAD unless ``commit``);
    ``run_id`` names the run directory, which marks each attempt in the job log."""
    state_dir, log_dir, _ = paths(a)
    cfg = a.config
    commit = commit or run(["git", "rev-parse", "HEAD"], cwd=a.root).stdout.strip()
    container = a.container()
    return JobContext(
        input_url=a.input_store.clone_url(a.dataset_id),
        input_git=str(a.input_store.dataset_dir(a.dataset_id)), output_url=str(a.output_git),
        storage=OUTPUT_STORAGE, lock_file=str(a.output_store.lock_file),
        state_dir=str(state_dir), log_dir=str(log_dir), plan_commit=commit,
        results=cfg.results, container=cfg.container,
        command_as_words=container.command_as_words, workdir=cfg.job.workdir,
        bindir=str(Path(sys.executable).parent), main_branch=a.default_branch,
        push_lock_timeout=cfg.job.push_lock_timeout, run_id=run_id,
        env_setup=tuple(cfg.job.env_setup), header=header,
        container_env=tuple(wrapper_env(cfg.runtime).items()), annex_bindir=annex_bindir(),
        stores=job_stores(a), annex_version=annex_version(),
        container_image=container.image_path)


def job_stores(a: Analysis) -> tuple[str, ...]:
    """The stores a job installs datasets from and enables special remotes of: the two
    of fairbig.yaml and the ones the input datasets were added from (their recorded
    ``datalad-url``), when that is a local RIA store."""
    stores = [a.input_store.url, a.output_store.url]
    for path in (a.config.inputs.path, *(s.path for s in a.config.inputs.secondary)):
        source = submodule(a.root, path).get("datalad-url", "")
        if source.startswith(LOCAL_SCHEME):
            stores.append(store_base(source))
    return tuple(dict.fromkeys(store_base(s) for s in stores))


@dataclass
class Claimed:
    """What this submit changed in the state directory before the scheduler call,
    so that a refused submission can put it back exactly."""

    claims: dict[str, Claim] = field(default_factory=dict)
    replaced: dict[str, Claim] = field(default_factory=dict)
    cancel_marks: set[str] = field(default_factory=set)

    def withdraw(self, state_dir: Path, job_ids: set[str]) -> None:
        for jid in job_ids:
            drop_claim(state_dir, self.claims[jid], self.replaced.get(jid))
            if jid in self.cancel_marks:
                (state_dir / (jid + CANCEL_MARK)).touch()


def claim(a: Analysis, backend: Backend, job_ids: list[str], layout: Layout
          ) -> tuple[list[Batch], Claimed]:
    """Claim each job for this submit (see jobstate.take_claim); a job another host's
    submit claimed in the meantime is left to it. Cancel markers of an earlier
    attempt go, or the new attempt would record itself cancelled."""
    state_dir, _, _ = paths(a)
    state_dir.mkdir(parents=True, exist_ok=True)
    old = read_claims(state_dir)
    states = {j.job_id: j.input_state for j in current_jobs(a)}
    done = Claimed()
    while True:
        batches = make_batches(job_ids, layout)
        lost = []
        for b in batches:
            for i, jid in enumerate(b.job_ids):
                c = Claim(jid, b.token, b.task(i), backend.name, socket.gethostname(), os.getpid(),
                          states.get(jid, ""))
                if take_claim(state_dir, c, old.get(jid)):
                    done.claims[jid] = c
                    if jid in old:
                        done.replaced[jid] = old[jid]
                else:
                    lost.append(jid)
        if not lost:
            break
        done.withdraw(state_dir, set(done.claims))
        done = Claimed()
        old = read_claims(state_dir)
        job_ids = [j for j in job_ids if j not in lost]
    for jid in job_ids:
        marker = state_dir / (jid + CANCEL_MARK)
        if marker.exists():
            marker.unlink()
            done.cancel_marks.add(jid)
    return batches, done


def submit(a: Analysis, backend_name: str | None = None, failed: bool = False,
           only: set[str] | None = None, dry_run: bool = False,
           again: bool = False, pilot: int = 0) -> SubmitOutcome:
    """Choose and claim jobs under the analysis's submit lock, then hand them over.

    The lock makes "which jobs are free" and "these are mine" one step (two
    submits at once never pick the same job); the claims keep the jobs taken
    after the lock is let go (a local submit runs its jobs for hours). A submit
    refused before the scheduler took a batch puts every claim of it back.

    ``pilot``: only that many of the chosen jobs, spread over the input
    (estimate.pick_pilot), recorded as the pilot for ``fairbig estimate``.
    """
    backend = backend_for(a, backend_name)
    state_dir, _, sub_file = paths(a)
    if dry_run:
        job_ids = pilot_of(a, choose(a, current_status(a, backend), failed, only or set(),
                                     again), pilot)
        if not job_ids:
            return SubmitOutcome(backend.name, [], [], "", dry_run)
        req = render_run(a, backend, make_batches(job_ids, backend.layout(True)), True,
                         lambda subs: None)
        backend.submit(req)
        return SubmitOutcome(backend.name, job_ids, [], str(req.run_dir), dry_run,
                             pilot=bool(pilot))
    with submit_lock(lock_path(a), lambda: ui.step("waiting for another submit of this "
                                                    "analysis to claim its jobs")):
        status = current_status(a, backend)
        job_ids = pilot_of(a, choose(a, status, failed, only or set(), again), pilot)
        active = [j.job_id for j in status.jobs if j.state in ("queued", "running")
                  and (not only or j.job_id in only)]
        if not job_ids:
            return SubmitOutcome(backend.name, [], [], "", dry_run, active)
        publish(a)
        preflight(a)
        batches, claimed = claim(a, backend, job_ids, backend.layout(False))
    job_ids = [j for b in batches for j in b.job_ids]
    accepted: set[str] = set()
    states = {c.job_id: c.input_state for c in claimed.claims.values()}

    def record(subs: list[Submission]) -> None:
        append_submissions(sub_file, [replace(s, input_state=states.get(s.job_id, ""))
                                      for s in subs])
        accepted.update(s.job_id for s in subs)

    run_dir: Path | None = None
    if pilot:
        # before the hand-over: a local backend runs the jobs inside submit, and status
        # shows them as the pilot meanwhile
        record_pilot(a, job_ids)
    try:
        req = render_run(a, backend, batches, dry_run, record)
        run_dir = req.run_dir
        subs = backend.submit(req)
    except BaseException:
        claimed.withdraw(state_dir, set(job_ids) - accepted)
        if pilot:
            withdraw_pilot(a, set(job_ids) - accepted)
        if run_dir and not accepted:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    return SubmitOutcome(backend.name, job_ids, sorted({s.backend_id for s in subs}),
                         str(req.run_dir), dry_run, active, bool(pilot))


def pilot_of(a: Analysis, chosen: list[str], pilot: int) -> list[str]:
    """All ``chosen`` jobs, or with ``pilot`` that many of them spread over the input."""
    if not pilot:
        return chosen
    wanted = set(chosen)
    return pick_pilot([j for j in current_jobs(a) if j.job_id in wanted], pilot)


def preflight(a: Analysis) -> None:
    """What every job needs from the stores, checked once before any job starts: a
    missing image or a mismatched key would otherwise fail every job, one by one."""
    check_binds(a.config.runtime)
    _check_container(a)
    _check_keys(a)


def _check_container(a: Analysis) -> None:
    c = a.container()
    ds_rel, ds, image = c.ds_rel, c.ds, c.image
    key = run(["git", "annex", "lookupkey", image], cwd=ds, check=False).stdout.strip()
    if key and missing_in(ds, INPUT_STORAGE, [key]):
        path = f"{ds_rel}/{image}" if ds_rel else image
        raise FairbigError(f"container image {path} has no content in the input store "
                           "(nor here)", f"get it back into {ds_rel or 'the dataset'} (e.g. "
                           f"'datalad get {path}' where it is present) and submit again")


def _check_keys(a: Analysis) -> None:
    """fairbig.yaml's keys must be the ones the output storage really encrypts to."""
    log = run(["git", "cat-file", "blob", "git-annex:remote.log"], cwd=a.root,
              check=False).stdout
    fields = next((dict(f.split("=", 1) for f in line.split() if "=" in f)
                   for line in log.splitlines() if f" name={OUTPUT_STORAGE} " in
                   f" {line} "), {})
    store_keys = [k for k in fields.get("pubkeys", "").split(",") if k]
    if not store_keys:
        return
    wanted = [k.upper() for k in a.config.encryption.keys]
    have = [k.upper() for k in store_keys]
    if (any(not any(w.endswith(h) for h in have) for w in wanted)
            or any(not any(w.endswith(h) for w in wanted) for h in have)):
        raise FairbigError(
            f"encryption.keys in fairbig.yaml ({', '.join(w[-16:] for w in wanted)}) are not "
            f"the keys the output store encrypts to ({', '.join(have)})",
            "set encryption.keys back; results for other keys need a new output store "
            "('fairbig init --encrypt-to')")


def suggest_limits(a: Analysis) -> str:
    """The time/mem the finished jobs' usage calls for, in words ("" if too few jobs):
    said to the user, never applied."""
    from ..usage import JOB, suggest

    totals = [r.usage[JOB] for r in read_records(paths(a)[0]).values()
              if r.status == "done" and JOB in r.usage]
    found = suggest(totals)
    return f"suggested limits {found.line()}" if found else ""
