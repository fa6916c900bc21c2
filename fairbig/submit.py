"""``fairbig submit`` / ``status`` / ``cancel``: the side that talks to backends."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .annexkeys import missing_in
from .backends.base import Backend, BackendView, SubmitRequest, get_backend
from .dataset import Analysis
from .errors import FairbigError
from .jobstate import (
    JobRecord,
    Submission,
    append_submissions,
    clear_for_resubmit,
    read_records,
    read_submissions,
)
from .planning import current_jobs, publish
from .proc import run
from .render import JobContext, job_body
from .results import read_finished
from .status import StatusReport, report
from .stores import STORAGE_SUFFIX


@dataclass
class SubmitOutcome:
    backend: str
    submitted: list[str]
    backend_ids: list[str]
    run_dir: str
    dry_run: bool


def paths(a: Analysis) -> tuple[Path, Path, Path]:
    return a.work / "state", a.work / "logs", a.work / "submissions.jsonl"


def backend_for(a: Analysis, name: str | None) -> Backend:
    return get_backend(name or a.config.backend.name, a.config)


def current_status(a: Analysis, backend: Backend | None = None) -> StatusReport:
    state_dir, _, sub_file = paths(a)
    jobs = current_jobs(a)
    subs = read_submissions(sub_file)
    views: dict[str, BackendView] = {}
    by_backend: dict[str, list[Submission]] = {}
    for s in subs.values():
        by_backend.setdefault(s.backend, []).append(s)
    for name, group in by_backend.items():
        b = backend if backend and backend.name == name else get_backend(name, a.config)
        views.update(b.poll(group))
    finished = read_finished(a.output_git, a.default_branch)
    cancelled = {p.name[:-len(".cancel")] for p in state_dir.glob("*.cancel")}
    records = read_records(state_dir)
    views.update(outside_views(records, subs))
    return report(jobs, finished, records, subs, views, cancelled)


def outside_views(records: dict[str, JobRecord], subs: dict[str, Submission]
                  ) -> dict[str, BackendView]:
    """Jobs started by an outside driver (Snakemake) have no submission to ask a
    scheduler about: on this host their process says whether they still run,
    elsewhere we can only trust the record."""
    from .backends.local import alive

    here = "".join(c for c in socket.gethostname() if c.isalnum() or c in "._-")
    return {jid: BackendView("running") for jid, rec in records.items()
            if rec.status == "running" and jid not in subs
            and (rec.host != here or alive(rec.pid))}


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


def render_run(a: Analysis, backend: Backend, job_ids: list[str], dry_run: bool) -> SubmitRequest:
    state_dir, log_dir, _ = paths(a)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = a.work / "runs" / f"{stamp}-{backend.name}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = a.work / "runs" / f"{stamp}-{backend.name}-{n}"
    run_dir.mkdir(parents=True)
    (run_dir / "jobs.txt").write_text("".join(f"{j}\n" for j in job_ids))
    states = {j.job_id: j.input_state for j in current_jobs(a)}

    def record(subs: list[Submission]) -> None:
        append_submissions(paths(a)[2], [replace(s, input_state=states.get(s.job_id, ""))
                                         for s in subs])

    req = SubmitRequest(job_ids, run_dir / "job.sh", run_dir, log_dir, state_dir,
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
    return JobContext(
        input_url=a.input_store.clone_url(a.dataset_id), output_url=str(a.output_git),
        storage="output" + STORAGE_SUFFIX, lock_file=str(a.output_store.lock_file),
        state_dir=str(state_dir), log_dir=str(log_dir), plan_commit=commit,
        results=cfg.results, container=cfg.container, workdir=cfg.job.workdir,
        bindir=str(Path(sys.executable).parent), main_branch=a.default_branch,
        push_lock_timeout=cfg.job.push_lock_timeout, run_id=run_id,
        env_setup=tuple(cfg.job.env_setup), header=header)


def submit(a: Analysis, backend_name: str | None = None, failed: bool = False,
           only: set[str] | None = None, dry_run: bool = False,
           again: bool = False) -> SubmitOutcome:
    backend = backend_for(a, backend_name)
    status = current_status(a, backend)
    job_ids = choose(a, status, failed, only or set(), again)
    if not job_ids:
        return SubmitOutcome(backend.name, [], [], "", dry_run)
    if not dry_run:
        publish(a)
        preflight(a)
    req = render_run(a, backend, job_ids, dry_run)
    if not dry_run:
        clear_for_resubmit(req.state_dir, job_ids)
    subs = backend.submit(req)
    return SubmitOutcome(backend.name, job_ids, sorted({s.backend_id for s in subs}),
                         str(req.run_dir), dry_run)


def preflight(a: Analysis) -> None:
    """What every job needs from the stores, checked once before any job starts: a
    missing image or a mismatched key would otherwise fail every job, one by one."""
    _check_container(a)
    _check_keys(a)


def _check_container(a: Analysis) -> None:
    c = a.container()
    ds_rel, ds, image = c.ds_rel, c.ds, c.image
    key = run(["git", "annex", "lookupkey", image], cwd=ds, check=False).stdout.strip()
    if key and missing_in(ds, "input" + STORAGE_SUFFIX, [key]):
        path = f"{ds_rel}/{image}" if ds_rel else image
        raise FairbigError(f"container image {path} has no content in the input store "
                           "(nor here)", f"get it back into {ds_rel or 'the dataset'} (e.g. "
                           f"'datalad get {path}' where it is present) and submit again")


def _check_keys(a: Analysis) -> None:
    """fairbig.yaml's keys must be the ones the output storage really encrypts to."""
    log = run(["git", "cat-file", "blob", "git-annex:remote.log"], cwd=a.root,
              check=False).stdout
    fields = next((dict(f.split("=", 1) for f in line.split() if "=" in f)
                   for line in log.splitlines() if f" name=output{STORAGE_SUFFIX} " in
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


def cancel(a: Analysis, job_ids: set[str]) -> list[str]:
    state_dir, _, sub_file = paths(a)
    status = current_status(a)
    active = [j.job_id for j in status.jobs if j.state in ("queued", "running")
              and (not job_ids or j.job_id in job_ids)]
    subs = read_submissions(sub_file)
    state_dir.mkdir(parents=True, exist_ok=True)
    by_backend: dict[str, list[Submission]] = {}
    for jid in active:
        (state_dir / f"{jid}.cancel").touch()
        by_backend.setdefault(subs[jid].backend, []).append(subs[jid])
    for name, group in by_backend.items():
        get_backend(name, a.config).cancel(group)
    return active


def leftovers(a: Analysis) -> list[tuple[str, str]]:
    """Ephemeral clones of jobs that were killed before their clean-up could run."""
    state_dir, _, _ = paths(a)
    here = socket.gethostname()
    host = "".join(c for c in here if c.isalnum() or c in "._-")
    from .backends.local import alive

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
    run(["chmod", "-R", "u+w", path], check=False)
    shutil.rmtree(path, ignore_errors=True)
