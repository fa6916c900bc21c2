"""Files shipped with fairbig: templates, the container wrapper, example code.

In a wheel they live under ``fairbig/_data``; in a source checkout (the
editable install `make` creates) at the top of the repository.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_WHEEL_NAMES = {"examples/ukb-mini/code": "ukb-mini-code"}


def data_path(name: str) -> Path:
    """Path of a shipped file or folder given by its repository path."""
    wheel = _PKG / "_data" / _WHEEL_NAMES.get(name, name)
    return wheel if wheel.exists() else _PKG.parent / name


def container_wrapper() -> Path:
    return data_path("containers/fairbig-container")


def oci_unpacker() -> Path:
    return data_path("containers/fairbig-oci-unpack")


def templates_dir() -> Path:
    return data_path("templates")
