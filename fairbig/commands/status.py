"""``fairbig status``: one exact count per state, reconciled from every source, and
the failed and lost jobs grouped by cause.

Sources, strongest first: the output store (merged main, job branches), the jobs'
own state records, the submission log with the claims of unfinished submits, and
the schedulers' view. The pure classification is :mod:`fairbig.states`; the
reading of logs for causes is :mod:`fairbig.explain`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import click

from .. import ui
from ..backends import get_backend
from ..backends.base import Backend, BackendView
from ..contract import CANCEL_MARK
from ..dataset import Analysis, paths, said_path
from ..explain import Explanation, Failure, explain
from ..jobstate import (
    ENDED,
    Claim,
    JobRecord,
    Submission,
    append_submissions,
    current_records,
    now,
    read_claims,
    read_records,
    read_said,
    read_submissions,
    write_said,
)
from ..states import ACTIVE_STATES, STATES, JobStatus, StatusReport, report
from ..storeview import read_finished
from ..usage import UsageSummary, summarize
from .estimate import read_pilot
from .plan import current_jobs


def show(a: Analysis, states: set[str], show_all: bool, tail: int | None, watch: bool,
         interval: float, as_json: bool) -> StatusReport:
    """Print the status (again every ``interval`` s with ``watch``, until nothing is
    queued or running); returns the last report for the exit code."""
    while True:
        rep = current_status(a)
        exp = explanation(a, rep, 12 if tail is None and as_json else tail or 0)
        if as_json:
            ui.emit_json(rep.to_json() | exp.to_json()
                         | {"usage_summary": usage_summary(rep).to_json(),
                            "pilot": read_pilot(a)})
        else:
            if watch and ui.is_tty():
                click.clear()
            show_status(rep, exp, states or (set(STATES) if show_all else set()))
            show_usage(rep)
            show_pilot(rep, read_pilot(a))
        if not watch or not rep.active:
            return rep
        time.sleep(interval)


def current_status(a: Analysis, backend: Backend | None = None) -> StatusReport:
    return status_with_attempts(a, backend)[0]


def status_with_attempts(a: Analysis, backend: Backend | None = None
            ) -> tuple[StatusReport, dict[str, Submission]]:
    """The report, and each job's current attempt as reconciled (for ``cancel``)."""
    state_dir, _, _ = paths(a)

    def backend_named(name: str) -> Backend:
        return backend if backend and backend.name == name else get_backend(name, a.config)

    jobs = current_jobs(a)
    records = read_records(state_dir)
    subs, views, tokens = reconcile(a, records, backend_named)
    records = current_records(records, tokens)
    views.update(scheduler_views(said_path(a), subs, records, backend_named))
    finished = read_finished(a.output_git, a.default_branch)
    cancelled = {p.name[:-len(CANCEL_MARK)] for p in state_dir.glob("*" + CANCEL_MARK)}
    views.update(outside_views(records, subs))
    return report(jobs, finished, records, subs, views, cancelled), subs


def scheduler_views(path: Path, subs: dict[str, Submission], records: dict[str, JobRecord],
                    backend_named: Callable[[str], Backend]) -> dict[str, BackendView]:
    """The schedulers' word on each job's current attempt, asking them only of attempts
    not known to have ended: once an attempt's own record is final and its scheduler
    no longer runs it, what the scheduler said (why it ended, or nothing) is kept in
    ``path``, so polls stay as small as the unfinished work after weeks of
    resubmissions."""
    said = read_said(path)
    views: dict[str, BackendView] = {}
    by_backend: dict[str, list[Submission]] = {}
    for s in subs.values():
        known = said.get(s.job_id)
        if known and known[0] == s.backend_id:
            if known[1]:
                views[s.job_id] = BackendView("finished", known[1])
        elif s.backend_id:
            by_backend.setdefault(s.backend, []).append(s)
    ended: dict[str, tuple[str, str]] = {}
    for name, group in by_backend.items():
        polled = backend_named(name).poll(group)
        views.update(polled)
        for s in group:
            rec, view = records.get(s.job_id), polled.get(s.job_id)
            if rec and rec.status in ENDED and not (view and view.state in ACTIVE_STATES):
                ended[s.job_id] = (s.backend_id, view.reason if view else "")
    if ended and path.parent.is_dir():
        write_said(path, said | ended)
    return views


def reconcile(a: Analysis, records: dict[str, JobRecord],
              backend_named: Callable[[str], Backend]
              ) -> tuple[dict[str, Submission], dict[str, BackendView], dict[str, str]]:
    """Each job's current attempt: the submission log, completed by the claims of
    submits that have not recorded (yet, or ever: killed) what the scheduler took.

    A claim not in the log is resolved by, in turn: the job's own record carrying
    its token (it ran), a live submitting process on this host (it is being handed
    over: queued), the scheduler found by token (queued; written to the log now),
    the scheduler not knowing the token (never accepted: the claim is void), the
    scheduler not answering (queued: nobody may assume it was not accepted).
    Returns submissions and views by job, and the current attempt's token by job.
    """
    from ..backends.local import alive

    state_dir, _, sub_file = paths(a)
    subs = read_submissions(sub_file)
    views: dict[str, BackendView] = {}
    here = socket.gethostname()
    unknown: dict[str, list[Claim]] = {}
    for c in read_claims(state_dir).values():
        sub = subs.get(c.job_id)
        if sub and sub.token == c.token:
            continue
        rec = records.get(c.job_id)
        if rec and rec.attempt == c.token:
            subs[c.job_id] = Submission(c.job_id, c.backend, rec.backend_id, now(),
                                        c.input_state, c.token)
        elif c.host == here and alive(c.pid):
            subs[c.job_id] = Submission(c.job_id, c.backend, "", now(), c.input_state, c.token)
            views[c.job_id] = BackendView("queued")
        else:
            unknown.setdefault(c.backend, []).append(c)
    for name, group in unknown.items():
        found = backend_named(name).recover(group)
        if found is None:
            for c in group:
                subs[c.job_id] = Submission(c.job_id, name, "", now(), c.input_state, c.token)
                views[c.job_id] = BackendView("queued")
            continue
        new = [Submission(c.job_id, name, found[c.job_id], now(), c.input_state, c.token)
               for c in group if c.job_id in found]
        append_submissions(sub_file, new)
        subs.update((s.job_id, s) for s in new)
    tokens = {jid: s.token for jid, s in subs.items() if s.token}
    return subs, views, tokens


def outside_views(records: dict[str, JobRecord], subs: dict[str, Submission]
                  ) -> dict[str, BackendView]:
    """Jobs started by an outside driver (Snakemake) have no submission to ask a
    scheduler about: on this host their process says whether they still run,
    elsewhere we can only trust the record."""
    from ..backends.local import alive

    here = "".join(c for c in socket.gethostname() if c.isalnum() or c in "._-")
    return {jid: BackendView("running") for jid, rec in records.items()
            if rec.status == "running" and jid not in subs
            and (rec.host != here or alive(rec.pid))}


def explanation(a: Analysis, rep: StatusReport, tail: int) -> Explanation:

    _, log_dir, sub_file = paths(a)
    return explain(rep.jobs, read_submissions(sub_file), a.config, a.work, log_dir, tail)


GROUP_EXAMPLES = 3
USAGE_TOP = 3


def usage_summary(rep: StatusReport) -> UsageSummary:
    return summarize({j.job_id: j.state for j in rep.jobs},
                     {jid: r.usage for jid, r in rep.records.items()}, USAGE_TOP)


def show_usage(rep: StatusReport) -> None:
    """Per-state medians of what whole jobs used, the slowest and the hungriest."""
    s = usage_summary(rep)
    if not s.medians:
        return
    ui.table("resource use per job (medians)", ["state", "jobs", "wall s", "CPU s", "peak MB"],
             [[state, m["jobs"], f"{m['wall_s']:.1f}", f"{m['cpu_s']:.1f}",
               f"{m['max_rss_mb']:.0f}"] for state, m in s.medians.items()])
    ui.say("slowest: " + ", ".join(f"{r.job_id} {r.value:.1f} s" for r in s.slowest))
    ui.say("most memory: " + ", ".join(f"{r.job_id} {r.value:.0f} MB" for r in s.hungriest))


def show_pilot(rep: StatusReport, pilot: list[str]) -> None:
    """The pilot run's jobs and their states, pointing at the estimate."""
    if pilot:
        states = {j.job_id: j.state for j in rep.jobs}
        ui.say(f"pilot run: {len(pilot)} job(s): "
               + ", ".join(f"{j} {states.get(j, '?')}" for j in pilot[:10])
               + (" …" if len(pilot) > 10 else "") + " (see 'fairbig estimate')")


def show_status(rep: StatusReport, exp: Explanation, states: set[str]) -> None:
    """Counts, then either the listed states job by job, or the problems by cause."""
    ui.table("fairbig status", list(rep.counts), [list(rep.counts.values())])
    failures = {f.job_id: f for f in exp.failures}
    if states:
        for j in rep.jobs:
            if j.state in states:
                show_job(j, failures.get(j.job_id))
        return
    if exp.groups:
        ui.say(f"{rep.problems} job(s) failed or lost, by cause:")
    for g in exp.groups:
        ui.say(f"{len(g.jobs)} {g.where}: {g.cause}")
        for jid in g.jobs[:GROUP_EXAMPLES]:
            show_tail(failures[jid], f"  {jid}  log: {failures[jid].log}")
        if len(g.jobs) > GROUP_EXAMPLES:
            ui.say(f"  … and {len(g.jobs) - GROUP_EXAMPLES} more "
                   f"(fairbig status --state {g.state})")
    cancelled = [j.job_id for j in rep.jobs if j.state == "cancelled"]
    if cancelled:
        ui.say(f"{len(cancelled)} cancelled: {' '.join(cancelled[:10])}"
               + (" …" if len(cancelled) > 10 else ""))


def show_job(j: JobStatus, failure: Failure | None) -> None:
    if failure:
        show_tail(failure, f"{j.job_id}  {failure.where}: {failure.cause}  log: {failure.log}")
        return
    ui.say("  ".join(x for x in (j.job_id, j.state, f"step {j.step}" if j.step else "",
                                 j.detail, j.backend_id) if x))


def show_tail(f: Failure, line: str) -> None:
    ui.say(line)
    for t in f.tail:
        ui.say(f"    | {t}")
