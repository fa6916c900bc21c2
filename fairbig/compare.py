"""``fairbig compare``: two computations, file by file, from git trees and annex keys.

No content is fetched: an annexed file is identified by its key, which
for a hashing backend *is* a checksum of the content. Keys of different
backends (MD5E vs SHA256E) cannot be compared without content, and are
reported as undecidable rather than guessed.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .annexkeys import SYMLINK, blob_texts, looks_like_key
from .errors import FairbigError
from .gittree import git_dir_of
from .proc import git

STATUSES = ("identical", "differs", "only-in-A", "only-in-B", "undecidable")


@dataclass(frozen=True)
class Side:
    git_dir: Path
    ref: str


def resolve_side(spec: str) -> Side:
    """``PATH``, ``PATH@REF`` or ``ria+file:///store#<dataset id>[@REF]``."""
    ref = ""
    if "@" in spec.rsplit("/", 1)[-1]:
        spec, ref = spec.rsplit("@", 1)
    if spec.startswith("ria+file://"):
        store, _, dsid = spec[len("ria+file://"):].partition("#")
        if not dsid:
            raise ValueError(f"'{spec}' names no dataset: append #<dataset id>")
        path = Path(store) / dsid[:3] / dsid[3:]
    else:
        path = Path(spec)
    if not path.exists():
        raise ValueError(f"'{path}' does not exist: give a repository, a work tree or a"
                         " ria+file:// URL with #<dataset id>")
    gdir = path if (path / "HEAD").exists() and (path / "objects").exists() else git_dir_of(path)
    if not (gdir / "HEAD").exists():
        raise ValueError(f"'{path}' is not a git repository")
    for candidate in ([ref] if ref else ["main", "master", "HEAD"]):
        res = git(gdir, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}",
                  check=False)
        if res.returncode == 0:
            return Side(gdir, res.stdout.strip())
    raise ValueError(f"ref '{ref or 'main'}' not found in {path}: give an existing branch,"
                     " tag or commit after @")


def read_results(side: Side, root: str = "results") -> dict[str, str]:
    """Path -> content identity (annex key, ``git:<blob>`` or ``link:<blob>``)."""
    return identities(side, _listing(side, [root]))


def _listing(side: Side, paths: list[str]) -> dict[str, tuple[str, str]]:
    """Path -> (mode, object sha) below ``paths``, one ``ls-tree`` call."""
    out = git(side.git_dir, "ls-tree", "-r", "-z", "--full-tree", side.ref, "--",
              *paths).stdout
    entries = {}
    for rec in filter(None, out.split("\0")):
        meta, _, path = rec.partition("\t")
        mode, _, sha = meta.split()
        entries[path] = (mode, sha)
    return entries


def identities(side: Side, entries: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Resolve annex symlinks to their keys (one ``cat-file --batch`` for all)."""
    links = [(p, sha) for p, (mode, sha) in entries.items() if mode == SYMLINK]
    ident = {p: f"git:{sha}" for p, (mode, sha) in entries.items() if mode != SYMLINK}
    for (path, sha), target in zip(links, blob_texts(side.git_dir, [s for _, s in links]),
                                   strict=True):
        ident[path] = os.path.basename(target) if looks_like_key(target) else f"link:{sha}"
    return ident


def _units(side: Side, root: str) -> dict[str, str]:
    """Job folder -> tree sha: equal shas mean equal content, nothing below to read."""
    res = git(side.git_dir, "ls-tree", "-z", f"{side.ref}:{root}", check=False)
    out = {}
    for rec in filter(None, res.stdout.split("\0")):
        meta, _, name = rec.partition("\t")
        out[f"{root}/{name}"] = meta.split()[2]
    return out


def _backend(ident: str) -> str:
    return ident.split("-", 1)[0] if not ident.startswith(("git:", "link:")) else "git"


def file_status(a: str | None, b: str | None) -> str:
    if a is None:
        return "only-in-B"
    if b is None:
        return "only-in-A"
    if a == b:
        return "identical"
    if _backend(a) != _backend(b) and "git" not in (_backend(a), _backend(b)):
        return "undecidable"
    return "differs"


@dataclass
class Comparison:
    files: dict[str, str]                       # path -> status
    units: dict[str, str]                       # unit (job folder) -> status
    summary: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return all(s == "identical" for s in self.files.values())

    def file_statuses(self) -> dict[str, str]:
        return self.files

    def problems(self) -> Iterator[tuple[str, str]]:
        return ((p, s) for p, s in sorted(self.files.items()) if s != "identical")

    def to_json(self) -> dict:
        return {"summary": self.summary, "units": dict(sorted(self.units.items())),
                "files": dict(sorted(self.files.items()))}


def _unit(path: str, depth: int) -> str:
    """The job folder of a path: ``results/<job>`` for depth 1."""
    return "/".join(path.split("/")[:1 + depth])


def compare(a: dict[str, str], b: dict[str, str], unit_depth: int = 1) -> Comparison:
    """Pure: statuses per file and per unit, plus counts."""
    files = {p: file_status(a.get(p), b.get(p)) for p in a.keys() | b.keys()}
    per_unit: dict[str, set[str]] = {}
    for p, s in files.items():
        per_unit.setdefault(_unit(p, unit_depth), set()).add(s)
    units = {}
    for u, statuses in per_unit.items():
        if statuses == {"identical"}:
            units[u] = "identical"
        elif statuses == {"only-in-A"}:
            units[u] = "only-in-A"
        elif statuses == {"only-in-B"}:
            units[u] = "only-in-B"
        else:
            units[u] = "differs"
    fc, uc = Counter(files.values()), Counter(units.values())
    summary = {"files": {s: fc.get(s, 0) for s in STATUSES},
               "units": {s: uc.get(s, 0) for s in STATUSES if s != "undecidable"}}
    return Comparison(files, units, summary)


def compare_sides(a: str, b: str, root: str = "results") -> Comparison:
    """Compare two computations reading as little as possible.

    Job folders whose tree objects are equal are identical without looking
    inside; in the others, files with equal blob objects are identical, and
    only the remaining annex symlinks are read to tell keys apart.
    """
    try:
        sa, sb = resolve_side(a), resolve_side(b)
    except ValueError as exc:
        raise FairbigError(str(exc)) from exc
    ua, ub = _units(sa, root), _units(sb, root)
    same = {u for u, sha in ua.items() if ub.get(u) == sha}
    rest = (ua.keys() | ub.keys()) - same
    whole = len(rest) > 1000  # pathspecs beyond that cost more than one full listing
    la = _listing(sa, [root] if whole else sorted(rest)) if rest else {}
    lb = _listing(sb, [root] if whole else sorted(rest)) if rest else {}
    la = {p: v for p, v in la.items() if _unit(p, 1) in rest or not whole}
    lb = {p: v for p, v in lb.items() if _unit(p, 1) in rest or not whole}
    differing = {p for p in la.keys() & lb.keys() if la[p] != lb[p]}
    ia = identities(sa, {p: la[p] for p in differing})
    ib = identities(sb, {p: lb[p] for p in differing})
    ia.update({p: f"same:{v[1]}" for p, v in la.items() if p not in differing})
    ib.update({p: f"same:{v[1]}" for p, v in lb.items() if p not in differing})
    comp = compare(ia, ib)
    if same:
        counts = _file_counts(sa, root, same)
        comp.units.update(dict.fromkeys(same, "identical"))
        comp.summary["units"]["identical"] += len(same)
        comp.summary["files"]["identical"] += sum(counts.values())
    return comp


def _file_counts(side: Side, root: str, units: set[str]) -> dict[str, int]:
    out = git(side.git_dir, "ls-tree", "-r", "-z", "--name-only", "--full-tree", side.ref,
              "--", root).stdout
    counts = Counter(_unit(p, 1) for p in out.split("\0") if p)
    return {u: counts[u] for u in units}
