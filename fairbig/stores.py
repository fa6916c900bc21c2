"""RIA stores: where a dataset lives inside one, and how the output store is encrypted."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from .contract import STORAGE_SUFFIX
from .errors import FairbigError
from .proc import run

LOCAL_SCHEME = "ria+file://"
LOCK_NAME = "fairbig-push.lock"
MERGE_LOCK_NAME = "fairbig-merge.lock"


@dataclass(frozen=True)
class RiaStore:
    """A RIA store reachable on this machine's file system (``ria+file://``)."""

    url: str

    @property
    def root(self) -> Path:
        root = local_root(self.url)
        if root is None:
            raise FairbigError(f"store '{self.url}' is not on this file system",
                               f"fairbig reads stores directly: use a {LOCAL_SCHEME}/path URL"
                               " on a shared file system")
        return root

    def dataset_dir(self, dsid: str) -> Path:
        return self.root / dsid[:3] / dsid[3:]

    def clone_url(self, dsid: str) -> str:
        return f"{self.url}#{dsid}"

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def merge_lock_file(self) -> Path:
        return self.root / MERGE_LOCK_NAME

    def is_store(self) -> bool:
        return (self.root / "ria-layout-version").exists()

    def require_writable(self, what: str, existing: bool = True) -> None:
        """Refuse in one line before a writing operation starts; reading (status,
        ``merge --dry-run``, ``verify``) needs no write access, so this is not part of
        looking a store up."""
        root = self.root
        if existing and not root.is_dir():
            raise FairbigError(f"{what} store {root} is not there (moved, or its file "
                               "system is not mounted on this machine)",
                               f"mount it, or point stores.{what} in fairbig.yaml at it")
        probe = next(p for p in [root, *root.parents] if p.exists())
        if not os.access(probe, os.W_OK):
            raise FairbigError(f"{what} store {root} is not writable ({probe} is read-only "
                               "for you)", "choose a writable location, or ask its owner for "
                               "write access; reading commands (status, merge --dry-run, "
                               "verify) work without it")


@contextmanager
def exclusive(lock: Path, busy: str, hint: str) -> Iterator[None]:
    """Hold ``lock`` (flock, the same lock ``flock(1)`` takes in job scripts) or refuse
    at once with ``busy``, naming the holder: waiting behind a merge that then merges
    everything would only end in "nothing to do"."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
            raise FairbigError(f"{busy}{f' ({holder})' if holder else ''}", hint) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def waiting_for(lock: Path) -> Iterator[None]:
    """Hold ``lock`` as long as it takes: the push lock jobs hold for one branch push."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def local_root(url: str) -> Path | None:
    """The directory of a ``ria+file:///path`` store; None for any other URL. fairbig
    reads, locks and writes its stores directly (and so do the jobs), so ``ria+ssh``
    and ``ria+http`` stores, which datalad itself could clone from, are not usable."""
    if not url.startswith(LOCAL_SCHEME):
        return None
    parsed = urlparse(url.removeprefix("ria+"))
    if parsed.netloc not in ("", "localhost"):  # ria+file://dir/x would mean /x
        return None
    return Path(parsed.path) if parsed.path.startswith("/") else None


def parse_store(url: str, what: str, writable: bool = True) -> RiaStore:
    """Validate a store URL given by a user (``ria+file:///path`` or a plain path);
    ``writable``: it is about to be created or written to."""
    if not url.startswith("ria+"):
        if url.startswith("/"):
            url = f"ria+file://{url}"
        else:
            raise FairbigError(f"{what} store '{url}' is not a RIA URL",
                               "give ria+file:///absolute/path or an absolute path")
    store = RiaStore(url.rstrip("/"))
    root = store.root
    if root.exists():
        if not root.is_dir():
            raise FairbigError(f"{what} store {root} exists and is not a directory",
                               "choose another path")
        if any(root.iterdir()) and not store.is_store():
            raise FairbigError(f"{what} store {root} is a non-empty directory but not a RIA store",
                               "choose an empty or new path, or an existing RIA store")
    if writable:
        store.require_writable(what, existing=False)  # set-up creates it
    return store


class Rollback:
    """Remembers what a multi-step set-up created so a failure removes all of it."""

    def __init__(self) -> None:
        self._paths: list[Path] = []

    def created(self, path: Path) -> None:
        self._paths.append(path)

    def undo(self) -> None:
        for path in reversed(self._paths):
            if path.is_symlink() or path.is_file():
                path.unlink(missing_ok=True)
            elif path.exists():
                # annex objects are read-only; make them removable first
                run(["chmod", "-R", "u+w", str(path)], check=False)
                shutil.rmtree(path, ignore_errors=True)

    def track_store(self, store: RiaStore, dsid: str) -> None:
        """Track whatever a sibling creation is about to add to ``store``."""
        if not store.root.exists():
            self.created(store.root)
            return
        self.created(store.dataset_dir(dsid))


def add_encrypted_storage(ds_path: Path, sibling: str, store: RiaStore,
                          keys: list[str]) -> None:
    """Create the ORA storage remote with ``sharedpubkey`` encryption.

    ``datalad create-sibling-ria`` can only make unencrypted storage, and
    encryption cannot be added to a special remote later, hence by hand.
    """
    name = sibling + STORAGE_SUFFIX
    keyargs = [f"keyid={keys[0]}", *[f"keyid+={k}" for k in keys[1:]]]
    run(["git", "annex", "initremote", name, "type=external", "externaltype=ora",
         "encryption=sharedpubkey", *keyargs, "autoenable=true", f"url={store.url}"],
        cwd=ds_path, hint="check that the lab key is in your keyring and can encrypt")
    run(["git", "config", f"remote.{sibling}.datalad-publish-depends", name], cwd=ds_path)
