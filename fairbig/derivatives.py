"""``results_layout: bids``: the results as one BIDS-derivatives dataset.

Each job writes only its own ``sub-XX/[ses-YY/]`` area (``jobtable.make_jobs`` decides
it); the one file above the areas, ``<results>/dataset_description.json``, is written
here by ``fairbig plan`` and committed on the main branch with the plan, never by a
job: a job writing outside its area is what merge refuses.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .dataset import Analysis, dataset_id_of
from .gittree import git_dir_of, gitlink
from .images import DOCKER_ARCHIVE, OCI_ARCHIVE, ROOTFS, SIF

DESCRIPTION = "dataset_description.json"
BIDS_VERSION = "1.11.2"   # the BIDS release the layout and the description follow
# the image kinds by the suffix init names them with, the longest suffix first
KINDS = sorted((SIF, OCI_ARCHIVE, DOCKER_ARCHIVE, ROOTFS), key=lambda k: -len(k.suffix))


@dataclass(frozen=True)
class Provenance:
    """What the description names: the container, the command and the input datasets."""

    container: str          # fairbig.yaml's name, e.g. containers/bids-app
    image: str              # relative to the analysis dataset
    image_key: str          # the image's git-annex key (its content), "" if not annexed
    command: str            # the command template of fairbig.yaml
    inputs: tuple[tuple[str, str], ...]   # (DataLad ID, commit planned from), primary first


def provenance(a: Analysis, updated: dict[str, str]) -> Provenance:
    """``updated``: the input datasets (by path) that ``plan --update`` moves, with the
    commit each moves to; the others are at the commit the analysis records."""
    info = a.container()
    image = a.root / info.image_path
    key = os.path.basename(os.readlink(image)) if image.is_symlink() else ""
    paths = [a.config.inputs.path, *(s.path for s in a.config.inputs.secondary)]
    inputs = tuple((dataset_id_of(a.root / p),
                    updated.get(p) or gitlink(git_dir_of(a.root), "HEAD", p) or "")
                   for p in paths)
    return Provenance(a.config.container, info.image_path, key, a.config.command, inputs)


def description(p: Provenance) -> dict:
    """The derivatives dataset's ``dataset_description.json`` (BIDS: ``DatasetType``
    derivative requires ``GeneratedBy``): the pipeline first, as its container, then
    fairbig, which ran it; ``SourceDatasets`` names each input dataset by DataLad ID and
    commit, so the description changes when, and only when, these do."""
    container = {"Type": next((k.name for k in KINDS if p.image.endswith(k.suffix)),
                              "unknown"),
                 "Tag": p.image_key or p.image}
    return {
        "Name": f"{p.container.rpartition('/')[2]} derivatives",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {"Name": p.container.rpartition("/")[2], "Description": p.command,
             "Container": container},
            {"Name": "fairbig", "Version": __version__,
             "Description": "FAIRly big workflow: one job per subject/session, merged"},
        ],
        "SourceDatasets": [{"URL": f"datalad:{dsid}", "Version": commit}
                           for dsid, commit in p.inputs],
    }


def description_file(a: Analysis, updated: dict[str, str]) -> dict[Path, str]:
    """``{path: text}`` of the description a plan commits, and of ``.gitattributes``
    if it lacks the rule that keeps the description in git: every other file below
    ``<results>/`` is annexed (and so encrypted in the output store), but this one is
    fairbig's, plain metadata every reader of the merged results needs. Empty in the
    flat layout."""
    if a.config.results_layout != "bids":
        return {}
    path = f"{a.config.results}/{DESCRIPTION}"
    out = {a.root / path: json.dumps(description(provenance(a, updated)), indent=2) + "\n"}
    rule = f"{path} annex.largefiles=nothing"
    attributes = a.root / ".gitattributes"
    old = attributes.read_text() if attributes.exists() else ""
    if rule not in old.splitlines():
        out[attributes] = old + ("" if old.endswith("\n") or not old else "\n") + (
            "# the BIDS-derivatives description is fairbig's metadata, kept in git\n"
            f"{rule}\n")
    return out
