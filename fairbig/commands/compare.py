"""``fairbig compare``: two computations of one plan, from git trees and annex keys.

No content is fetched (or decrypted): an annexed file is named by its key,
and for a hashing backend the key *is* a checksum of the content. Keys of
different backends (MD5E vs SHA256E) of the same size cannot be compared
without content, so such files are reported as undecidable, not guessed.

Git objects are content-addressed too, which :func:`compare_trees` uses to
read as little as possible: ``git diff-tree`` skips every job folder (and
every file) whose object is the same on both sides, and only the annex
symlinks that differ are read to tell their keys apart. A comparison of
1.28 million files is then a handful of git calls, and its memory grows
with the differences, not with the files.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from .. import config as cfgmod
from ..annexkeys import key_fields, key_of_link
from ..errors import FairbigError
from ..gitcmd import DELETED, SYMLINK, cat_file, diff_tree, git, ls_tree, path_of, records, stream
from ..gittree import git_dir_of
from ..stores import RiaStore

IDENTICAL, DIFFERS, UNDECIDABLE = "identical", "differs", "undecidable"
ONLY_A, ONLY_B = "only-in-A", "only-in-B"
STATUSES = (IDENTICAL, DIFFERS, UNDECIDABLE, ONLY_A, ONLY_B)

DEFAULT_RESULTS = cfgmod.Config.results  # where a side has no fairbig.yaml


@dataclass(frozen=True)
class Side:
    """A repository (bare, or the ``.git`` of a work tree) and a commit in it."""

    git_dir: Path
    ref: str


# ---------------------------------------------------------------- sides


def resolve_side(spec: str) -> Side:
    """``PATH``, ``PATH@REF`` or ``ria+file:///store#<dataset id>[@REF]``.

    The ref defaults to ``main``, then ``HEAD``, and is resolved to a commit
    here, so that every later read sees the same tree even while jobs push.
    """
    location, ref = _ria_repo(spec) if spec.startswith("ria+") else _split_ref(spec)
    git_dir = _git_dir(location)
    return Side(git_dir, _commit(git_dir, ref))


def _split_ref(spec: str) -> tuple[Path, str]:
    """``PATH@REF``; a path that itself contains ``@`` and exists wins."""
    if "@" not in spec or Path(spec).exists():
        return Path(spec), ""
    path, _, ref = spec.rpartition("@")
    if not ref:
        raise ValueError(f"empty ref in '{spec}': write PATH@REF, e.g. {path}@main")
    return Path(path or "."), ref


def _ria_repo(spec: str) -> tuple[Path, str]:
    """The bare repository of ``ria+file:///store#<id or ~alias>[@REF]``."""
    url = urlparse(spec.removeprefix("ria+"))
    if url.scheme != "file":
        raise ValueError(f"'{spec}' is not a ria+file:// URL: compare reads stores on this"
                         " file system; give ria+file:///path#<dataset id>")
    dsid, _, ref = url.fragment.partition("@")
    if not dsid:
        raise ValueError(f"'{spec}' names no dataset: append #<dataset id> (the analysis"
                         " dataset's datalad.dataset.id)")
    store = RiaStore(f"ria+file://{unquote(url.path)}")
    if not store.root.is_dir():
        raise ValueError(f"RIA store {store.root} does not exist: give the path of an"
                         " existing store")
    repo = (store.root / "alias" / dsid[1:] if dsid.startswith("~")
            else store.dataset_dir(dsid))
    if not repo.exists():
        raise ValueError(f"no dataset '{dsid}' in RIA store {store.root} ({repo} does not"
                         " exist): check the dataset id (datalad.dataset.id)")
    return repo, ref


def _git_dir(path: Path) -> Path:
    if not path.exists():
        raise ValueError(f"{path} does not exist: give a git repository (bare or a work"
                         " tree), PATH@REF, or ria+file:///store#<dataset id>")
    candidate = git_dir_of(path) if (path / ".git").exists() else path
    res = git(candidate, "rev-parse", "--absolute-git-dir", check=False)
    if res.returncode != 0:
        raise ValueError(f"{path} is not a git repository: give a repository (bare or a"
                         " work tree) or a ria+file:// URL with #<dataset id>")
    return Path(res.stdout.strip())


def _commit(git_dir: Path, ref: str) -> str:
    for candidate in [ref] if ref else ["main", "HEAD"]:
        if candidate.startswith("-"):
            continue  # never an option to git; no ref name starts with '-'
        res = git(git_dir, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}",
                  check=False)
        if res.returncode == 0:
            return res.stdout.strip()
    if ref:
        raise ValueError(f"ref '{ref}' not found in {git_dir}: give an existing branch,"
                         " tag or commit")
    raise ValueError(f"{git_dir} has no commit on 'main' or HEAD: give PATH@REF with an"
                     " existing branch, tag or commit")


# ---------------------------------------------------------------- reading trees


def read_results(side: Side, root: str = DEFAULT_RESULTS) -> dict[str, str]:
    """Path -> content identity of every file below ``root``, in tree order.

    The identity is the annex key of an annex symlink, ``link:<blob>`` for
    any other symlink and ``git:<object>`` for everything else. One
    ``ls-tree`` and one ``cat-file --batch`` (for all symlinks) however
    many files there are.
    """
    return _identities(side.git_dir, _listing(side, root))


def _identities(git_dir: Path, entries: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    ident: dict[str, str] = {}
    links: list[str] = []
    shas: list[str] = []
    for path, mode, sha in entries:
        if mode == SYMLINK:
            links.append(path)
            shas.append(sha)
            ident[path] = ""  # placeholder, so that the dict keeps tree order
        else:
            ident[path] = "git:" + sha
    blobs = (o.data for o in cat_file(git_dir, shas))
    for path, sha, target in zip(links, shas, blobs, strict=True):
        ident[path] = key_of_link(path_of(target)) or "link:" + sha
    return ident


def _listing(side: Side, root: str) -> Iterator[tuple[str, str, str]]:
    """``(path, mode, object sha)`` of every file below ``root``, streamed."""
    return ((e.path, e.mode, e.sha) for e in ls_tree(side.git_dir, side.ref, root,
                                                     recursive=True))


def _count_files(side: Side, root: str) -> int:
    """Files below ``root``, counted on the raw stream (no per-file Python work)."""
    return sum(chunk.count(b"\0") for chunk in stream(side.git_dir, _names_args(side, root, "-r")))


def _names(side: Side, root: str) -> Iterator[str]:
    return map(path_of, records(side.git_dir, _names_args(side, root, "-r")))


def _top(side: Side, root: str) -> set[str]:
    """The entries right below ``root``: the job folders (units) of one side."""
    return set(map(path_of, records(side.git_dir, _names_args(side, f"{root}/"))))


def _names_args(side: Side, path: str, *options: str) -> list[str]:
    return ["--literal-pathspecs", "ls-tree", "-z", "--full-tree", "--name-only", *options,
            side.ref, "--", path]


# ---------------------------------------------------------------- comparing


def file_status(a: str, b: str) -> str:
    """Status of one path present on both sides with content identities ``a``, ``b``."""
    if a == b:
        return IDENTICAL
    annexed_a, annexed_b = _is_key(a), _is_key(b)
    if annexed_a and annexed_b:
        (backend_a, size_a), (backend_b, size_b) = key_fields(a), key_fields(b)
        if backend_a == backend_b or (size_a and size_b and size_a != size_b):
            return DIFFERS
        return UNDECIDABLE  # same size, different hash functions: only content can tell
    if annexed_a != annexed_b and "git:" in (a[:4], b[:4]):
        return UNDECIDABLE  # the same bytes may be annexed on one side, in git on the other
    return DIFFERS


def _is_key(ident: str) -> bool:
    return not ident.startswith(("git:", "link:"))


@dataclass(frozen=True)
class Comparison:
    """Statuses of two computations: every unit, and the files that are not identical.

    Identical files are only counted; :attr:`files` lists them on demand via
    ``paths_a`` (side A's paths), so a comparison of millions of identical
    files holds none of their paths.
    """

    units: dict[str, str]          # unit (job folder, e.g. results/1234567) -> status
    differences: dict[str, str]    # path -> status of each non-identical file, sorted
    identical_files: int
    paths_a: Callable[[], Iterable[str]] = field(repr=False, compare=False)

    @property
    def identical(self) -> bool:
        return not self.differences

    @property
    def summary(self) -> dict[str, dict[str, int]]:
        units = Counter(self.units.values())
        files = Counter(self.differences.values())
        files[IDENTICAL] = self.identical_files
        return {"units": {s: units[s] for s in STATUSES},
                "files": {s: files[s] for s in STATUSES}}

    def problems(self) -> Iterator[tuple[str, str]]:
        """``(path, status)`` of the files that are not identical, sorted by path."""
        return iter(self.differences.items())

    @property
    def files(self) -> dict[str, str]:
        """Every file's status, identical ones included, sorted by path."""
        out = dict.fromkeys(self.paths_a(), IDENTICAL)
        out.update(self.differences)
        return dict(sorted(out.items()))

    def to_json(self, all_files: bool = False) -> dict:
        """Summary, every unit, and the non-identical files (all of them with ``all_files``)."""
        return {"identical": self.identical, "summary": self.summary,
                "units": dict(self.units),
                "files": self.files if all_files else dict(self.differences)}


def compare(a: Mapping[str, str], b: Mapping[str, str], unit_depth: int = 1,
            root: str = DEFAULT_RESULTS) -> Comparison:
    """Compare two ``path -> identity`` maps (:func:`read_results`); pure.

    A unit is the first ``unit_depth`` components below ``root``
    (``results/<job>`` by default); a file directly below ``root`` is its
    own unit.
    """
    if unit_depth < 1:
        raise ValueError(f"unit_depth must be at least 1, not {unit_depth}")
    differences: dict[str, str] = {}
    for path, ident in a.items():
        other = b.get(path)
        if other is None:
            differences[path] = ONLY_A
        elif other != ident:
            differences[path] = file_status(ident, other)
    differences.update(dict.fromkeys(b.keys() - a.keys(), ONLY_B))
    unit_of = _unit_of(root, unit_depth)
    units = _unit_statuses(set(map(unit_of, a)), set(map(unit_of, b)), differences, unit_of)
    identical = len(a) - sum(1 for s in differences.values() if s != ONLY_B)
    return Comparison(units, dict(sorted(differences.items())), identical, a.keys)


def _unit_of(root: str, depth: int) -> Callable[[str], str]:
    keep = root.count("/") + 1 + depth

    def unit(path: str) -> str:
        return "/".join(path.split("/", keep)[:keep])
    return unit


def _unit_statuses(units_a: set[str], units_b: set[str], differences: Mapping[str, str],
                   unit_of: Callable[[str], str]) -> dict[str, str]:
    """A unit differs if any file in it does or exists on one side only."""
    flagged: dict[str, set[str]] = defaultdict(set)
    for path, status in differences.items():
        flagged[unit_of(path)].add(status)
    out = {}
    for unit in sorted(units_a | units_b):
        if unit not in units_b:
            out[unit] = ONLY_A
        elif unit not in units_a:
            out[unit] = ONLY_B
        elif unit not in flagged:
            out[unit] = IDENTICAL
        else:
            out[unit] = UNDECIDABLE if flagged[unit] == {UNDECIDABLE} else DIFFERS
    return out


def compare_sides(a: str, b: str) -> Comparison:
    """What ``fairbig compare A B`` runs: resolve both specs, then :func:`compare_trees`
    below the results folder their fairbig.yaml names."""
    try:
        sa, sb = resolve_side(a), resolve_side(b)
    except ValueError as exc:
        raise FairbigError(str(exc)) from exc
    roots = {results_dir(sa), results_dir(sb)}
    if len(roots) > 1:
        raise FairbigError(f"the two sides keep their results in different folders: "
                           f"{' and '.join(sorted(roots))} (fairbig.yaml 'results')",
                           "compare results of analyses that name the same folder")
    return compare_trees(sa, sb, roots.pop())


def results_dir(side: Side) -> str:
    """The results folder the side's committed fairbig.yaml names (the default where a
    side has none, a dataset fairbig did not make)."""
    text = git(side.git_dir, "cat-file", "blob", f"{side.ref}:{cfgmod.CONFIG_NAME}",
               check=False)
    return cfgmod.from_partial(text.stdout).results if text.returncode == 0 else DEFAULT_RESULTS


def compare_trees(sa: Side, sb: Side, root: str = DEFAULT_RESULTS) -> Comparison:
    """The result of ``compare(read_results(sa), read_results(sb))``, read frugally.

    Units are job folders (``results/<job>``, unit depth 1), as jobs write
    only there. ``git diff-tree`` walks both trees at once and skips every
    subtree whose object is equal on both sides, so only the files that
    differ ever reach Python; of those, only the symlinks are read (one
    ``cat-file`` per side) to tell annex keys apart. B's objects are read
    through ``GIT_ALTERNATE_OBJECT_DIRECTORIES``: nothing is written to A.
    """
    units_a, units_b = _top(sa, root), _top(sb, root)
    for side, units in ((sa, units_a), (sb, units_b)):
        if not units:
            raise FairbigError(f"no files below {root}/ in {side.git_dir} at {side.ref[:12]}",
                               "give the ref that holds the merged results (job branches"
                               " reach main with 'fairbig merge')")
    differences: dict[str, str] = {}
    pending: list[tuple[str, str, str, str, str]] = []
    for path, mode_a, mode_b, sha_a, sha_b in _changes(sa, sb, root):
        if mode_b == DELETED:
            differences[path] = ONLY_A
        elif mode_a == DELETED:
            differences[path] = ONLY_B
        elif sha_a != sha_b or (mode_a == SYMLINK) != (mode_b == SYMLINK):
            pending.append((path, mode_a, mode_b, sha_a, sha_b))
        # else: only the executable bit changed; same content
    ia = _identities(sa.git_dir, ((p, ma, a) for p, ma, _, a, _ in pending))
    ib = _identities(sb.git_dir, ((p, mb, b) for p, _, mb, _, b in pending))
    differences.update((p, s) for p in ia if (s := file_status(ia[p], ib[p])) != IDENTICAL)
    units = _unit_statuses(units_a, units_b, differences, _unit_of(root, 1))
    in_a = sum(1 for s in differences.values() if s != ONLY_B)
    return Comparison(units, dict(sorted(differences.items())), _count_files(sa, root) - in_a,
                      lambda: _names(sa, root))


def _changes(sa: Side, sb: Side, root: str) -> Iterator[tuple[str, str, str, str, str]]:
    """``(path, mode A, mode B, object A, object B)`` of each file that is not the same."""
    env = {}
    if sa.git_dir != sb.git_dir:
        env["GIT_ALTERNATE_OBJECT_DIRECTORIES"] = str(sb.git_dir / "objects")
    for d in diff_tree(sa.git_dir, sa.ref, sb.ref, "--", root, env=env):
        yield d.path, d.old_mode, d.new_mode, d.old_sha, d.new_sha
