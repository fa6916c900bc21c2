"""``results_layout: bids``: the merged results form one BIDS-derivatives dataset.

Validated with the BIDS schema tools (``bidsschematools``, the schema's own Python
package): every merged path against the file rules of the schema (raw, common and
derivative rules), ``dataset_description.json`` against the schema's dataset rules and
metadata definitions. The end-to-end test runs a BIDS-App-shaped pipeline through the
local backend on a generated DataLad dataset with sessions and a sessionless subject.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

from fairbig import __version__
from fairbig import config as cfgmod
from fairbig.contract import APP_SCRATCH
from fairbig.derivatives import DESCRIPTION, Provenance, description
from fairbig.errors import FairbigError
from fairbig.jobtable import Unit, make_jobs

from .conftest import REPO, fairbig, load_generator
from .test_bids import git, run_by_session

gen = load_generator("bids-mini")
SUBJECTS = {"sub-01": {"ses-1": ["anat", "func"], "ses-2": ["anat"]},
            "sub-02": {"": ["anat"]}}       # sessionless: a subject job in a by-session plan
APP = ("sh code/bids_app.sh inputs/data {app_output_dir} participant --participant-label "
       "{subject_label} --bids-filter-file {bids_filter_file}")


# ------------------------------------------------------------ the schema's checks

@cache
def _schema():
    from bidsschematools import schema
    return schema.load_schema()


def _leaf_rules(group) -> Iterator[tuple[str, object]]:
    """The file rules below ``group``: derivative rules nest one level deeper than raw
    ones, which bidsschematools' own ``regexify_all`` (raw and common only) leaves out."""
    for name, rule in group.items():
        if "suffixes" in rule or "stem" in rule or "path" in rule:
            yield name, rule
        else:
            yield from _leaf_rules(rule)


@cache
def _path_regexes() -> tuple[re.Pattern, ...]:
    from bidsschematools.rules import regexify_filename_rules
    from bidsschematools.types import Namespace

    s = _schema()
    out = []
    for name, rule in _leaf_rules(s.rules.files):
        out += [re.compile(r["regex"]) for r in
                regexify_filename_rules(Namespace({name: rule}), s, level=1)]
    return tuple(out)


def invalid_paths(paths: list[str]) -> list[str]:
    """The paths (relative to the dataset root) no file rule of the schema matches."""
    return [p for p in paths if not any(r.fullmatch(p) for r in _path_regexes())]


def _type_problems(name: str, value, spec) -> list[str]:
    kind = spec.get("type")
    pytype = {"string": str, "array": list, "object": dict}.get(kind)
    if pytype and not isinstance(value, pytype):
        return [f"{name} is not a {kind}"]
    if "enum" in spec and value not in spec["enum"]:
        return [f"{name} {value!r} is not one of {list(spec['enum'])}"]
    if kind == "array":
        return [p for i, v in enumerate(value) for p in
                _type_problems(f"{name}[{i}]", v, spec.get("items", {}))]
    if kind == "object":
        props = spec.get("properties", {})
        # the schema names Container's Type/Tag/URI ContainerType/ContainerTag/ContainerURI
        short = {(k.removeprefix("Container") or k): k for k in props}
        p = [f"{name} lacks {r}" for r in spec.get("required", []) if r not in value]
        p += [f"{name}.{k} is not a property" for k in value if k not in short]
        return p + [q for k, v in value.items() if k in short
                    for q in _type_problems(f"{name}.{k}", v, props[short[k]])]
    return []


def description_problems(desc: dict) -> list[str]:
    """``desc`` against the schema's ``dataset_description`` rules (required fields, and
    ``GeneratedBy`` for a derivative) and each field's metadata definition."""
    s = _schema()
    rules = s.rules.json.dataset
    fields = dict(rules.dataset_description.fields)
    if desc.get("DatasetType") == "derivative":
        fields |= dict(rules.derivative_description.fields)
    problems = [f"{k} is required" for k, level in fields.items()
                if level == "required" and k not in desc]
    problems += [f"{k} is not a dataset_description field" for k in desc if k not in fields]
    return problems + [p for k, v in desc.items() if k in fields
                       for p in _type_problems(k, v, s.objects.metadata[k])]


# ------------------------------------------------------------ plan (pure)

def units(*ids: str) -> list[Unit]:
    """Units of ``sub-XX`` or ``sub-XX/ses-YY`` IDs."""
    return [Unit(sub, ses, "st", (f"{i}/anat/x.nii",), sub)
            for i in ids for sub, _, ses in [i.partition("/")]]


def test_bids_layout_gives_each_job_its_subject_and_session_area():
    jobs = make_jobs(units("sub-01/ses-1", "sub-01/ses-2", "sub-02"), "inputs/data",
                     "results", "run {output_dir}", "bids")
    assert {j.job_id: j.outputs for j in jobs} == {
        "sub-01_ses-1": ("results/sub-01/ses-1",), "sub-01_ses-2": ("results/sub-01/ses-2",),
        "sub-02": ("results/sub-02",)}
    assert [j.command for j in jobs] == ["run results/sub-01/ses-1", "run results/sub-01/ses-2",
                                         "run results/sub-02"]
    flat = make_jobs(units("sub-01/ses-1"), "inputs/data", "results", "run {output_dir}")
    assert flat[0].outputs == ("results/sub-01_ses-1",)


def test_a_plan_nesting_one_jobs_area_in_anothers_is_refused():
    with pytest.raises(FairbigError) as err:
        make_jobs(units("sub-01", "sub-01/ses-1", "sub-01-x/ses-1"), "inputs/data",
                  "results", "run", "bids")
    assert err.value.message == ("1 job area(s) lie inside another's, e.g. job sub-01_ses-1's "
                                 "results/sub-01/ses-1/ inside job sub-01's results/sub-01/")


def test_app_output_dir_copies_the_apps_subtree_into_the_jobs_area():
    jobs = make_jobs(units("sub-01/ses-1", "sub-02"), "inputs/data", "results", APP, "bids")
    assert jobs[0].command == (
        f"sh code/bids_app.sh inputs/data {APP_SCRATCH}/sub-01_ses-1 participant "
        "--participant-label 01 --bids-filter-file .fairbig/bids-filters/ses-1.json"
        " && mkdir -p results/sub-01/ses-1"
        f" && cp -R {APP_SCRATCH}/sub-01_ses-1/sub-01/ses-1/. results/sub-01/ses-1/")
    assert jobs[1].command.endswith(f"cp -R {APP_SCRATCH}/sub-02/sub-02/. results/sub-02/")


def test_results_layout_is_validated():
    problems = cfgmod.validate(cfgmod.from_partial("results_layout: nested\n"))
    assert "results_layout 'nested' must be one of flat, bids" in problems
    problems = cfgmod.validate(cfgmod.from_partial(
        "results_layout: bids\ninputs:\n  layout: ukb\n"))
    assert ("results_layout 'bids' needs BIDS inputs (sub-XX subjects); inputs.layout is ukb:"
            " set results_layout to flat") in problems


def test_the_description_is_valid_for_the_schema():
    desc = description(Provenance("containers/bids-app", "containers/images/bids-app.sif",
                                  "MD5E-s10--abc.sif", APP,
                                  (("1234-id", "c0ffee"), ("5678-id", "beef"))))
    assert description_problems(desc) == []
    assert desc["GeneratedBy"][0] == {"Name": "bids-app", "Description": APP, "Container": {
        "Type": "sif", "Tag": "MD5E-s10--abc.sif"}}
    assert desc["GeneratedBy"][1]["Name"] == "fairbig"
    assert desc["GeneratedBy"][1]["Version"] == __version__
    assert desc["SourceDatasets"] == [{"URL": "datalad:1234-id", "Version": "c0ffee"},
                                      {"URL": "datalad:5678-id", "Version": "beef"}]
    # the checks themselves see what is wrong
    assert description_problems({"Name": "x", "BIDSVersion": "1", "DatasetType": "derivative",
                                 "GeneratedBy": [{"Version": "1"}]}) == [
        "GeneratedBy[0] lacks Name"]
    assert invalid_paths(["sub-01/ses-1/sub-01_ses-1_scans.tsv", "sub-01/ses-1/x_files.tsv",
                          "sub-02/anat/sub-02_ses-1_T1w.nii.gz", DESCRIPTION]) == [
        "sub-01/ses-1/x_files.tsv", "sub-02/anat/sub-02_ses-1_T1w.nii.gz"]


# ------------------------------------------------------------ end to end

@pytest.fixture(scope="module")
def derivs_run(tmp_path_factory, image, lab_key) -> dict:
    """Sessions and a sessionless subject, planned by session in the BIDS-derivatives
    layout, run with a BIDS App (scratch output_dir) through the local backend, merged."""
    base = tmp_path_factory.mktemp("derivs")
    store = f"ria+file://{base}/input-store"
    gen.generate(base / "bids", SUBJECTS, store_url=store)
    settings = base / "settings.yaml"
    settings.write_text("results_layout: bids\n")    # a partial file, as a user writes it
    ana, plan = run_by_session(base, image, lab_key, APP,
                               REPO / "examples" / "bids-mini" / "code" / "bids_app.sh",
                               "--input", f"{store}#~bids", "--config", str(settings))
    merged = json.loads(fairbig("merge", "--json", cwd=ana).stdout)
    return {"ana": ana, "src": base / "bids", "plan": plan, "merged": merged,
            "store": base / "analysis-out"}


def merged_tree(run: dict) -> tuple[Path, list[str]]:
    """The output store's repository of the analysis and the paths below ``results/`` on
    its main branch."""
    dsid = git(run["ana"], "config", "-f", ".datalad/config", "datalad.dataset.id")
    store = run["store"] / dsid[:3] / dsid[3:]
    return store, git(store, "ls-tree", "-r", "--name-only", "main", "results").split("\n")


@pytest.mark.slow
def test_merged_results_are_one_valid_bids_derivatives_dataset(derivs_run):
    plan = derivs_run["plan"]
    assert plan["new"] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    assert plan["sessionless"] == ["sub-02"] and plan["mixed"] is True
    assert derivs_run["merged"]["merged"] == plan["new"]   # two jobs in sub-01/: no conflict
    store, paths = merged_tree(derivs_run)
    assert paths == ["results/dataset_description.json",
                     "results/sub-01/ses-1/sub-01_ses-1_scans.tsv",
                     "results/sub-01/ses-2/sub-01_ses-2_scans.tsv",
                     "results/sub-02/sub-02_scans.tsv"]
    assert invalid_paths([p.removeprefix("results/") for p in paths]) == []
    # kept in git (not annexed, not encrypted): readable from the store as it is
    desc = json.loads(git(store, "show", "main:results/dataset_description.json"))
    assert description_problems(desc) == []
    src_id = git(derivs_run["src"], "config", "-f", ".datalad/config", "datalad.dataset.id")
    assert desc["SourceDatasets"] == [{"URL": f"datalad:{src_id}",
                                       "Version": git(derivs_run["src"], "rev-parse", "HEAD")}]
    assert desc["GeneratedBy"][0]["Container"]["Tag"].startswith("MD5E-")
    assert [g["Name"] for g in desc["GeneratedBy"]] == ["ukb-mini", "fairbig"]


@pytest.mark.slow
def test_an_apps_session_tree_lands_in_its_area_and_reruns_identical(derivs_run):
    ana = derivs_run["ana"]
    log = (ana / ".fairbig" / "work" / "logs" / "sub-01_ses-2.log").read_text()
    assert "read: sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_T1w.nii.gz" in log
    fetched = ana.parent / "fetched.tsv"
    fairbig("fetch", "sub-01_ses-2", "sub-01_ses-2_scans.tsv", "--to", str(fetched),
            cwd=ana)
    assert fetched.read_text() == ("filename\tbytes\n"
                                   "anat/sub-01_ses-2_acq-mprage_T1w.nii.gz\t24\n"
                                   "sub-01_ses-2_scans.tsv\t49\n")
    rerun = json.loads(fairbig("rerun", "sub-01_ses-2", "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"] and rerun["files"] == {
        "results/sub-01/ses-2/sub-01_ses-2_scans.tsv": "identical"}, rerun


@pytest.mark.slow
def test_a_changed_session_reruns_in_its_own_area_of_the_merged_tree(derivs_run):
    """After the merge the job's branch starts from the plan commit without results/
    (neither its sibling session's nor the other subject's area, nor its own earlier
    one), and the merge replaces only its own nested area (results/sub-01/ses-2/)."""
    ana, src = derivs_run["ana"], derivs_run["src"]
    gen.edit(src, {"sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_T1w.nii.gz": "rescanned\n"},
             "sub-01 ses-2 rescanned")
    out = json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)
    assert out["changed"] == ["sub-01_ses-2"] and out["done"] == ["sub-01_ses-1", "sub-02"]
    fairbig("submit", cwd=ana)
    log = (ana / ".fairbig" / "work" / "logs" / "sub-01_ses-2.log").read_text()
    assert "without results/" in log.split("=== attempt")[-1]  # no other job's results
    assert json.loads(fairbig("merge", "--json", cwd=ana).stdout)["merged"] == ["sub-01_ses-2"]
    store, paths = merged_tree(derivs_run)
    assert invalid_paths([p.removeprefix("results/") for p in paths]) == []
    assert len(paths) == 4
    desc = json.loads(git(store, "show", "main:results/dataset_description.json"))
    assert desc["SourceDatasets"][0]["Version"] == git(src, "rev-parse", "HEAD")


@pytest.mark.slow
def test_a_layout_change_after_results_is_refused(derivs_run):
    """Results made in one layout would count as done in the other, where they are not."""
    config = derivs_run["ana"] / cfgmod.CONFIG_NAME
    text = config.read_text()
    config.write_text(text.replace("results_layout: bids", "results_layout: flat"))
    try:
        out = fairbig("plan", "--dry-run", cwd=derivs_run["ana"], check=False)
    finally:
        config.write_text(text)
    assert out.returncode != 0
    # sub-02 (no sessions) has results/sub-02 in either layout: it stays where it is
    assert out.stderr == ("fairbig: error: 2 job(s) with results in the output store would "
                          "move to another area (results_layout or results changed): "
                          "sub-01_ses-1, sub-01_ses-2 (set them back in fairbig.yaml, or start"
                          " a new analysis dataset with 'fairbig init'; nothing was planned)\n")
