"""The backend registry: the one list of backend names that config validation, the
CLI's ``--backend`` choices and the factory all read.

Classes are imported on first use, so naming the backends costs nothing (the
HTCondor bindings stay unloaded) and this package imports none of its modules.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from ..errors import FairbigError

if TYPE_CHECKING:
    from ..config import Config
    from .base import Backend

# name -> "module:class" of the backend
REGISTRY: dict[str, str] = {
    "local": "fairbig.backends.local:LocalBackend",
    "slurm": "fairbig.backends.slurm:SlurmBackend",
    "htcondor": "fairbig.backends.htcondor:HTCondorBackend",
}
NAMES: tuple[str, ...] = tuple(REGISTRY)


def get_backend(name: str, config: Config) -> Backend:
    """The backend called ``name``, set up from ``config``."""
    if name not in REGISTRY:
        raise FairbigError(f"unknown backend '{name}'", f"use {', '.join(NAMES)}")
    module, _, cls = REGISTRY[name].partition(":")
    return getattr(import_module(module), cls)(config)
