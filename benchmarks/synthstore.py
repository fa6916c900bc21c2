"""A synthetic output store: a base commit and N job branches, written in seconds.

Shaped like a FAIRly big output store after the jobs ran: a bare repository
whose ``main`` holds a small dataset and ``refs/heads/job-<7-digit id>``
branches, each one commit on top of ``main`` adding three files under
``results/<id>/``, one of them an annexed file (a symlink into
``.git/annex/objects``). Everything goes through ONE ``git fast-import``
stream: one process, one pack (``loose``: unpacked, as real job pushes
leave objects), loose refs as pushes leave them; 42,767 branches in a few
seconds instead of minutes of ``git commit``.

The annex symlinks only have the shape of git-annex's: their ``xx/yy``
directories are not git-annex's hash directories and no content exists.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BRANCH = "main"
FIRST_ID = 1_000_000
EPOCH = 1_700_000_000


@dataclass(frozen=True)
class SynthStore:
    git_dir: Path
    base: str             # sha of main: the commit every job branch forks from
    job_ids: list[str]    # branch of job J: refs/heads/job-J


def job_ids(n_branches: int) -> list[str]:
    return [f"{FIRST_ID + i:07d}" for i in range(n_branches)]


def _file(mode: str, path: str, content: bytes) -> bytes:
    return b"M %s inline %s\ndata %d\n%s\n" % (mode.encode(), path.encode(), len(content),
                                               content)


def _commit(ref: str, when: int, message: str, mark: bytes = b"") -> bytes:
    msg = message.encode()
    return (b"commit %s\n%scommitter Synth <synth@example.org> %d +0000\ndata %d\n%s\n"
            % (ref.encode(), mark, when, len(msg), msg))


def annex_link(job_id: str) -> str:
    """A git-annex-style symlink target from ``results/<id>/`` (two levels deep)."""
    md5 = hashlib.md5(job_id.encode()).hexdigest()
    key = f"MD5E-s1--{md5}.txt"
    return f"../../.git/annex/objects/{md5[:2]}/{md5[2:4]}/{key}/{key}"


def _stream(ids: list[str], base_files: int, files_per_branch: int,
            input_state: str) -> Iterator[bytes]:
    yield _commit(f"refs/heads/{BRANCH}", EPOCH, "synthetic base", b"mark :1\n")
    for i in range(base_files):
        yield _file("100644", f"code/part{i % 10}/file{i:04d}.txt", b"base file %d" % i)
    for n, jid in enumerate(ids):
        yield _commit(f"refs/heads/job-{jid}", EPOCH + 3600 + n,
                      f"fairbig job {jid} (input {input_state})")
        yield b"from :1\n"
        yield _file("120000", f"results/{jid}/output.txt", annex_link(jid).encode())
        for k in range(1, files_per_branch):
            yield _file("100644", f"results/{jid}/log{k}.txt", b"job %s file %d\n" % (
                jid.encode(), k))
    yield b"done\n"


def make_store(path: Path, n_branches: int, base_files: int = 100,
               files_per_branch: int = 3, input_state: str = "0" * 40,
               loose: bool = False) -> SynthStore:
    """Create a bare store at ``path`` (must not exist) with ``n_branches`` job branches.

    ``input_state`` goes into each job's commit message the way fairbig's job
    script writes it (``fairbig job <id> (input <state>)``). ``loose``: store
    every object as a loose file, as real job pushes leave them (git unpacks
    pushes of fewer than ``receive.unpackLimit`` = 100 objects); costs about
    30 s for 42,767 branches.
    """
    path = Path(path)
    subprocess.run(["git", "init", "-q", "--bare", f"--initial-branch={BRANCH}", str(path)],
                   check=True)
    ids = job_ids(n_branches)
    proc = subprocess.Popen(["git", f"--git-dir={path}", "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    buf: list[bytes] = []
    for piece in _stream(ids, base_files, files_per_branch, input_state):
        buf.append(piece)
        if len(buf) >= 4096:
            proc.stdin.write(b"".join(buf))
            buf.clear()
    proc.stdin.write(b"".join(buf))
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed with exit code {proc.returncode}")
    if loose:
        _unpack(path)
    base = subprocess.run(["git", f"--git-dir={path}", "rev-parse", f"refs/heads/{BRANCH}"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return SynthStore(path, base, ids)


def _unpack(git_dir: Path) -> None:
    """Turn the packs into loose objects (``unpack-objects`` skips objects already packed)."""
    for pack in (git_dir / "objects" / "pack").glob("*.pack"):
        with tempfile.TemporaryFile() as data:
            with pack.open("rb") as src:
                shutil.copyfileobj(src, data)
            data.seek(0)
            for f in pack.parent.glob(f"{pack.stem}.*"):
                f.unlink()
            subprocess.run(["git", f"--git-dir={git_dir}", "unpack-objects", "-q"], stdin=data,
                           check=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path, help="where to create the bare store (must not exist)")
    parser.add_argument("n", type=int, help="number of job branches")
    parser.add_argument("--base-files", type=int, default=100)
    parser.add_argument("--files-per-branch", type=int, default=3)
    parser.add_argument("--loose", action="store_true",
                        help="loose objects, like real job pushes (slower)")
    args = parser.parse_args(argv)
    if args.dir.exists():
        sys.exit(f"{args.dir} exists; give a new directory")
    start = time.monotonic()
    store = make_store(args.dir, args.n, args.base_files, args.files_per_branch,
                       loose=args.loose)
    print(f"{store.git_dir}: base {store.base}, {len(store.job_ids)} job branches "
          f"in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
