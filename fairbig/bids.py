"""BIDS rules a plan needs: file names, the inheritance principle, labels, row-level state.

A job's input state must change when, and only when, something the job owns or
inherits changes. In BIDS a metadata file higher up (``T1w.json``,
``task-rest_events.tsv``, ``sub-01/sub-01_sessions.tsv``) applies to every data file
below whose name carries all of its entities and its suffix; descriptive files
(``README``, ``CHANGES``, ``dataset_description.json``) apply to no data at all, and
``participants.tsv`` holds one row per participant, so only that row is the
participant's. These are pure functions of names and file contents; reading them
from git is :mod:`fairbig.jobtable`'s work.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .contract import BIDS_FILTER_DIR
from .errors import FairbigError

LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
ENTITY_RE = re.compile(r"^[A-Za-z0-9]+-[A-Za-z0-9]+$")
# Fetched so the job sees a valid BIDS dataset, but describe the dataset, not the data:
# no job's input state depends on them.
DESCRIPTIVE_RE = re.compile(r"^(dataset_description\.json|README.*|CHANGES.*|LICENSE.*|"
                            r"CITATION\.cff|\.bidsignore|participants\.json|"
                            r"genetic_info\.json)$")
PARTICIPANTS = "participants.tsv"
DESCRIPTION = "dataset_description.json"   # its presence makes a dataset BIDS
# Metadata files that accompany data of another suffix (events of a bold run, a
# subject's sessions.tsv): they apply by entities alone.
COMPANIONS = frozenset({"events", "physio", "stim", "channels", "electrodes", "coordsystem",
                        "sessions", "scans", "beh"})
# Entities that name the folder a file lies in; inheritance is decided by the others.
FOLDER_ENTITIES = ("sub-", "ses-")
EMPTYROOM = "sub-emptyroom"
# The queries of fMRIPrep's BIDS filter file (``--bids-filter-file``); it refuses other
# keys, and QSIPrep/ASLPrep/XCP-D read the same format.
FILTER_QUERIES = ("bold", "sbref", "fmap", "t1w", "t2w", "flair", "roi")
ALL_SESSIONS = "all-sessions"   # the filter file of a subject job: no restriction


@dataclass(frozen=True)
class Name:
    """The parts of a BIDS file name inheritance looks at (``sub``/``ses`` left out)."""

    entities: frozenset[str]        # "acq-mprage", "task-rest", ...
    suffix: str                     # "T1w", "bold", "events", ...

    @classmethod
    def parse(cls, filename: str) -> Name | None:
        """``acq-mp_T1w.json`` -> ({acq-mp}, T1w); None for names that are not BIDS-shaped.
        Names are parsed without their folder labels, once per shape (see :func:`_shape`)."""
        return _parse_shape(_shape(filename))

    @classmethod
    def _parse(cls, filename: str) -> Name | None:
        parts = filename.split(".", 1)[0].split("_")
        suffix, entities = parts[-1], parts[:-1]
        if not LABEL_RE.match(suffix) or not all(ENTITY_RE.match(e) for e in entities):
            return None
        return cls(frozenset(e for e in entities if not e.startswith(FOLDER_ENTITIES)), suffix)

    def applies_to(self, data: Name) -> bool:
        """The inheritance principle: all of this file's entities are the data file's,
        and the suffix is the data file's (or this is a companion such as events)."""
        return self.entities <= data.entities and (self.suffix == data.suffix
                                                   or self.suffix in COMPANIONS)

    def applies_to_any(self, data: Iterable[Name]) -> bool:
        return any(self.applies_to(d) for d in data)


class Inheritable(NamedTuple):
    """A metadata file above a job's folder that may apply to the job's data (one per
    file of every subject folder: a NamedTuple, cheaper to make than a dataclass)."""

    path: str                       # relative to the input dataset
    sha: str
    name: Name


@functools.lru_cache(maxsize=65536)
def _parse_shape(shape: str) -> Name | None:
    return Name._parse(shape)


_SUB, _SES = FOLDER_ENTITIES


def _shape(filename: str) -> str:
    """``sub-01_ses-2_T1w.nii.gz`` -> ``T1w.nii.gz``: the same shape in every subject
    (the :data:`FOLDER_ENTITIES` in their order, unrolled: 300k calls in a plan)."""
    if filename.startswith(_SUB):
        filename = filename.partition("_")[2]
    if filename.startswith(_SES):
        filename = filename.partition("_")[2]
    return filename


def inheritable(files: Iterable[tuple[str, str]], prefix: str = "") -> list[Inheritable]:
    """Of ``(name, sha)`` files in one folder, those inheritance can apply (sorted);
    descriptive files and ``participants.tsv`` (row-level) are not among them."""
    out = []
    for name, sha in files:
        if DESCRIPTIVE_RE.match(name) or name == PARTICIPANTS:
            continue
        if parsed := Name.parse(name):
            out.append(Inheritable(prefix + name, sha, parsed))
    return sorted(out, key=lambda i: i.path)


class Applied(NamedTuple):
    """What of an :class:`Inheritance` applies to a set of job files: the top-level
    candidates, with their input paths and their part of the state text made once per
    set of shapes (85k jobs share a few), and of the subject folder's files the positions."""

    found: tuple[Inheritable, ...]
    own: tuple[int, ...]            # positions in the subject folder's ``local`` files
    paths: tuple[str, ...]          # found's paths
    text: str                       # found's part of the state text (:func:`state_text`)


class Inheritance:
    """Which inheritable files apply to a job, from the names of the job's files.

    Subjects of one study share a few file shapes (a T1w, two bold runs, ...) and the
    names of their own folder's files (``sub-XX_sessions.tsv`` in every subject), so
    both answers are cached per set of shapes and names of the subject's files: 85k
    session jobs cost a few matches, not 85k; the subject's own files are taken by
    position from the cached answer, so each job still gets its own subject's."""

    def __init__(self, candidates: Sequence[Inheritable]) -> None:
        self.candidates = tuple(candidates)
        self._cache: dict[tuple[frozenset[str], tuple[Name, ...]], Applied] = {}

    def applying(self, paths: Iterable[str],
                 local: Sequence[Inheritable] = ()) -> tuple[Inheritable, ...]:
        """The candidates (and of ``local``, a subject folder's) that apply to any of the
        job's files (paths below its folder)."""
        hit = self.applied(paths, local)
        return hit.found + tuple(local[k] for k in hit.own) if hit.own else hit.found

    def applied(self, paths: Iterable[str], local: Sequence[Inheritable] = ()) -> Applied:
        """:meth:`applying`'s answer before the subject's own files are picked out."""
        shapes = frozenset([_shape(p[p.rfind("/") + 1:]) for p in paths])
        key = (shapes, tuple([i.name for i in local]))
        hit = self._cache.get(key)
        if hit is None:
            names = tuple(n for s in shapes if (n := _parse_shape(s)))
            found = tuple(c for c in self.candidates if c.name.applies_to_any(names))
            hit = Applied(found,
                          tuple(k for k, c in enumerate(local) if c.name.applies_to_any(names)),
                          tuple(i.path for i in found), state_text(found))
            self._cache[key] = hit
        return hit


def rows_by_key(text: str, ignore: Collection[str] = ()) -> dict[str, str]:
    """A TSV's rows by their first column, each prefixed with the header line: a row's
    state changes with its own values and with the meaning of the columns, and with
    nothing else (another participant's row added or edited). The columns named in
    ``ignore`` (``inputs.ignore_columns``) are left out of header and rows, so a column
    added and ignored leaves every row's text byte for byte what it was; the first
    column is the key and always kept."""
    lines = text.splitlines()
    if not lines:
        return {}
    header = lines[0]
    names = header.split("\t")
    keep = [k for k, name in enumerate(names) if k == 0 or name not in ignore]
    if len(keep) == len(names):         # nothing ignored: the rows as they are
        return {line.split("\t", 1)[0]: f"{header}\n{line}"
                for line in lines[1:] if line.strip()}
    header = "\t".join(names[k] for k in keep)
    out = {}
    for line in lines[1:]:
        if line.strip():
            cells = line.split("\t")
            out[cells[0]] = header + "\n" + "\t".join(cells[k] for k in keep if k < len(cells))
    return out


class ColumnChange(NamedTuple):
    """Columns of a row-level table (``participants.tsv``) that differ between the
    previous plan's input and this one's: each changes the state of every row."""

    table: str
    added: tuple[str, ...]      # not ignored (inputs.ignore_columns)
    removed: tuple[str, ...]    # ignoring cannot undo these: the old rows had them

    def describe(self) -> str:
        """``added: a, b; removed: c`` (``reordered`` if neither)."""
        return "; ".join(f"{what}: {', '.join(cols)}" for what, cols in
                         (("added", self.added), ("removed", self.removed)) if cols) \
            or "reordered"

    @property
    def ignorable(self) -> bool:
        """Only added columns can be ignored: the old rows' text held the others."""
        return bool(self.added) and not self.removed


def column_change(table: str, old: str | None, new: str | None,
                  ignore: Collection[str] = ()) -> ColumnChange | None:
    """How the header of ``table`` changed from text ``old`` to ``new`` (None: absent),
    or None if no row's state changes by it (ignored columns added only)."""
    if old is None or new is None:
        return None                     # the table appears or goes: every row is new/gone
    before, after = _columns(old), _columns(new)
    added = tuple(c for c in after if c not in before and c not in ignore)
    removed = tuple(c for c in before if c not in after)
    if not added and not removed and [c for c in before if c not in ignore] == [
            c for c in after if c not in ignore]:
        return None
    return ColumnChange(table, added, removed)    # neither: the same columns, reordered


def _columns(text: str) -> list[str]:
    return text.split("\n", 1)[0].rstrip("\r").split("\t") if text else []


def state(own: str, inherited: Iterable[Inheritable], rows: Iterable[str]) -> str:
    """The input state of a job: its own tree, what it inherits, its table rows."""
    return state_of(own, state_text(inherited), rows_text(rows))


def state_of(own: str, inherited_text: str, rows: str) -> str:
    """:func:`state` from its parts' texts, so a plan makes the text of what many jobs
    share once: ``own``, then ``NUL path NUL sha`` per inherited file, then ``NUL row NUL
    row`` per table row (the NUL-joined list of those fields)."""
    return hashlib.sha1(f"{own}{inherited_text}{rows}".encode()).hexdigest()


def state_text(inherited: Iterable[Inheritable]) -> str:
    """Inherited files' part of :func:`state_of`'s text."""
    return "".join([f"\0{i.path}\0{i.sha}" for i in inherited])


def rows_text(rows: Iterable[str]) -> str:
    """Table rows' part of :func:`state_of`'s text."""
    return "".join([f"\0row\0{row}" for row in rows])


def bad_label(folder: str, prefix: str) -> bool:
    """Whether ``folder`` (``sub-01``, ``ses-pre``) is no valid BIDS label: letters and
    digits only after the prefix."""
    return not LABEL_RE.match(folder.removeprefix(prefix))


def refuse_bad_labels(pairs: Iterable[tuple[str, str]]) -> None:
    """``(subject, session)`` folders that are no BIDS labels, named in one line with
    how to leave them out; BIDS Apps and validators would reject them later, or worse,
    read ``sub-12_x`` as subject 12 with an entity ``x``."""
    bad = sorted({f for sub, ses in pairs
                  for f, p in ((sub, "sub-"), (ses, "ses-")) if f and bad_label(f, p)})
    if bad:
        shown = ", ".join(repr(b) for b in bad[:10]) + (" …" if len(bad) > 10 else "")
        raise FairbigError(f"{len(bad)} folder(s) of the input dataset are no valid BIDS labels"
                           f" (letters and digits only after sub-/ses-): {shown}",
                           f"rename them, or leave them out with --exclude {bad[0]}; "
                           "nothing was planned")


def missing_required(paths: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The ``required_files`` patterns no path of a job matches. Paths are relative to
    the job's folder; in a subject job with sessions a pattern is also tried below each
    ``ses-*`` folder, so ``anat/*_T1w.nii*`` means the same for both kinds of job."""
    if not patterns:
        return []
    rel = set()
    for p in paths:
        rel.add(p)
        first, _, rest = p.partition("/")
        if first.startswith("ses-") and rest:
            rel.add(rest)
    return [pat for pat in patterns if not any(fnmatch.fnmatchcase(p, pat) for p in rel)]


def filter_file(session: str) -> str:
    """The BIDS filter file of a job of ``session`` ("" for a subject job), relative to
    the analysis dataset: one per session label, since the App's ``--participant-label``
    already picks the subject. Committed with the plan, so ``rerun`` finds it."""
    return f"{BIDS_FILTER_DIR}/{session or ALL_SESSIONS}.json"


def filter_text(session: str) -> str:
    """fMRIPrep's filter-file format restricting every query to ``session``'s label."""
    label = session.removeprefix("ses-")
    body = {q: {"session": label} for q in FILTER_QUERIES} if session else {}
    return json.dumps(body, indent=2, sort_keys=True) + "\n"
