"""``fairbig check``: everything a job will need, verified before any job runs."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import requires, version

from .. import gpg, sandbox
from ..config import GPU_RUNTIMES
from ..dataset import Analysis
from ..errors import FairbigError
from ..proc import run


def _pinned(dist: str) -> str:
    """The version pyproject.toml pins ``dist`` to (``dist==X``), the one place it is
    written: read back from fairbig's installed metadata."""
    for req in requires("fairbig") or ():
        name, sep, pin = req.partition("==")
        if sep and name.strip() == dist:
            return pin.split(";")[0].strip()
    raise RuntimeError(f"fairbig's metadata pins no {dist}")  # a broken install


GIT_ANNEX_PIN = _pinned("git-annex")
RUNTIMES = ("apptainer", "singularity", "bwrap", "podman")


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def _tools(_: Analysis) -> str:
    annex = run(["git", "annex", "version", "--raw"], check=False,
                hint="install fairbig into a venv and put its bin/ on PATH").stdout.strip()
    if not annex.startswith(GIT_ANNEX_PIN):
        raise FairbigError(f"git-annex {annex or 'missing'}, fairbig needs {GIT_ANNEX_PIN}",
                           "pip install git-annex==" + GIT_ANNEX_PIN)
    missing = [t for t in ("git", "flock", "gpg") if not shutil.which(t)]
    if missing:
        raise FairbigError(f"missing tools: {', '.join(missing)}", "install them")
    return (f"git-annex {annex}, datalad {version('datalad')}, "
            f"datalad-container {version('datalad-container')}")


def _runtime(a: Analysis) -> str:
    r = a.config.runtime
    if r.name != "auto":
        if not shutil.which(r.name):
            raise FairbigError(f"runtime.name is {r.name}, but {r.name} is not installed here",
                               "install it, or set runtime.name: auto in fairbig.yaml")
        chosen = r.name
    else:
        found = [n for n in RUNTIMES if shutil.which(n)]
        if not found:
            raise FairbigError("no container runtime found",
                               "install apptainer (clusters) or bubblewrap (apt-get install "
                               "bubblewrap)")
        chosen = found[0]
    if r.gpus and chosen not in GPU_RUNTIMES:
        raise FairbigError(f"runtime.gpus {r.gpus}: {chosen} (the runtime used here) cannot"
                           " pass GPUs into a container",
                           f"set runtime.name to one of {', '.join(GPU_RUNTIMES)}")
    return f"{chosen}; binds: {sandbox.check_binds(r)}"


def _config(a: Analysis) -> str:
    cfg = a.config
    return f"backend {cfg.backend.name}, container {cfg.container}"


def _scheduler(a: Analysis) -> str:
    from ..backends import get_backend

    return f"{a.config.backend.name}: {get_backend(a.config.backend.name, a.config).check()}"


def _input_store(a: Analysis) -> str:
    path = a.input_store.dataset_dir(a.dataset_id)
    run(["git", "--git-dir", str(path), "rev-parse", "HEAD"],
        hint="publish the dataset with 'datalad push --to input'")
    return str(path)


def _output_store(a: Analysis) -> str:
    path = a.output_git
    with tempfile.NamedTemporaryFile(dir=path, prefix=".fairbig-probe-"):
        pass
    if not os.access(a.output_store.root, os.W_OK):
        raise FairbigError(f"cannot create the push lock in {a.output_store.root}",
                           "make the store root writable for job users")
    return f"{path} (writable)"


def container_call(a: Analysis, cmd: str) -> str:
    """The shell command datalad-container would run for ``cmd``, from the dataset root."""
    c = a.container()
    img = c.image_path
    return c.cmdexec.format(img=img, cmd=cmd, img_dspath=c.ds_rel or ".",
                            img_dirpath=os.path.dirname(img) or ".")


def _container(a: Analysis) -> str:
    import datalad.api as dapi

    from .. import dl

    c = a.container()
    dl.call(dapi.get, path=str(c.ds / c.image), dataset=str(a.root))
    cmd = container_call(a, "sh -c 'exit 0'")
    run(["sh", "-c", cmd], cwd=a.root, env=sandbox.wrapper_env(a.config.runtime),
        hint="the container does not run; check the runtime")
    return f"'{c.name}' runs ({cmd.split(' ')[1]})"


def _keys(a: Analysis) -> str:
    notes = []
    for key in a.config.encryption.keys:
        info = gpg.key_info(key)
        gpg.check_encrypt(info.fingerprint)
        if info.has_secret:
            gpg.check_roundtrip(info.fingerprint)
        notes.append(f"{info.fingerprint[-16:]} encrypts"
                     + (", decrypts" if info.has_secret else
                        f" (results cannot be read on this machine: {info.no_agent})"
                        if info.no_agent else
                        " (no secret key here: results cannot be read on this machine)"))
    return "; ".join(notes)


CHECKS: list[tuple[str, Callable[[Analysis], str]]] = [
    ("tools", _tools), ("config", _config), ("scheduler", _scheduler),
    ("container runtime", _runtime),
    ("input store", _input_store), ("output store", _output_store),
    ("encryption key", _keys), ("container", _container),
]


def run_checks(a: Analysis) -> Iterator[CheckResult]:
    for name, fn in CHECKS:
        try:
            yield CheckResult(name, True, fn(a))
        except FairbigError as exc:
            yield CheckResult(name, False, str(exc))
