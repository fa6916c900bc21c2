"""What kind of container image a file is: decided before ``fairbig init`` adds it.

The kind decides only how init checks the file and what it is named in the container
dataset; the wrapper (containers/fairbig-container) tells the kinds apart again at run
time, so a run record names the image, never its kind or a runtime.
"""

from __future__ import annotations

import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from .errors import FairbigError

SIF_MAGIC = b"SIF_MAGIC"   # at byte 32 of every SIF (Apptainer/Singularity image)
KINDS_TEXT = "a SIF, an OCI or Docker image archive, or a tar of a root file system"


@dataclass(frozen=True)
class ImageKind:
    name: str          # sif | oci-archive | docker-archive | rootfs
    suffix: str        # of its name in the container dataset's images/
    runtimes: tuple[str, ...] = ()   # the only runtimes that run it ("" = any)


SIF = ImageKind("sif", ".sif", ("apptainer", "singularity"))
OCI_ARCHIVE = ImageKind("oci-archive", ".oci.tar")
DOCKER_ARCHIVE = ImageKind("docker-archive", ".docker.tar")
ROOTFS = ImageKind("rootfs", ".tar")


def image_kind(path: Path) -> ImageKind:
    """The kind of image ``path`` is; one line if it is none or is damaged."""
    if not path.is_file():
        raise FairbigError(f"container image '{path}' does not exist",
                           "build one with containers/build-image or give its path")
    with path.open("rb") as f:
        if f.read(41)[32:] == SIF_MAGIC:
            return SIF
    if not tarfile.is_tarfile(path):
        raise FairbigError(f"container image '{path}' is of no known kind",
                           f"give {KINDS_TEXT} (README: Using your own pipeline)")
    try:
        with tarfile.open(path) as tar:
            names = {n.removeprefix("./").rstrip("/") for n in tar.getnames()}
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise FairbigError(f"container image '{path}' is damaged: {exc}",
                           "make or copy the image again") from exc
    if {"oci-layout", "index.json"} <= names:
        return OCI_ARCHIVE
    if "manifest.json" in names:
        return DOCKER_ARCHIVE
    if names & {"bin/sh", "usr/bin/sh", "bin"}:
        return ROOTFS
    raise FairbigError(f"container image '{path}' is a tar, but neither an image archive "
                       "(oci-layout, manifest.json) nor a root file system (no bin/sh)",
                       f"give {KINDS_TEXT} (README: Using your own pipeline)")
