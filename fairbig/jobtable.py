"""``fairbig plan``: the job table, from git trees only.

The table is a pure function of the input dataset's recorded state and the
configuration, so the same inputs give a byte-identical ``plan.tsv``; what
is already done is decided separately (against the output store) so the
table itself never depends on how far a computation got.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import operator
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from .annexkeys import got_content, key_of_link
from .bids import (
    DESCRIPTION,
    DESCRIPTIVE_RE,
    EMPTYROOM,
    PARTICIPANTS,
    Inheritance,
    filter_file,
    filter_text,
    inheritable,
    missing_required,
    rows_by_key,
    rows_text,
    state_of,
    state_text,
)
from .contract import APP_SCRATCH
from .errors import CommandError, FairbigError
from .gitcmd import GITLINK, TREE, Entry, GitError, git, ls_tree, ls_tree_batches
from .gittree import git_dir_of, gitlink
from .ids import all_job_ids_valid, all_paths_safe, job_id_problem, path_problem
from .jobstate import gc_paused

HEADER = ("job_id", "subject", "session", "input_state", "inputs", "outputs", "command")
LIST_SEP = ","  # between the paths of the inputs and outputs columns
UKB_RECORD_RE = re.compile(r"^\d+_(\d+)_\d+(\.[A-Za-z0-9.]+)?$")
# What fairbig fills into the command per job; {subject_label}/{session_label} are the
# bare BIDS labels a BIDS App takes (--participant-label 01, not sub-01), and
# {bids_filter_file} the BIDS filter file (--bids-filter-file) of the job's session;
# {app_output_dir} a scratch output_dir for a BIDS App, whose sub-XX/[ses-YY/] tree the
# job's command then copies into its own area (the App's top-level files stay behind).
FILTER_PLACEHOLDER = "bids_filter_file"
APP_PLACEHOLDER = "app_output_dir"
PLACEHOLDERS = ("job", "subject", "subject_label", "session", "session_label", "input_dir",
                "output_dir", FILTER_PLACEHOLDER, APP_PLACEHOLDER)
PLACEHOLDER_RE = re.compile("{(" + "|".join(PLACEHOLDERS) + ")}")


class Unit(NamedTuple):
    """A subject (or subject × session) as found in the input dataset. A NamedTuple, as
    :class:`Job`: a plan makes 85k of each, and 85k frozen dataclasses of these fields
    took 1.9 s to make (their ``__init__`` sets each field through ``object.__setattr__``),
    85k NamedTuples 0.2 s (load 8)."""

    subject: str
    session: str
    state: str                      # identifies this unit's input content
    paths: tuple[str, ...]          # input paths relative to the input dataset
    input_dir: str                  # folder relative to the input dataset


class Job(NamedTuple):
    """One row of the plan: immutable, compared and hashed by value."""

    job_id: str
    subject: str
    session: str
    input_state: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    command: str

    def row(self) -> str:
        return "\t".join((self.job_id, self.subject, self.session, self.input_state,
                          LIST_SEP.join(self.inputs), LIST_SEP.join(self.outputs),
                          self.command))


@dataclass
class Layout:
    kind: str                       # "ukb" (a subdataset per subject) or "bids"
    units: list[Unit] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)   # ID -> why it has no job
    sessionless: list[str] = field(default_factory=list)    # by session, planned by subject
    mixed: bool = False             # by session: some subjects have sessions, some not


# ---------------------------------------------------------------- reading (git)

@gc_paused()
def read_layout(root: Path, inputs_path: str, layout: str, by: str,
                commit: str | None = None, bids: BidsOptions | None = None) -> Layout:
    """Subjects/sessions of the input dataset at ``commit``; by default the commit
    ``root``'s HEAD records (``plan --update`` passes the one it is about to record)."""
    recorded = gitlink(git_dir_of(root), "HEAD", inputs_path)
    if not recorded:
        raise FairbigError(f"{inputs_path} is not a subdataset of {root}",
                           "set inputs.path in fairbig.yaml to the input dataset's path")
    commit = commit or recorded
    sub_git = git_dir_of(root / inputs_path)
    if not sub_git.exists():
        raise FairbigError(f"the input dataset {inputs_path} is not installed",
                           f"run 'datalad get -n {inputs_path}'")
    if layout == "bids" or (layout == "auto" and _described(sub_git, commit)):
        # detect()'s answer without listing a top folder of 42k subjects (0.2 s)
        return _bids_units(root / inputs_path, sub_git, commit, by, bids or BidsOptions())
    top = list(ls_tree(sub_git, commit))
    kind = layout if layout != "auto" else detect(top)
    if kind == "ukb":
        return _ukb_units(root, inputs_path, sub_git, top, by)
    return _bids_units(root / inputs_path, sub_git, commit, by, bids or BidsOptions())


def _described(git_dir: Path, commit: str) -> bool:
    """Whether ``commit`` has a top-level ``dataset_description.json``, which makes it
    BIDS for :func:`detect` whatever else it holds."""
    return any(e.path == DESCRIPTION for e in ls_tree(git_dir, commit, DESCRIPTION))


def detect(top: Sequence[Entry]) -> str:
    """BIDS has ``sub-*`` folders or subdatasets (and a ``dataset_description.json``);
    UK Biobank inputs have a subdataset per numeric participant ID."""
    subjects = [e for e in top if e.mode in (TREE, GITLINK) and e.path.startswith("sub-")]
    if subjects or any(e.path == DESCRIPTION for e in top):
        return "bids"
    if any(e.mode == GITLINK for e in top):
        return "ukb"
    raise FairbigError("cannot tell the input layout: no subject subdatasets and no sub-*"
                       " folders", "set inputs.layout in fairbig.yaml (ukb or bids)")


def _ukb_units(root: Path, inputs_path: str, sub_git: Path, top: Sequence[Entry],
               by: str) -> Layout:
    out = Layout("ukb")
    links = [e for e in top if e.mode == GITLINK]
    if by == "subject":
        out.units = [Unit(e.path, "", e.sha, (e.path,), e.path) for e in links]
        return out
    for e in links:
        entries = _subject_tree(root / inputs_path, sub_git, e)
        if entries is None:
            out.skipped[e.path] = "subject tree unreadable (install the subdataset)"
            continue
        out.units += _sessions(e.path, e.sha, entries)
    return out


def _subject_tree(input_root: Path, sub_git: Path, link: Entry) -> list[Entry] | None:
    """A subject subdataset's tree, from its local clone or, if absent, the input store."""
    local = git_dir_of(input_root / link.path)
    candidates = [local] if local.exists() else []
    url = git(sub_git, "config", "--blob", "HEAD:.gitmodules",
              f"submodule.{link.path}.datalad-id", check=False).stdout.strip()
    store = _store_of(input_root)
    if url and store:
        candidates.append(store / url[:3] / url[3:])
    for cand in candidates:
        try:
            return list(ls_tree(cand, link.sha, recursive=True, trees=True))
        except GitError:
            continue
    return None


def _store_of(input_root: Path) -> Path | None:
    for key in ("remote.origin.url", "remote.input-store.url"):
        url = git(git_dir_of(input_root), "config", key, check=False).stdout.strip()
        # A dataset cloned from a RIA store has its origin at <store>/<xxx>/<yyy...>
        if url.startswith("/") and (Path(url).parent.parent / "ria-layout-version").exists():
            return Path(url).parent.parent
    return None


def _sessions(subject: str, state: str, entries: Iterable[Entry]) -> list[Unit]:
    by_session: dict[str, list[str]] = {}
    for e in entries:
        first = e.path.split("/")[0]
        if first.startswith("ses-"):
            by_session.setdefault(first, []).append(first)
        elif m := UKB_RECORD_RE.match(first):
            by_session.setdefault(f"ses-{m.group(1)}", []).append(first)
    units = []
    for ses, paths in sorted(by_session.items()):
        uniq = tuple(sorted({f"{subject}/{p}" for p in paths}))
        digest = hashlib.sha1(f"{state} {ses}".encode()).hexdigest()
        units.append(Unit(subject, ses, digest, uniq, subject))
    return units


@dataclass(frozen=True)
class BidsOptions:
    """The BIDS settings of ``fairbig.yaml`` (``inputs.*``) a plan reads."""

    emptyroom: bool = False
    required_files: tuple[str, ...] = ()
    ignore_columns: tuple[str, ...] = ()    # of participants.tsv: not in its rows' state


def _sha(meta: str) -> str:
    """The object id of an ``ls-tree`` record's ``<mode> SP <type> SP <sha>`` part."""
    return meta[meta.rindex(" ") + 1:]


@dataclass
class _Subject:
    """One ``sub-*`` folder or subdataset: what a plan needs of its files and folders
    (paths relative to it)."""

    path: str
    sha: str                                                # tree, or commit of a subdataset
    subdataset: bool = False
    files: list[str] = field(default_factory=list)          # every file below it
    own: dict[str, str] = field(default_factory=dict)       # its folder's files -> blob
    sessions: dict[str, str] = field(default_factory=dict)  # ses-X folder -> tree
    below: dict[str, list[str]] = field(default_factory=dict)  # ses-X -> files below it


def _scan_bids(batches: Iterable[list[str]], top: dict[str, str],
               subjects: dict[str, _Subject]) -> None:
    """Sort ``ls-tree -r -t`` records of a BIDS dataset into its top-level files
    (path -> blob) and its ``sub-*`` folders and subdatasets. A plan of 85k session jobs
    reads 600k records, so each is cut once at its tab and once at its first ``/``, and
    handled here, not by a call per record."""
    for batch in batches:
        for rec in batch:
            if rec.startswith(TREE) and rec.count("/") > 1:
                continue                            # a folder two levels down: not needed
            meta, _, path = rec.partition("\t")      # meta: <mode> SP <type> SP <sha>
            first, sep, rest = path.partition("/")
            if not sep:
                if first.startswith("sub-") and meta.startswith((TREE, GITLINK)):
                    subjects[first] = _Subject(first, _sha(meta), meta.startswith(GITLINK))
                elif not meta.startswith(TREE):
                    top[first] = _sha(meta)
            elif (sub := subjects.get(first)) is None:
                continue
            elif meta.startswith(TREE):
                if rest.startswith("ses-") and "/" not in rest:
                    sub.sessions[rest] = _sha(meta)
            else:
                sub.files.append(rest)
                folder, sep, name = rest.partition("/")
                if not sep:
                    sub.own[rest] = _sha(meta)
                elif folder.startswith("ses-"):
                    sub.below.setdefault(folder, []).append(name)


def _bids_units(input_root: Path, sub_git: Path, commit: str, by: str,
                opts: BidsOptions) -> Layout:
    """Units of a BIDS dataset (``sub-*`` folders or subdatasets) with what each owns and
    inherits, from one recursive ``ls-tree`` (plus one per subject subdataset)."""
    out = Layout("bids")
    top: dict[str, str] = {}
    found: dict[str, _Subject] = {}
    _scan_bids(ls_tree_batches(sub_git, commit, recursive=True, trees=True), top, found)
    subjects: dict[str, _Subject] = {}
    for sub in found.values():
        if sub.subdataset and not _read_subdataset(input_root, sub_git, sub):
            out.skipped[sub.path] = "subject subdataset's tree unreadable (install it)"
        else:
            subjects[sub.path] = sub
    if EMPTYROOM in subjects and not opts.emptyroom:
        del subjects[EMPTYROOM]
        out.skipped[EMPTYROOM] = ("MEG empty-room recordings (inputs.bids_emptyroom: true "
                                  "plans them)")
    fetched = tuple(sorted(p for p in top if DESCRIPTIVE_RE.match(p) or p == PARTICIPANTS))
    rows = rows_by_key(_table_text(input_root, sub_git, top[PARTICIPANTS]),
                       opts.ignore_columns) if PARTICIPANTS in top else None
    top_rules = Inheritance(inheritable(top.items()))
    with_sessions = 0
    units = out.units
    for sub in subjects.values():
        sessions = sorted(sub.sessions)
        with_sessions += bool(sessions)
        row = rows_text((f"participants:{rows.get(sub.path, '-')}",)) if rows is not None else ""
        if by == "subject" or not sessions:
            if by == "session":
                out.sessionless.append(sub.path)
            parts = [(sub.path, "", sub.sha, sub.path, sub.files, ())]
        else:
            local = inheritable(sub.own.items(), f"{sub.path}/")
            parts = [(sub.path, ses, sub.sessions[ses], f"{sub.path}/{ses}",
                      sub.below.get(ses, []), local) for ses in sessions]
        for subject, session, own, folder, files, local in parts:
            if opts.required_files and (missing := missing_required(files, opts.required_files)):
                jid = f"{subject}_{session}" if session else subject
                out.skipped[jid] = f"no file matches required_files {', '.join(missing)}"
                continue
            # what jobs of one file shape inherit from the top is made once (paths and
            # state text); of the subject's folder, its own files
            hit = top_rules.applied(files, local)
            mine = [local[k] for k in hit.own]
            units.append(Unit(subject, session, state_of(own, hit.text + state_text(mine), row),
                              (folder, *hit.paths, *[i.path for i in mine], *fetched), folder))
    out.mixed = by == "session" and 0 < with_sessions < len(subjects)
    return out


def _read_subdataset(input_root: Path, sub_git: Path, sub: _Subject) -> bool:
    """Add a subject subdataset's files to ``sub``, read as if they were a folder of
    the dataset."""
    entries = _subject_tree(input_root, sub_git, Entry(GITLINK, "commit", sub.sha, sub.path))
    if entries is None:
        return False
    _scan_bids([[e._replace(path=f"{sub.path}/{e.path}").record() for e in entries]], {},
               {sub.path: sub})
    return True


def _read_blob(git_dir: Path, sha: str) -> str:
    return git(git_dir, "cat-file", "blob", sha).stdout


def _table_text(input_root: Path, git_dir: Path, sha: str) -> str:
    """The text of a row-level table whose blob is ``sha``. An annexed one (a symlink or
    pointer file in the tree, as in a dataset that annexes every file) is got from the
    input dataset's annex: its rows, not its key, are the jobs' state, so an edited row
    changes its participant's jobs only (read as the link text, it changed none)."""
    text = _read_blob(git_dir, sha)
    key = key_of_link(text.strip()) if "\n" not in text.rstrip("\n") else ""
    if not key:
        return text
    try:
        where = got_content(input_root, key)
    except CommandError as exc:
        raise FairbigError(
            f"{PARTICIPANTS} is annexed in {input_root} and its content ({key}) could not be "
            f"got ({_last_line(exc)}); make it available (datalad get), or keep the table "
            "in git") from None
    return where.read_text(encoding="utf-8", errors="surrogateescape")


def _last_line(exc: CommandError) -> str:
    lines = exc.stderr.strip().splitlines()
    return lines[-1].strip() if lines else f"exit code {exc.returncode}"


def row_table(root: Path, inputs_path: str, commit: str, name: str = PARTICIPANTS) -> str | None:
    """The text of the row-level table ``name`` of the input dataset at ``commit`` (None
    if it has none there), annexed or not, for :func:`fairbig.bids.column_change`."""
    repo = root / inputs_path
    found = [e for e in ls_tree(git_dir_of(repo), commit, name)
             if e.path == name and e.type == "blob"]
    return _table_text(repo, git_dir_of(repo), found[0].sha) if found else None


# ---------------------------------------------------------------- pure planning

def select(units: Sequence[Unit], only: Collection[str],
           exclude: Collection[str]) -> list[Unit]:
    """Apply --only/--exclude (matching subject IDs or job IDs)."""
    only, exclude = set(only), set(exclude)

    def key_ids(u: Unit) -> set[str]:
        return {u.subject, job_id(u)}

    chosen = [u for u in units if not (key_ids(u) & exclude)]
    if only:
        chosen = [u for u in chosen if key_ids(u) & only]
    return chosen


def unknown_ids(units: Sequence[Unit], ids: Iterable[str]) -> list[str]:
    """Those of ``ids`` that name no subject and no job of ``units``, sorted."""
    known = {u.subject for u in units} | {job_id(u) for u in units}
    return sorted(set(ids) - known)


def nearest(unknown: str, units: Sequence[Unit]) -> str:
    """The known ID a mistyped one most likely meant ("" if none is close): BIDS IDs
    are given without their ``sub-`` prefix often enough to try that first."""
    known = sorted({u.subject for u in units} | {job_id(u) for u in units})
    if f"sub-{unknown}" in known:
        return f"sub-{unknown}"
    close = difflib.get_close_matches(unknown, known, n=1, cutoff=0.75)
    return close[0] if close else ""


def refuse_unknown(option: str, ids: Iterable[str], units: Sequence[Unit]) -> None:
    """One line naming the IDs given to ``option`` that the input dataset does not have;
    a typo must not plan nothing (``--only``) or everything (``--exclude``)."""
    bad = unknown_ids(units, ids)
    if not bad:
        return
    shown = ", ".join(repr(b) + (f" (did you mean {m!r}?)" if (m := nearest(b, units)) else "")
                      for b in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    raise FairbigError(f"{option} names {len(bad)} ID(s) that are no subject or job of the "
                       f"input dataset: {shown}",
                       "give subject IDs or job IDs as 'fairbig plan --dry-run --json' lists "
                       "them; nothing was planned")


def dropped_with_results(previous: Iterable[str], jobs: Sequence[Job],
                         finished: Collection[str]) -> list[str]:
    """Jobs of the previous plan that this one leaves out although the output store
    has their results (a branch or a merged result), sorted."""
    kept = {j.job_id for j in jobs}
    return sorted(j for j in previous if j not in kept and j in finished)


def job_id(unit: Unit) -> str:
    return f"{unit.subject}_{unit.session}" if unit.session else unit.subject


def command_template(command: str) -> str:
    """``command`` as a ``str.format`` template of the placeholders fairbig fills per
    job, every other brace doubled so it reaches the job as written (``${x}`` for the
    shell, ``{inputs}`` for datalad run): 85k commands are then one C call each, not a
    regex substitution calling back into Python per placeholder."""
    parts = PLACEHOLDER_RE.split(command)   # literal, name, literal, ..., literal
    return "".join("{" + p + "}" if i % 2 else p.replace("{", "{{").replace("}", "}}")
                   for i, p in enumerate(parts))


@gc_paused()
def make_jobs(units: Sequence[Unit], inputs_path: str, results: str, command: str,
              results_layout: str = "flat") -> list[Job]:
    """Jobs for ``units``, sorted by ID; refuses IDs or paths unsafe for a shell.

    The one place a job's area (its ``outputs``) is decided: ``<results>/<job ID>`` in
    the flat layout, ``<results>/<subject>[/<session>]`` in the BIDS-derivatives one,
    where the session jobs of a subject share ``sub-XX/`` but not a path. Job body,
    merge, export and rerun read the area from the plan's ``outputs`` column."""
    ids = [job_id(u) for u in units]
    bad = sorted({i for i in ids if job_id_problem(i)})
    if bad:
        shown = ", ".join(repr(b) for b in bad[:10]) + (" …" if len(bad) > 10 else "")
        raise FairbigError(f"{len(bad)} subject/session ID(s) are unsafe for job names: {shown}"
                           f" ({job_id_problem(bad[0])})",
                           "rename them in the input dataset or leave them out with --exclude")
    bids = results_layout == "bids"
    template = command_template(command)
    if "{" + APP_PLACEHOLDER + "}" in template:
        # the App's subject/session subtree into the job's area, in the recorded command
        template += " && mkdir -p {output_dir} && cp -R {app_output_dir}/{app_tree}/. {output_dir}/"
    jobs = []
    checked: dict[str, str] = {}    # inherited paths recur in every job: check each once
    for jid, u in zip(ids, units, strict=True):
        inputs = tuple([checked.get(p) or _checked_input(checked, inputs_path, p, jid)
                        for p in u.paths])
        tree = f"{u.subject}/{u.session}" if u.session else u.subject
        output = f"{results}/{tree}" if bids else f"{results}/{jid}"
        values = {"job": jid, "subject": u.subject, "session": u.session,
                  "subject_label": u.subject.removeprefix("sub-"),
                  "session_label": u.session.removeprefix("ses-"),
                  "input_dir": f"{inputs_path}/{u.input_dir}", "output_dir": output,
                  FILTER_PLACEHOLDER: filter_file(u.session),
                  APP_PLACEHOLDER: f"{APP_SCRATCH}/{jid}", "app_tree": tree}
        jobs.append(Job(jid, u.subject, u.session, u.state, inputs, (output,),
                        template.format_map(values)))
    jobs.sort(key=operator.attrgetter("job_id"))
    dupes = sorted({a.job_id for a, b in itertools.pairwise(jobs) if a.job_id == b.job_id})
    if dupes:
        raise FairbigError(f"duplicate job IDs: {', '.join(dupes[:5])}",
                           "plan --by session, or rename the clashing subjects")
    if bids:
        refuse_nested(jobs)
    return jobs


def refuse_nested(jobs: Sequence[Job]) -> None:
    """Merge lets a job write only below its area and refuses two jobs writing one
    path; an area inside another's (a subject job's ``sub-01/`` over a session job's
    ``sub-01/ses-1/``) would let both write one file, so such a plan is refused. Sorted
    with a trailing ``/``, every area is directly followed by the areas inside it."""
    owner = {f"{o}/": j.job_id for j in jobs for o in j.outputs}
    areas = sorted(owner)
    nested = [(a, b) for a, b in itertools.pairwise(areas) if b.startswith(a)]
    if nested:
        outer, inner = nested[0]
        raise FairbigError(f"{len(nested)} job area(s) lie inside another's, e.g. job "
                           f"{owner[inner]}'s {inner} inside job {owner[outer]}'s {outer}",
                           "plan --by session with sessions in every folder of the subject, "
                           "or set results_layout: flat; nothing was planned")


def _checked_input(checked: dict[str, str], inputs_path: str, path: str, jid: str) -> str:
    """``path`` of the input dataset as a path of the analysis dataset, remembered in
    ``checked`` once it is found safe for a shell."""
    full = f"{inputs_path}/{path}"
    if problem := path_problem(full):
        raise FairbigError(f"input path {full!r} of job {jid} is unsafe: {problem}",
                           f"rename it or leave the job out with --exclude {jid}")
    checked[path] = full
    return full


def filter_files(jobs: Sequence[Job], command: str) -> dict[str, str]:
    """The BIDS filter files the jobs' commands name (path -> text), none if the command
    does not use ``{bids_filter_file}``."""
    if "{" + FILTER_PLACEHOLDER + "}" not in command:
        return {}
    return {filter_file(s): filter_text(s) for s in sorted({j.session for j in jobs})}


def render_tsv(jobs: Sequence[Job]) -> str:
    return "\t".join(HEADER) + "\n" + "".join(j.row() + "\n" for j in jobs)


@gc_paused()
def parse_tsv(text: str) -> list[Job]:
    lines = text.splitlines()
    if not lines or tuple(lines[0].split("\t")) != HEADER:
        raise FairbigError("the plan file has an unexpected format", "run 'fairbig plan' again")
    rows = [line.split("\t") for line in lines[1:]]
    if not _rows_valid(rows):
        _refuse_first_bad_row(rows)
    sep = LIST_SEP
    return [Job._make((f[0], f[1], f[2], f[3], tuple(f[4].split(sep)), tuple(f[5].split(sep)),
                       f[6])) for f in rows]


def _rows_valid(rows: list[list[str]]) -> bool:
    """Rows reach job scripts, which quote them but also delete a job's outputs. Every
    command reads the plan: its IDs and paths are checked all at once (43,767 rows of two
    paths: 76 ms row by row, 21 ms so; benchmarks/bench_plan_parse.py); only a plan that
    fails is read again row by row, to name its first bad row."""
    if set(map(len, rows)) - {len(HEADER)}:
        return False
    return (all_job_ids_valid([f[0] for f in rows])
            and all_paths_safe([f[4] for f in rows] + [f[5] for f in rows], LIST_SEP))


def _refuse_first_bad_row(rows: list[list[str]]) -> None:
    """Raise for the first bad row, with its line number, as the one-line error says."""
    safe: set[str] = set()      # paths found safe: the inherited ones recur in every row
    width = len(HEADER)
    for n, f in enumerate(rows, start=2):
        if len(f) != width:
            problem: str | None = f"has {len(f)} fields, not {width}"
        else:
            paths = (*f[4].split(LIST_SEP), *f[5].split(LIST_SEP))
            problem = _row_problem(f[0], paths, safe)
        if problem:
            raise FairbigError(f"line {n} of the plan file {problem}",
                               "run 'fairbig plan' again; the plan is not edited by hand")


def _row_problem(jid: str, paths: tuple[str, ...], safe: set[str]) -> str | None:
    """The first problem of one row. Each path is checked once and then kept in ``safe``:
    85k rows of 11 paths took 1.2 CPU-s to check path by path."""
    if problem := job_id_problem(jid):
        return f"has a job ID {jid!r} that {problem}"
    for path in paths:
        if path in safe:
            continue
        if problem := path_problem(path):
            return f"has a path {path!r} that {problem}"
        safe.add(path)
    return None


@dataclass
class PlanDiff:
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)

    @property
    def todo(self) -> list[str]:
        return self.new + self.changed


def diff(jobs: Sequence[Job], finished: dict[str, str]) -> PlanDiff:
    """Compare the plan with finished results.

    ``finished`` maps job IDs to the input state their result was made from; a job is
    *done* when that is this plan's state, *changed* when a result exists for another
    state, and *new* when it has no result at all, however often it was planned.
    """
    d = PlanDiff()
    for j in jobs:
        state = finished.get(j.job_id)
        if state == j.input_state:
            d.done.append(j.job_id)
        elif state is not None:
            d.changed.append(j.job_id)
        else:
            d.new.append(j.job_id)
    return d
