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
    out = git(side.git_dir, "ls-tree", "-r", "-z", "--full-tree", side.ref, "--", root).stdout
    ident: dict[str, str] = {}
    links: list[tuple[str, str]] = []
    for rec in filter(None, out.split("\0")):
        meta, _, path = rec.partition("\t")
        mode, _, sha = meta.split()
        if mode == SYMLINK:
            links.append((path, sha))
        else:
            ident[path] = f"git:{sha}"
    for (path, sha), target in zip(links, blob_texts(side.git_dir, [s for _, s in links]),
                                   strict=True):
        ident[path] = os.path.basename(target) if looks_like_key(target) else f"link:{sha}"
    return ident


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
    parts = path.split("/")
    return "/".join(parts[1:1 + depth]) if len(parts) > depth else parts[0]


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


def compare_sides(a: str, b: str) -> Comparison:
    try:
        sa, sb = resolve_side(a), resolve_side(b)
    except ValueError as exc:
        raise FairbigError(str(exc)) from exc
    return compare(read_results(sa), read_results(sb))
