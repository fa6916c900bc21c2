"""The real single-machine HTCondor pool for tests (scripts/condor-up).

Plain helpers, no fixtures: ``condor_available()`` says whether this machine
can run the pool at all (cheap: nothing is started); ``ensure_condor()``
starts it if needed (the first call may build the chroot, about a minute)
and returns the environment a client needs, ``{"CONDOR_CONFIG": path}``.

The daemons and every job run in the pool's own root (a Debian trixie
chroot). Paths a job uses must exist there: ``/tmp`` and ``/var/tmp`` are
shared with the host, and so are the paths in ``pool_paths()`` (read-only).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
CONDOR_UP = SCRIPTS / "condor-up"
CONDOR_EXEC = SCRIPTS / "condor-exec"
CONDOR_DOWN = SCRIPTS / "condor-down"


class CondorPoolError(RuntimeError):
    """scripts/condor-up failed; the message carries its stderr."""


def condor_available() -> bool:
    """True if this machine can run the test pool and a client can talk to it.

    Needs Linux, root (namespaces, the chroot), ``unshare``/``nsenter``, the
    ``htcondor`` Python bindings in this interpreter, and either a built chroot
    or the means to build one (debootstrap or apt-get). Set
    FAIRBIG_TEST_NO_CONDOR=1 to turn the pool tests off.
    """
    if os.environ.get("FAIRBIG_TEST_NO_CONDOR"):
        return False
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return False
    if not CONDOR_UP.exists() or not all(shutil.which(t) for t in ("unshare", "nsenter")):
        return False
    if importlib.util.find_spec("htcondor2") is None:
        return False
    root = Path(os.environ.get("FAIRBIG_CONDOR_ROOT", "/var/cache/fairbig/condor-root"))
    return (root / ".fairbig-condor-root").exists() or bool(
        shutil.which("debootstrap") or shutil.which("apt-get"))


def ensure_condor(timeout: float = 900) -> dict[str, str]:
    """Start the pool unless it runs already; return ``{"CONDOR_CONFIG": ...}``.

    Cheap when the pool is up (about 0.2 s). Raises CondorPoolError with
    condor-up's own message when it cannot start.
    """
    try:
        proc = subprocess.run([str(CONDOR_UP)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise CondorPoolError(f"scripts/condor-up did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise CondorPoolError(f"scripts/condor-up failed ({proc.returncode}): "
                              f"{proc.stderr.strip() or proc.stdout.strip()}")
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key == "CONDOR_CONFIG":
            return {"CONDOR_CONFIG": value}
    raise CondorPoolError(f"scripts/condor-up printed no CONDOR_CONFIG line: {proc.stdout!r}")


def condor_exec(*cmd: str, check: bool = True, cwd: Path | str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command (condor_q, condor_rm, ...) inside the pool's root."""
    proc = subprocess.run([str(CONDOR_EXEC), *cmd], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise CondorPoolError(f"condor-exec {' '.join(cmd)} failed ({proc.returncode}): "
                              f"{proc.stderr.strip()}")
    return proc


def pool_paths() -> list[Path]:
    """Host paths that jobs see at the same path: /tmp, /var/tmp, and the
    read-only binds (FAIRBIG_CONDOR_BINDS, default /root/.pyenv and the
    repository with its .venv) that existed when the pool started."""
    paths = [Path("/tmp"), Path("/var/tmp")]
    root = os.environ.get("FAIRBIG_CONDOR_ROOT", "/var/cache/fairbig/condor-root").rstrip("/")
    binds = Path(f"{root}-run/binds")
    if binds.exists():
        paths += [Path(p) for p in binds.read_text().splitlines() if p]
    return paths


def visible_in_pool(path: Path | str) -> bool:
    """Whether a job in the pool sees ``path`` at the same place."""
    p = Path(os.path.abspath(path))
    return any(p == base or base in p.parents for base in pool_paths())
