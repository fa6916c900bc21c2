"""``fairbig rerun`` reads run records with datalad's own reader."""

from __future__ import annotations

import subprocess

import pytest

from fairbig.commands.rerun import _declared_outputs
from fairbig.errors import FairbigError

from .conftest import BIN


@pytest.mark.slow
def test_declared_outputs_of_a_sidecar_record(tmp_path):
    """A record kept in .datalad/runinfo (``--sidecar yes``); inline records are read in
    every end-to-end rerun."""
    ds = tmp_path / "ds"
    dl = str(BIN / "datalad")
    subprocess.run([dl, "create", str(ds)], check=True, capture_output=True)
    subprocess.run([dl, "run", "--sidecar", "yes", "-m", "make out", "-o", "out/a.txt",
                    "mkdir -p out && echo hi > out/a.txt"], cwd=ds, check=True,
                   capture_output=True)
    message = subprocess.run(["git", "log", "-1", "--format=%B"], cwd=ds, check=True,
                             capture_output=True, text=True).stdout
    assert _declared_outputs(ds, message) == ["out/a.txt"]


def test_commit_without_record_is_refused(tmp_path):
    with pytest.raises(FairbigError, match="carries no run record"):
        _declared_outputs(tmp_path, "fairbig: plan of 4 jobs\n")
