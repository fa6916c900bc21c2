"""fairbig.yaml's ``runtime`` settings as containers/fairbig-container reads them.

The wrapper picks the runtime on the node at run time, so binds, variables, GPUs
and extra options reach it as ``FAIRBIG_CONTAINER_*`` variables, never as words of
the recorded call: a run record made on a cluster then replays on a laptop whose
licence file lives elsewhere. Jobs export these (rendered into the job script),
``fairbig check`` probes the container with them and ``fairbig rerun`` replays with
them. Lists travel one item per line, which is why no item may hold a newline.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .config import RUNTIMES, RuntimeConfig
from .errors import FairbigError

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# names the wrapper sets itself: a user's value would be overwritten or break it
_RESERVED = ("PATH", "FAIRBIG_CONTAINER_")


@dataclass(frozen=True)
class Bind:
    host: str
    container: str
    writable: bool

    @property
    def line(self) -> str:
        """The wrapper's form: HOST:CONTAINER:ro|rw."""
        return f"{self.host}:{self.container}:{'rw' if self.writable else 'ro'}"


def parse_bind(text: str) -> Bind:
    """``HOST[:CONTAINER][:ro|rw]``; call :func:`bind_problem` first."""
    parts = text.split(":")
    mode = parts.pop() if len(parts) > 1 and parts[-1] in ("ro", "rw") else "ro"
    host = parts[0]
    return Bind(host, parts[1] if len(parts) > 1 else host, mode == "rw")


def bind_problem(text: str) -> str:
    """Why ``text`` is no bind, or "" when it is one."""
    if not text.isprintable():
        return "must be one line"
    parts = text.split(":")
    if len(parts) > 1 and parts[-1] in ("ro", "rw"):
        parts.pop()
    if len(parts) > 2:
        return ("has a ':' in a path (write HOST[:CONTAINER][:ro|rw]; paths with ':'"
                " cannot be bound)")
    for path in parts:
        if not path.startswith("/") or ".." in PurePosixPath(path).parts:
            return f"needs absolute paths without '..' (HOST[:CONTAINER][:ro|rw]), not '{path}'"
    if len(parts) > 1 and parts[1] in ("/", "/proc", "/dev", "/tmp"):
        return f"cannot replace {parts[1]} inside the container"
    return ""


def env_problem(text: str) -> str:
    """Why ``text`` is neither NAME nor NAME=VALUE (one line), or ""."""
    name, _, value = text.partition("=")
    if not _ENV_NAME_RE.match(name):
        return "must be NAME or NAME=VALUE (a name of letters, digits and _)"
    if name.startswith(_RESERVED):
        return f"sets {name}, which the container wrapper sets itself"
    if not value.isprintable():
        return "must be one line"
    return ""


def wrapper_env(r: RuntimeConfig) -> dict[str, str]:
    """The ``FAIRBIG_CONTAINER_*`` variables of ``r`` (empty ones left out)."""
    env = {
        "FAIRBIG_CONTAINER_RUNTIME": "" if r.name == "auto" else r.name,
        "FAIRBIG_CONTAINER_BINDS": "\n".join(parse_bind(b).line for b in r.binds),
        "FAIRBIG_CONTAINER_ENV": "\n".join(r.env),
        "FAIRBIG_CONTAINER_GPU": r.gpu_vendor if r.gpus else "",
    }
    for name in RUNTIMES:
        env[f"FAIRBIG_CONTAINER_ARGS_{name.upper()}"] = "\n".join(getattr(r.args, name))
    return {k: v for k, v in env.items() if v}


def check_binds(r: RuntimeConfig) -> str:
    """Every bind's host path exists here (one line naming the first that does not),
    so a job never starts only to fail in the container."""
    binds = [parse_bind(b) for b in r.binds]
    missing = [b.host for b in binds if not Path(b.host).exists()]
    if missing:
        raise FairbigError(f"runtime.binds: {missing[0]} does not exist on this machine"
                           + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                           "create it, or fix or remove the bind in fairbig.yaml")
    return ", ".join(f"{b.host} -> {b.container} ({'rw' if b.writable else 'ro'})"
                     for b in binds) or "none"


@contextmanager
def environment(r: RuntimeConfig) -> Iterator[None]:
    """``os.environ`` with ``r``'s wrapper variables, for containers run in-process
    (datalad rerun); any FAIRBIG_CONTAINER_* already set and not in ``r`` stays."""
    new = wrapper_env(r)
    saved = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
