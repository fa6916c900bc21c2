"""Further input datasets (``inputs.secondary``): an earlier derivatives dataset (e.g.
fMRIPrep output for XCP-D) beside the raw BIDS dataset that defines the jobs.

The primary dataset (``inputs.path``) decides which jobs there are, as before; each
secondary dataset contributes the same subject's folder (``sub-XX``: its files and
folders, of a session job those outside other sessions' ``ses-*`` folders) and its
``dataset_description.json`` (fetched, no part of the state, as the primary's). A
job's input state then covers every input dataset: a change below ``sub-01`` of a
secondary dataset changes the jobs of ``sub-01`` only. A subject a secondary dataset
lacks is skipped with that reason (a derivatives dataset usually lacks the subjects
its pipeline failed on: their jobs cannot run).

Applied to the jobs the primary dataset makes, after :func:`jobtable.make_jobs`, so a
plan without secondary datasets is made by exactly the code it always was.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from .errors import FairbigError
from .gitcmd import GITLINK, TREE, ls_tree_batches
from .gittree import git_dir_of, gitlink
from .ids import path_problem
from .jobtable import Job

SECONDARY_PLACEHOLDER = "input_dir"  # {input_dir:NAME}: a secondary dataset's folder
SECONDARY_RE = re.compile("{" + SECONDARY_PLACEHOLDER + r":([A-Za-z][A-Za-z0-9_-]*)}")
# top-level files every job of it reads; descriptive, so (as the primary dataset's
# dataset_description.json) fetched but no part of any job's input state
SHARED = ("dataset_description.json",)


class Secondary(NamedTuple):
    """One secondary dataset as recorded: what a plan needs of its top two levels."""

    name: str
    path: str                                   # relative to the analysis dataset
    commit: str                                 # the commit the plan is made from
    shared: tuple[tuple[str, str], ...]         # (top-level file of SHARED, blob)
    subjects: dict[str, dict[str, str]]         # sub-XX -> {entry: object}; a subject
    #                                             subdataset: {"": its commit}


def read_secondary(root: Path, name: str, path: str, commit: str | None = None) -> Secondary:
    """``path``'s ``sub-*`` folders (or subdatasets) and their entries at ``commit`` (by
    default the one ``root``'s HEAD records), from one ``ls-tree``."""
    recorded = gitlink(git_dir_of(root), "HEAD", path)
    if not recorded:
        raise FairbigError(f"{path} (inputs.secondary {name}) is not a subdataset of {root}",
                           f"add it with 'datalad clone -d . URL {path}' or fix "
                           "inputs.secondary in fairbig.yaml")
    sub_git = git_dir_of(root / path)
    if not sub_git.exists():
        raise FairbigError(f"the input dataset {path} ({name}) is not installed",
                           f"run 'datalad get -n {path}'")
    commit = commit or recorded
    return Secondary(name, path, commit, *scan(ls_tree_batches(sub_git, commit,
                                                               recursive=True, trees=True)))


def scan(batches: Iterable[list[str]]) -> tuple[tuple[tuple[str, str], ...],
                                                 dict[str, dict[str, str]]]:
    """The SHARED files and the ``sub-*`` entries of ``ls-tree -r -t`` records."""
    shared: dict[str, str] = {}
    subjects: dict[str, dict[str, str]] = {}
    for batch in batches:
        for rec in batch:
            meta, _, p = rec.partition("\t")
            first, sep, rest = p.partition("/")
            if not sep:
                if first.startswith("sub-") and meta.startswith((TREE, GITLINK)):
                    sha = meta.rsplit(" ", 1)[1]
                    subjects[first] = {"": sha} if meta.startswith(GITLINK) else {}
                elif first in SHARED:
                    shared[first] = meta.rsplit(" ", 1)[1]
            elif "/" not in rest and (entries := subjects.get(first)) is not None \
                    and "" not in entries:
                entries[rest] = meta.rsplit(" ", 1)[1]
    return tuple(sorted(shared.items())), subjects


class Part(NamedTuple):
    """What one secondary dataset gives one job."""

    folder: str                 # {input_dir:NAME}, relative to the analysis dataset
    paths: tuple[str, ...]      # its inputs, relative to the analysis dataset
    state: str                  # identifies their content


def part(sec: Secondary, subject: str, session: str) -> Part | None:
    """The secondary dataset's share of the job of ``subject`` (``session``); None if it
    has no such subject."""
    entries = sec.subjects.get(subject)
    if entries is None:
        return None
    base = f"{sec.path}/{subject}"
    if "" in entries:                           # a subject subdataset: all of it
        chosen = [("", entries[""])]
    else:
        chosen = [(e, sha) for e, sha in sorted(entries.items())
                  if not e.startswith("ses-") or not session or e == session]
    folder = f"{base}/{session}" if session and session in entries else base
    paths = (*(f"{base}/{e}" if e else base for e, _ in chosen),
             *(f"{sec.path}/{f}" for f, _ in sec.shared))
    text = "\0".join(f"{e}\0{sha}" for e, sha in chosen)
    return Part(folder, paths, hashlib.sha1(text.encode()).hexdigest())


def add_secondaries(jobs: Sequence[Job], secondaries: Sequence[Secondary],
                    skipped: dict[str, str]) -> list[Job]:
    """``jobs`` with each secondary dataset's inputs added, their input state over all
    the datasets and ``{input_dir:NAME}`` filled in; a job whose subject a secondary
    dataset lacks is left out and entered in ``skipped`` with the reason."""
    if not secondaries:
        return list(jobs)
    out = []
    for job in jobs:
        parts = [(s.name, part(s, job.subject, job.session)) for s in secondaries]
        if missing := [name for name, p in parts if p is None]:
            skipped[job.job_id] = f"{job.subject} is not in input dataset(s) {', '.join(missing)}"
            continue
        got = {name: p for name, p in parts if p is not None}
        for path in (q for p in got.values() for q in p.paths):
            if problem := path_problem(path):
                raise FairbigError(f"input path {path!r} of job {job.job_id} is unsafe: "
                                   f"{problem}",
                                   f"rename it or leave the job out with --exclude {job.job_id}")
        state = hashlib.sha1("\0".join(
            [job.input_state, *(f"{n}\0{p.state}" for n, p in got.items())]).encode()).hexdigest()
        folders = {name: p.folder for name, p in got.items()}
        command = SECONDARY_RE.sub(lambda m, f=folders: f[m.group(1)], job.command)
        out.append(job._replace(input_state=state, command=command, inputs=(
            *job.inputs, *(q for p in got.values() for q in p.paths))))
    return out
