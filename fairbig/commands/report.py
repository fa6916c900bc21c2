"""``fairbig report``: the computation as one self-contained HTML page.

Everything comes from what ``fairbig status`` reads (the plan, the jobs' state
records with their resource usage, the submission log, the output store) plus the
failure grouping of :mod:`fairbig.explain`, the merge log and the analysis dataset's
provenance. The page has no script and links nothing: its charts are inline SVG
(:mod:`fairbig.charts`) of aggregates, so it opens on a login node or a laptop behind
a firewall, and stays small for 42,715 jobs (30 bars a histogram, not 42,715 points).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from .. import __version__, charts, usage
from ..dataset import Analysis, paths
from ..errors import FairbigError
from ..estimate import Estimate
from ..explain import Explanation, Group, explain
from ..gitcmd import git
from ..jobstate import JobRecord, gc_paused, read_submissions
from ..proc import run
from ..states import PROBLEM_STATES, STATES, StatusReport
from .estimate import current_estimate, read_pilot
from .status import current_status

MERGE_LOG = "merges.jsonl"   # in the analysis' work dir: one line per writing merge
BUCKETS = 48                 # columns of the throughput charts
EXAMPLES = 5                 # job IDs shown per failure cause
TOP = 10
MEASURES = (("wall_s", "duration", "s"), ("max_rss_mb", "peak memory", "MB"))
STEP_ORDER = (usage.JOB, *usage.STEPS)


@dataclass(frozen=True)
class Provenance:
    container: str
    image_key: str
    command: str
    input_dataset: str
    input_version: str
    plan_commit: str
    key_fingerprints: tuple[str, ...]
    encryption: str


@dataclass(frozen=True)
class MergeEntry:
    when: float
    commit: str
    jobs: int
    seconds: float | None    # None: a merge of a fairbig version without the merge log


@dataclass
class ReportData:
    """Every fact the page shows, gathered once (see :func:`gather`)."""

    analysis: str
    status: StatusReport
    explanation: Explanation
    provenance: Provenance
    merges: list[MergeEntry] = field(default_factory=list)
    written: float = field(default_factory=time.time)
    pilot: list[str] = field(default_factory=list)      # the pilot run's jobs
    estimate: Estimate | None = None                    # from them, if any finished


@dataclass(frozen=True)
class ReportOutcome:
    path: str
    bytes: int
    seconds: float
    jobs: int


# ------------------------------------------------------------------ gathering

def provenance(a: Analysis) -> Provenance:
    """Read from the analysis dataset's HEAD: what every job ran with."""
    cfg = a.config
    cont = a.container()
    links = {}
    for line in run(["git", "ls-tree", "HEAD", "--", cfg.inputs.path], cwd=a.root,
                    check=False).stdout.splitlines():
        meta, _, path = line.partition("\t")
        links[path] = meta.split()[2]
    plan = run(["git", "log", "-1", "--format=%H", "--", str(a.plan_file)], cwd=a.root,
               check=False).stdout.strip()
    image = a.root / cont.image_path
    key = Path(os.readlink(image)).name if image.is_symlink() else ""
    return Provenance(cfg.container, key, cfg.command, cfg.inputs.path,
                      links.get(cfg.inputs.path, ""), plan, tuple(cfg.encryption.keys),
                      cfg.encryption.mode)


def record_merge(a: Analysis, commit: str, jobs: int, seconds: float) -> None:
    """Append one writing merge to the merge log the report reads (``fairbig merge``)."""
    path = a.work / MERGE_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"when": time.time(), "commit": commit, "jobs": jobs,
                            "seconds": round(seconds, 3)}) + "\n")


def merge_history(a: Analysis) -> list[MergeEntry]:
    """The merge log; merges made before it existed are read from the store's history
    (``fairbig: merge N job(s)`` commits on main), without their duration."""
    logged: list[MergeEntry] = []
    path = a.work / MERGE_LOG
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                d = json.loads(line)
                logged.append(MergeEntry(d["when"], d["commit"], d["jobs"], d["seconds"]))
            except (ValueError, KeyError, TypeError):
                continue
    known = {m.commit for m in logged}
    older: list[MergeEntry] = []
    out = git(a.output_git, "log", "--first-parent", "--format=%H %ct %s",
              a.default_branch, check=False).stdout
    for line in out.splitlines():
        sha, when, subject = ([*line.split(" ", 2), "", ""])[:3]
        if sha in known:
            break  # what came before is in the log
        words = subject.split()
        if subject.startswith("fairbig: merge ") and len(words) > 2 and words[2].isdigit():
            older.append(MergeEntry(float(when), sha, int(words[2]), None))
    return sorted(older + logged, key=lambda m: m.when)


def gather(a: Analysis) -> ReportData:
    rep = current_status(a)
    _, log_dir, sub_file = paths(a)
    exp = explain(rep.jobs, read_submissions(sub_file), a.config, a.work, log_dir, tail=0)
    pilot = read_pilot(a)
    est = None
    if pilot:
        from .submit import backend_for  # jinja2 and the templates: only for a pilot

        with contextlib.suppress(FairbigError):   # none finished yet: the page says so
            est = current_estimate(a, rep, backend_for(a, None))
    return ReportData(str(a.root), rep, exp, provenance(a), merge_history(a),
                      pilot=pilot, estimate=est)


# ------------------------------------------------------------------ the page (pure)

def _table(head: Sequence[str], rows: Sequence[Sequence[object]], css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return (f"<table{cls}><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head)
            + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                      for r in rows) + "</tbody></table>")


def _stamp(t: float, span: float) -> str:
    fmt = "%H:%M" if span <= 2 * 86400 else "%m-%d %H:%M"
    return time.strftime(fmt, time.gmtime(t))


def throughput(records: dict[str, JobRecord], states: dict[str, str]
               ) -> tuple[list[str], dict[str, list[int]], list[int], float]:
    """Jobs that ended per time bucket, by state; the most running at once per bucket;
    the bucket width in seconds. From the records' start and end times.

    Ends count before starts at the same second. The level just after the k-th start
    (in time order) is k + 1 minus the ends up to its second, so a bucket's peak is
    the largest such level among its starts, or what ran on from the bucket before:
    sorting and bisecting, not a step per event (85k at 42k jobs)."""
    if not records:
        return [], {}, [], 0.0
    starts = sorted(r.started for r in records.values())
    ended = [(r.updated, states.get(j, r.status)) for j, r in records.items()
             if r.status != "running"]
    ends = sorted(t for t, _ in ended)
    t0 = starts[0]
    t1 = max(max(r.updated for r in records.values()), t0 + 1)
    width = max(1.0, (t1 - t0) / BUCKETS)
    n = int((t1 - t0) // width) + 1
    series: dict[str, list[int]] = {}
    for t, state in ended:
        series.setdefault(state, [0] * n)[min(n - 1, int((t - t0) // width))] += 1
    after = [k + 1 - bisect_right(ends, t) for k, t in enumerate(starts)]
    running, k = [0] * n, 0
    for i in range(n):
        carried = k - bisect_left(ends, t0 + i * width) if i else 0
        first, k = k, len(starts) if i == n - 1 else bisect_left(starts, t0 + (i + 1) * width)
        running[i] = max([carried, *after[first:k]])
    labels = [_stamp(t0 + i * width, t1 - t0) for i in range(n)]
    ordered = {s: series[s] for s in STATES if s in series}
    return labels, ordered, running, width


def _per_unit(width: float) -> tuple[str, float]:
    return ("minute", 60.0) if width < 3600 else ("hour", 3600.0)


@dataclass
class PerJob:
    """What the charts and tables aggregate of the jobs' records, gathered in one pass
    (42k records: one pass per chart cost more than drawing them)."""

    values: dict[str, dict[str, list[float]]]   # step -> measure -> every job's value
    hosts: dict[str, Counter]                   # host -> state -> jobs
    walls: dict[str, list[float]]               # host -> its jobs' whole durations


def per_job(records: dict[str, JobRecord], states: dict[str, str]) -> PerJob:
    keys = [key for key, _, _ in MEASURES]
    values: dict[str, dict[str, list[float]]] = {}
    hosts: dict[str, Counter] = defaultdict(Counter)
    walls: dict[str, list[float]] = defaultdict(list)
    for j, r in records.items():
        host = r.host or "?"
        hosts[host][states.get(j, r.status)] += 1
        for step, used in r.usage.items():
            per = values.get(step)
            if per is None:
                per = values[step] = {key: [] for key in keys}
            for key in keys:
                if (v := used.get(key)) is not None:
                    per[key].append(v)
        if usage.JOB in r.usage:
            walls[host].append(r.usage[usage.JOB]["wall_s"])
    return PerJob(values, hosts, walls)


def _groups_table(groups: Sequence[Group]) -> str:
    rows = [(len(g.jobs), g.where, g.cause, " ".join(g.jobs[:EXAMPLES])
             + (" …" if len(g.jobs) > EXAMPLES else ""), g.log) for g in groups]
    return _table(["jobs", "where", "cause", "example jobs", "log of the first"], rows,
                  "failures")


def _hosts_table(per: dict[str, Counter], walls: dict[str, list[float]]) -> str:
    shown = [s for s in STATES if any(c[s] for c in per.values())]
    rows = [(h, sum(c.values()), *(c[s] for s in shown),
             f"{usage.median(w):.1f}" if (w := walls.get(h)) else "")
            for h, c in sorted(per.items(), key=lambda kv: -sum(kv[1].values()))]
    return _table(["host", "jobs", *shown, "median duration (s)"], rows, "hosts")


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#212529}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #dee2e6;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #dee2e6;
padding:2px 8px;text-align:left;vertical-align:top}th{background:#f1f3f5}
.charts{display:flex;flex-wrap:wrap;gap:8px}.chart text{font-size:11px;fill:#495057}
.chart .t{font-size:13px;fill:#212529}.chart .g{stroke:#e9ecef}
td{font-variant-numeric:tabular-nums}.muted{color:#868e96}
"""


def render(d: ReportData) -> str:
    """The page, from gathered facts only (no I/O: fast to test and to time)."""
    rep = d.status
    states = {j.job_id: j.state for j in rep.jobs}
    records = rep.records
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>fairbig report: {escape(Path(d.analysis).name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>fairbig report: {escape(d.analysis)}</h1><p class=\"muted\">"
             f"{len(rep.jobs)} planned jobs · written "
             f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(d.written))} by fairbig "
             f"{escape(__version__)}</p>",
             "<h2 id=\"states\">Jobs by state</h2>",
             _table(list(rep.counts), [list(rep.counts.values())], "counts")]

    labels, series, running, width = throughput(records, states)
    parts.append("<h2 id=\"throughput\">Throughput</h2>")
    if labels:
        unit, secs = _per_unit(width)
        scale = secs / width
        per = {s: [round(v * scale, 1) for v in vals] for s, vals in series.items()}
        parts.append("<div class=\"charts\">"
                     + charts.columns(f"jobs ended per {unit}, by state", labels, per,
                                      "time (UTC)", f"jobs / {unit}", "throughput")
                     + charts.line("jobs running at once", labels, running, "time (UTC)",
                                   "jobs", "running")
                     + "</div>")
    else:
        parts.append("<p>No job has started yet.</p>")

    jobs = per_job(records, states)
    values = jobs.values
    parts.append("<h2 id=\"usage\">Duration and peak memory per step</h2>")
    if values:
        parts.append("<p class=\"muted\">Measured in every job (fairbig/usage.py): wall "
                     "time, and the largest resident set of any one process of the step; "
                     "<em>container</em> is the runtime call alone, inside <em>run</em>."
                     "</p><div class=\"charts\">")
        for step in [s for s in STEP_ORDER if s in values] + sorted(set(values)
                                                                   - set(STEP_ORDER)):
            for key, what, unit in MEASURES:
                if values[step][key]:
                    parts.append(charts.histogram(f"{step}: {what}", values[step][key], unit))
        parts.append("</div>")
        summary = usage.summarize(states, {j: r.usage for j, r in records.items()}, TOP)
        parts.append(_table(["state", "jobs", "median duration (s)", "median CPU (s)",
                             "median peak memory (MB)"],
                            [(s, m["jobs"], f"{m['wall_s']:.1f}", f"{m['cpu_s']:.1f}",
                              f"{m['max_rss_mb']:.1f}") for s, m in summary.medians.items()],
                            "medians"))
        parts.append(_table(["slowest jobs", "s"],
                            [(r.job_id, f"{r.value:.1f}") for r in summary.slowest], "slowest")
                     + _table(["most memory", "MB"],
                              [(r.job_id, f"{r.value:.1f}") for r in summary.hungriest],
                              "hungriest"))
        if summary.suggestion:
            parts.append(f"<p>Suggested limits {escape(summary.suggestion.line())}.</p>")
    else:
        parts.append("<p>No job has recorded its resource use yet.</p>")

    parts.append("<h2 id=\"failures\">Failures by cause</h2>")
    groups = [g for g in d.explanation.groups if g.state in PROBLEM_STATES]
    parts.append(_groups_table(groups) if groups else "<p>No failed or lost job.</p>")

    parts.append("<h2 id=\"hosts\">Per host</h2>")
    if records:
        hosts = Counter({h: sum(c.values()) for h, c in jobs.hosts.items()})
        parts.append("<div class=\"charts\">" + charts.columns(
            "jobs per host", [h for h, _ in hosts.most_common(40)],
            {"jobs": [n for _, n in hosts.most_common(40)]}, "host", "jobs", "hosts")
            + "</div>" + _hosts_table(jobs.hosts, jobs.walls))

    parts.append("<h2 id=\"merges\">Merges</h2>")
    if d.merges:
        parts.append(_table(["when (UTC)", "jobs", "seconds", "commit"],
                            [(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.when)),
                              m.jobs, "" if m.seconds is None else m.seconds, m.commit[:12])
                             for m in d.merges], "merges"))
    else:
        parts.append("<p>Nothing merged yet.</p>")

    if d.pilot:
        parts.append("<h2 id=\"pilot\">Pilot run</h2>" + _table(
            ["pilot job", "state"], [(j, states.get(j, "?")) for j in d.pilot], "pilot"))
        parts.append("<pre class=\"estimate\">" + escape("\n".join(d.estimate.lines()))
                     + "</pre>" if d.estimate else "<p>No pilot job has finished yet.</p>")

    p = d.provenance
    parts.append("<h2 id=\"provenance\">Provenance</h2>" + _table(["", ""], [
        ("container", p.container), ("image (annex key)", p.image_key or "?"),
        ("pipeline command", p.command),
        ("input dataset", f"{p.input_dataset} at {p.input_version or '?'}"),
        ("plan commit", p.plan_commit or "?"),
        ("encryption", p.encryption),
        ("lab key fingerprint(s)", " ".join(p.key_fingerprints))], "provenance"))
    parts.append("</body></html>\n")
    return "".join(parts)


def write_report(a: Analysis, target: Path) -> ReportOutcome:
    """Gather, render and write the page (via a temp file: never half a page)."""
    start = time.perf_counter()
    with gc_paused():   # 42k records and their aggregates: nothing cyclic to collect
        data = gather(a)
        page = render(data).encode()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(page)
    tmp.replace(target)
    return ReportOutcome(str(target), len(page), round(time.perf_counter() - start, 3),
                         len(data.status.jobs))
