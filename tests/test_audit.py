"""Reproducibility audits: ``fairbig rerun`` and ``fairbig compare`` on real computations."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fairbig import config as cfgmod

from .conftest import fairbig, init_analysis

pytestmark = pytest.mark.slow

NONDET = "sh code/process_subject_nondeterministic.sh {input_dir} {output_dir}"
VARIANT = ("sh -c 'sh code/process_subject.sh {input_dir} {output_dir}"
           " && echo v2 > {output_dir}/version.txt'")


def computed(base: Path, ukb_input: dict, image: Path, lab_key: str, name: str,
             command: str | None = None, only: tuple[str, ...] = ()) -> Path:
    kwargs = {"command": command} if command else {}
    ana = init_analysis(base, ukb_input, image, lab_key, name=name, **kwargs)
    fairbig("plan", *(f"--only={j}" for j in only), cwd=ana)
    fairbig("submit", cwd=ana)
    fairbig("merge", cwd=ana)
    return ana


def store_spec(ana: Path) -> str:
    cfg = cfgmod.load(ana / "fairbig.yaml")
    ident = subprocess.run(["git", "config", "-f", str(ana / ".datalad" / "config"),
                            "datalad.dataset.id"], capture_output=True, text=True).stdout.strip()
    return f"{cfg.stores.output}#{ident}"


@pytest.fixture(scope="module")
def two(tmp_path_factory, ukb_input, image, lab_key):
    """Two computations of the same two jobs (two show a comparison per unit; four
    only cost time)."""
    base = tmp_path_factory.mktemp("audit")
    ids = tuple(sorted(ukb_input["ids"])[:2])
    return {"a": computed(base, ukb_input, image, lab_key, "a", only=ids),
            "b": computed(base, ukb_input, image, lab_key, "b", only=ids), "base": base,
            "ids": ids}


def test_rerun_of_a_merged_job_is_identical(two):
    jid = two["ids"][1]
    proc = fairbig("rerun", jid, "--json", cwd=two["a"])
    out = json.loads(proc.stdout)["jobs"][0]
    assert out["ok"] and out["job_id"] == jid
    assert out["files"] and set(out["files"].values()) == {"identical"}
    assert all(p.startswith(f"results/{jid}/") for p in out["files"])


def test_rerun_sample_is_seeded_and_reported(two):
    first = json.loads(fairbig("rerun", "--sample", "2", "--seed", "7", "--json",
                               cwd=two["a"]).stdout)
    assert first["seed"] == 7 and len(first["jobs"]) == 2 and all(j["ok"] for j in first["jobs"])


def test_nondeterministic_pipeline_is_caught(tmp_path, ukb_input, image, lab_key):
    jid = ukb_input["ids"][0]
    ana = computed(tmp_path, ukb_input, image, lab_key, "nondet", NONDET, only=(jid,))
    proc = fairbig("rerun", jid, "--json", cwd=ana, check=False)
    assert proc.returncode != 0
    files = json.loads(proc.stdout)["jobs"][0]["files"]
    differing = sorted(p for p, v in files.items() if v != "identical")
    assert len(differing) == 1 and differing[0].startswith(f"results/{jid}/")
    text = fairbig("rerun", jid, cwd=ana, check=False).stdout
    assert "NOT REPRODUCED" in text and differing[0] in text


def test_two_computations_compare_identical(two):
    proc = fairbig("compare", store_spec(two["a"]), store_spec(two["b"]), "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert data["summary"]["units"]["identical"] == len(two["ids"])


def test_changed_pipeline_shows_differing_files(two, ukb_input, image, lab_key):
    c = computed(two["base"], ukb_input, image, lab_key, "c", VARIANT, only=two["ids"])
    proc = fairbig("compare", store_spec(two["a"]), store_spec(c), "--json", check=False)
    assert proc.returncode != 0
    data = json.loads(proc.stdout)
    assert data["summary"]["units"]["differs"] == len(two["ids"])
    only_b = [f for f, s in data["files"].items() if s == "only-in-B"]
    assert sorted(only_b) == [f"results/{j}/version.txt" for j in two["ids"]]
