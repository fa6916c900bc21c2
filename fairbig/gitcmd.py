"""The git layer: how fairbig runs git, and one parser per git output format.

Every question to git is ONE process for all branches, files or objects asked
about, never one per item: that, not a library binding, is what makes the
42,767-branch merge and the plan of 42k subjects take seconds. So the layer
keeps the git CLI plumbing and only makes it uniform:

- :func:`git` runs one command to completion (through :func:`fairbig.proc.run`);
  :func:`stream` yields a command's stdout as it arrives, for listings too large
  to hold. ``stream`` uses datasalad's ``iter_subproc``, which feeds stdin and
  drains stderr from threads, so no pipe can fill up while this side reads
  (the deadlock of a hand-rolled ``Popen``).
- Readers ask for NUL-terminated output (``-z``, ``%00``), so git never quotes
  a path, and decode paths with ``surrogateescape``: a name that is not UTF-8
  survives the round trip back into git.
- The parsers (:func:`parse_ls_tree`, :func:`parse_cat_file`,
  :func:`parse_diff_tree`, :func:`parse_for_each_ref`)
  are pure functions of git's bytes, so ``make unit`` tests them without a
  repository.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from datasalad.itertools import itemize
from datasalad.runners import CommandError as _SubprocError
from datasalad.runners import iter_subproc

from .errors import CommandError, FairbigError
from .proc import run

SYMLINK = "120000"
GITLINK = "160000"
TREE = "040000"
DELETED = "000000"   # diff-tree's mode of a path absent on that side
MISSING = ("missing", "ambiguous")   # cat-file's "type" of an object it cannot name
CHUNK = 1 << 20


class GitError(CommandError):
    """A git command failed; carries what ran, its exit code and its stderr."""


def _cmd(git_dir: Path | str, args: Sequence[str]) -> list[str]:
    return ["git", f"--git-dir={os.fspath(git_dir)}", *args]


def git(git_dir: Path | str, *args: str, input: str | bytes | None = None,
        check: bool = True, text: bool = True, env: Mapping[str, str] | None = None,
        hint: str = "") -> subprocess.CompletedProcess:
    """Run git against a repository directory (bare or the ``.git`` of a work tree)."""
    return run(_cmd(git_dir, args), input=input, env=env, check=check, text=text,
               hint=hint, error=GitError)


def many_objects_env() -> dict[str, str]:
    """Environment for a git process that writes tens of thousands of objects: glibc's
    malloc keeps up to 32 MB it freed instead of handing the heap back after each
    object's zlib stream (``fast-import`` of 47k objects: 187,000 ``brk`` calls, 2.2 s
    of system time in 4.3 s; 1.2 s in all so)."""
    tunable = "glibc.malloc.trim_threshold=33554432"
    given = os.environ.get("GLIBC_TUNABLES")
    return {"GLIBC_TUNABLES": f"{given}:{tunable}" if given else tunable}


def stream(git_dir: Path | str, args: Sequence[str], input: bytes = b"",
           env: Mapping[str, str] | None = None, hint: str = "") -> Iterator[bytes]:
    """Stdout of one git process in chunks as they arrive; GitError if it fails.

    Closing the iterator early stops git. The failure is raised once the
    output is read to its end (git's exit code is known only then).
    """
    cmd = _cmd(git_dir, args)
    try:
        with iter_subproc(cmd, inputs=[input] if input else None, chunk_size=CHUNK,
                          env={**os.environ, **env} if env else None) as chunks:
            yield from chunks
    except _SubprocError as exc:
        stderr = exc.stderr if isinstance(exc.stderr, str) else \
            (exc.stderr or b"").decode(errors="replace")
        raise GitError(cmd, exc.returncode, stderr, hint) from None


def records(git_dir: Path | str, args: Sequence[str], input: bytes = b"",
            env: Mapping[str, str] | None = None) -> Iterator[bytes]:
    """The NUL-terminated records of a ``-z`` command's output, streamed."""
    return (r for r in itemize(stream(git_dir, args, input, env), b"\0") if r)


def path_of(raw: bytes) -> str:
    """A path as git wrote it; bytes that are not UTF-8 survive as surrogates."""
    return raw.decode("utf-8", "surrogateescape")


# ---------------------------------------------------------------- ls-tree


class Entry(NamedTuple):
    """One entry of a tree: ``ls-tree`` line or tree object record."""

    mode: str   # six digits, e.g. 100644, 120000 (symlink), 160000 (gitlink), 040000
    type: str   # blob, tree or commit (a gitlink)
    sha: str
    path: str

    def record(self) -> str:
        """The entry as an :func:`ls_tree_batches` record, for readers of those records
        that are fed from elsewhere too."""
        return f"{self.mode} {self.type} {self.sha}\t{self.path}"


def parse_ls_tree(recs: Iterable[bytes]) -> Iterator[Entry]:
    """Entries of ``ls-tree -z`` output split at NUL: ``<mode> SP <type> SP <sha> TAB <path>``."""
    for rec in recs:
        if not rec:
            continue
        meta, _, path = rec.partition(b"\t")
        mode, typ, sha = meta.decode().split(" ")
        yield Entry(mode, typ, sha, path_of(path))


def _ls_tree_args(treeish: str, paths: Sequence[str], recursive: bool,
                  trees: bool) -> list[str]:
    return ["--literal-pathspecs", "ls-tree", "-z", "--full-tree",
            *(["-r"] if recursive else []), *(["-t"] if trees else []), treeish,
            *(["--", *paths] if paths else [])]


def ls_tree(git_dir: Path | str, treeish: str, *paths: str, recursive: bool = False,
            trees: bool = False) -> Iterator[Entry]:
    """Entries of ``treeish`` (below ``paths``, if given), streamed from one process;
    ``trees`` lists the folders of a recursive listing too (``-t``)."""
    return parse_ls_tree(records(git_dir, _ls_tree_args(treeish, paths, recursive, trees)))


def ls_tree_names(git_dir: Path | str, treeish: str, *paths: str) -> Iterator[str]:
    """The paths alone of :func:`ls_tree` (not recursive): git parses the tree, and 43k
    names decode in a tenth of the time whole entries take."""
    args = _ls_tree_args(treeish, paths, False, False)
    args.insert(args.index("--full-tree"), "--name-only")
    return (path_of(r) for r in records(git_dir, args))


def ls_tree_batches(git_dir: Path | str, treeish: str, recursive: bool = False,
                    trees: bool = False) -> Iterator[list[str]]:
    """The raw ``ls-tree -z`` records (``<mode> SP <type> SP <sha> TAB <path>``) of
    ``treeish``, a list per chunk of output as it arrives. For whole-dataset listings
    (600k records for a plan of 85k BIDS jobs) whose reader groups records by path:
    a chunk is decoded and split in two C calls, and no :class:`Entry` is made."""
    return split_batches(stream(git_dir, _ls_tree_args(treeish, (), recursive, trees)))


def split_batches(chunks: Iterable[bytes]) -> Iterator[list[str]]:
    """NUL-terminated records from chunks cut anywhere, a list per chunk, decoded as
    :func:`path_of` decodes a path (empty records dropped)."""
    rest = b""
    for chunk in chunks:
        buf = rest + chunk
        cut = buf.rfind(b"\0") + 1
        rest = buf[cut:]
        if done := list(filter(None, path_of(buf[:cut]).split("\0"))):
            yield done
    if rest:
        yield [path_of(rest)]


# ---------------------------------------------------------------- cat-file --batch(-check)


class GitObject(NamedTuple):
    """One answer of ``cat-file --batch``; ``type`` in :data:`MISSING` if git has none."""

    name: str   # the object id, or the name as asked if it is missing
    type: str
    size: int
    data: bytes = b""   # empty under --batch-check


def parse_cat_file(chunks: Iterable[bytes], contents: bool = True) -> Iterator[GitObject]:
    """Objects of ``cat-file --batch`` (``--batch-check`` if not ``contents``) output,
    in order, from chunks cut anywhere.

    ``--batch``: ``<oid> SP <type> SP <size> LF <contents> LF``, or ``<name> SP
    missing LF`` (also ``ambiguous``); ``--batch-check`` has the header lines only.
    """
    buf, pos = b"", 0
    for chunk in chunks:
        buf, pos = buf[pos:] + chunk, 0
        while (nl := buf.find(b"\n", pos)) >= 0:
            oid, _, rest = buf[pos:nl].partition(b" ")
            typ, _, size = rest.rpartition(b" ")
            if not size.isdigit():  # "<name> missing": the name may hold spaces
                name, _, typ = buf[pos:nl].rpartition(b" ")
                yield GitObject(path_of(name), typ.decode(), 0)
                pos = nl + 1
            elif not contents:
                yield GitObject(oid.decode(), typ.decode(), int(size))
                pos = nl + 1
            else:
                end = nl + 1 + int(size)
                if end >= len(buf):
                    break  # the rest of this object (and its LF) is in the next chunk
                yield GitObject(oid.decode(), typ.decode(), int(size), buf[nl + 1:end])
                pos = end + 1
    if buf[pos:]:
        raise ValueError(f"cat-file output ends inside an object: {buf[pos:pos + 60]!r}")


def _batch(git_dir: Path | str, names: Sequence[str], option: str) -> Iterator[GitObject]:
    if not names:
        return iter(())
    feed = "".join(f"{n}\n" for n in names).encode("utf-8", "surrogateescape")
    return parse_cat_file(stream(git_dir, ["cat-file", option, "--buffer"], feed),
                          contents=option == "--batch")


def cat_file(git_dir: Path | str, names: Sequence[str]) -> Iterator[GitObject]:
    """Contents of many objects, in order, from one streamed ``cat-file --batch``.

    A missing object is a user-facing error: the repository is incomplete.
    """
    for obj in _batch(git_dir, names, "--batch"):
        if obj.type in MISSING:
            raise FairbigError(f"object {obj.name} is {obj.type} in {git_dir}",
                               "the repository is incomplete: fetch or repair it, then"
                               " run the command again")
        yield obj


def missing_objects(git_dir: Path | str, names: Sequence[str]) -> list[str]:
    """Those of ``names`` the repository lacks, from one ``cat-file --batch-check``."""
    return [o.name for o in _batch(git_dir, names, "--batch-check") if o.type in MISSING]


# ---------------------------------------------------------------- diff-tree


class DiffEntry(NamedTuple):
    """One changed path of ``diff-tree -z`` raw output (mode :data:`DELETED`: absent)."""

    commit: str     # the commit heading the block under --stdin; "" without --stdin
    path: str
    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str
    status: str     # A, D, M, T (R and C only with rename detection)


def parse_diff_tree(recs: Iterable[bytes]) -> Iterator[DiffEntry]:
    """Changes of ``diff-tree -r -z`` output split at NUL.

    Each change is ``:<old mode> SP <new mode> SP <old sha> SP <new sha> SP <status>``
    then its path (two paths, source first, for a rename or copy); under ``--stdin``
    each block starts with the commit it diffs alone in a record.
    """
    it = iter(recs)
    commit = ""
    for rec in it:
        if rec.startswith(b":"):
            old_mode, new_mode, old_sha, new_sha, status = rec[1:].decode().split(" ")
            path = next(it)
            if status[:1] in ("R", "C"):
                path = next(it)
            yield DiffEntry(commit, path_of(path), old_mode, new_mode, old_sha, new_sha,
                            status)
        elif rec:
            commit = rec.decode()


def diff_tree(git_dir: Path | str, *args: str, input: bytes = b"",
              env: Mapping[str, str] | None = None) -> Iterator[DiffEntry]:
    """Changes from one streamed ``diff-tree -r -z --no-renames`` (``args``: what to
    compare, pathspecs after ``--``, or ``--stdin`` with ``input``)."""
    cmd = ["--literal-pathspecs", "diff-tree", "-r", "-z", "--no-renames", *args]
    return parse_diff_tree(records(git_dir, cmd, input, env))


# ---------------------------------------------------------------- for-each-ref


def parse_for_each_ref(out: bytes, n: int) -> Iterator[tuple[str, ...]]:
    """Rows of ``for-each-ref --format=%(f1)%00…%(fn)%00`` output: ``n`` fields each.

    Every row ends in NUL LF, so a field may hold spaces, tabs or a newline.
    """
    for row in out.split(b"\0\n"):
        if row:
            fields = tuple(path_of(f) for f in row.split(b"\0"))
            if len(fields) != n:
                raise ValueError(f"for-each-ref row with {len(fields)} fields, not {n}: "
                                 f"{row[:80]!r}")
            yield fields


def for_each_ref(git_dir: Path | str, fields: Sequence[str],
                 *args: str) -> list[tuple[str, ...]]:
    """``fields`` (``refname``, ``objectname``, ``contents:subject``, …) of every ref
    matching ``args`` (patterns and options such as ``--merged=X``), from one process."""
    fmt = "".join(f"%({f})%00" for f in fields)
    out = git(git_dir, "for-each-ref", f"--format={fmt}", *args, text=False).stdout
    return list(parse_for_each_ref(out, len(fields)))


# ---------------------------------------------------------------- git's own files


@contextmanager
def git_lock(path: Path) -> Iterator[Path]:
    """Change one of git's files as git does: ``<path>.lock``, created exclusively
    (FileExistsError while another process holds it), is what the block writes, and is
    renamed over ``path`` when the block ends, or removed if it raises."""
    lock = path.with_name(path.name + ".lock")
    os.close(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield lock
        os.replace(lock, path)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise


PACKED_REFS_HEADER = b"# pack-refs with:"


def delete_refs(git_dir: Path | str, refs: Mapping[str, str]) -> None:
    """Delete ``refs`` (name -> the sha each must still point at) of a bare repository.

    ``update-ref --stdin`` (and ``pack-refs``) create a lock file per ref: 1,000 new
    files, 0.5-0.6 s on this machine's ext4 (a metadata operation each on a cluster file
    system too), where the rest of a merge of 1,000 jobs takes 2 s. A loose ref whose file
    holds the expected sha is deleted as a file instead; a packed one leaves
    ``packed-refs`` in one rewrite under git's own lock on that file
    (``packed-refs.lock``, taken exclusively, renamed over it), before any loose file
    goes (so that no stale packed value shows meanwhile). The caller holds the lock every
    writer of these refs takes (fairbig's push lock), which is what git's lock per ref
    is for. A ref that is not as expected, has a reflog (which git deletes with it), or
    any ref at all if ``packed-refs`` is locked or not the format this reads, is left to
    ``update-ref``, which refuses a ref that moved.
    """
    root = Path(git_dir)
    loose, packed_only = _as_expected(root, refs)
    done = _drop_packed(root / "packed-refs", loose, packed_only)
    for ref in done & loose:
        (root / ref).unlink()
    left = {ref: sha for ref, sha in refs.items() if ref not in done}
    if left:
        git(git_dir, "update-ref", "--stdin",
            input="".join(f"delete {ref} {sha}\n" for ref, sha in left.items()))


def _as_expected(root: Path, refs: Mapping[str, str]) -> tuple[set[str], dict[str, str]]:
    """Of ``refs`` (name -> expected sha) without a reflog: those whose loose file holds
    the expected sha, and those with no loose file (name -> sha)."""
    loose, packed_only = set(), {}
    for ref, sha in refs.items():
        if (root / "logs" / ref).exists():
            continue
        try:
            if (root / ref).read_bytes() == f"{sha}\n".encode():
                loose.add(ref)
        except FileNotFoundError:
            packed_only[ref] = sha
        except OSError:
            continue
    return loose, packed_only


def pack_refs(git_dir: Path | str, refs: Mapping[str, str]) -> None:
    """Move branches ``refs`` (name -> the sha its loose file must hold; a branch has no
    peeled value to add) of a bare repository into
    ``packed-refs``, as ``git pack-refs`` would, without its lock file per ref (see
    :func:`delete_refs`); the caller holds the lock every writer of these refs takes.

    No ref changes its value at any moment: ``packed-refs`` gets them in one rewrite
    (:func:`_rewrite_packed`), and only then do their loose files go. Refs with a reflog
    or not as expected, or all of them if ``packed-refs`` is locked or not the format
    this reads, stay loose."""
    root = Path(git_dir)
    loose, _ = _as_expected(root, refs)

    def add(entries: dict[bytes, bytes]) -> None:
        for ref in loose:
            name = ref.encode("utf-8", "surrogateescape")
            entries[name] = b"%s %s\n" % (refs[ref].encode(), name)

    if loose and _rewrite_packed(root / "packed-refs", add):
        for ref in loose:
            (root / ref).unlink()


def _packed_entries(text: bytes) -> tuple[bytes, dict[bytes, bytes]] | None:
    """Header and entries of ``packed-refs`` text, each ref name with its line (and a
    tag's peeled line after it), as git writes them (an empty text: none yet); None
    if ``text`` is not that format."""
    if not text:
        return PACKED_REFS_HEADER + b" peeled fully-peeled sorted \n", {}
    header, *body = text.splitlines(keepends=True)
    if not header.startswith(PACKED_REFS_HEADER):
        return None
    entries: dict[bytes, bytes] = {}
    name = b""
    for line in body:
        line = line if line.endswith(b"\n") else line + b"\n"
        if line.startswith(b"^"):   # a tag's peeled value: it follows its tag
            entries[name] += line
            continue
        name = line.rstrip(b"\n").partition(b" ")[2]
        entries[name] = line
    return header, entries


def _rewrite_packed(packed: Path, change: Callable[[dict[bytes, bytes]], None]) -> bool:
    """Rewrite ``packed-refs`` as git does: read under git's own lock on it
    (``packed-refs.lock``, :func:`git_lock`), its entries changed in place by ``change``,
    written sorted by name, synced, renamed over it. False, and the file as it was, if
    another writer holds the lock or the file is not the format this reads."""
    try:
        with git_lock(packed) as lock, lock.open("wb") as out:
            text = packed.read_bytes() if packed.exists() else b""
            parsed = _packed_entries(text)
            if parsed is not None:
                header, entries = parsed
                change(entries)
                text = header + b"".join(entries[n] for n in sorted(entries))
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
    except FileExistsError:
        return False
    return parsed is not None


def _drop_packed(packed: Path, loose: set[str], packed_only: Mapping[str, str]) -> set[str]:
    """Take ``loose`` (at any packed value: their loose file is what they are) and
    ``packed_only`` (at the expected sha) out of ``packed-refs``; the refs now gone from it,
    or never in it (a ``packed_only`` one that is not: none, for update-ref to refuse).
    A first look without the lock spares the rewrite when none of them is packed."""

    def gone(entries: dict[bytes, bytes]) -> list[bytes]:
        return [name for name, line in entries.items() if path_of(name) in loose
                or packed_only.get(path_of(name)) == line.partition(b" ")[0].decode()]

    parsed = _packed_entries(packed.read_bytes() if packed.exists() else b"")
    if parsed is None:
        return set()
    if not gone(parsed[1]):
        return set(loose)
    found: set[str] = set()

    def drop(entries: dict[bytes, bytes]) -> None:
        for name in gone(entries):
            found.add(path_of(name))
            del entries[name]

    return set(loose) | found if _rewrite_packed(packed, drop) else set()
