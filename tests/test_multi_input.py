"""Several input datasets: raw BIDS (primary, defines the jobs) plus a derivatives-shaped
dataset (``inputs.secondary``, e.g. fMRIPrep output for XCP-D).

The planning tests read real git trees (plain git, fast); the end-to-end test runs
jobs on generated DataLad datasets, both real subdatasets published to RIA stores, with
a pipeline that lists every file it sees with content.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.jobtable import make_jobs, render_tsv
from fairbig.secondary import add_secondaries, read_secondary

from .conftest import fairbig, load_generator
from .test_bids import Tree, commit, git, merges_and_reruns_identical, run_by_session

gen = load_generator("bids-mini")
DERIV_TOP = {"dataset_description.json": '{"Name": "fmriprep", "BIDSVersion": "1.9.0",'
                                         ' "DatasetType": "derivative"}\n'}


def deriv_files(subjects: dict[str, list[str]]) -> dict[str, str]:
    """fMRIPrep-shaped outputs: a subject-level anat folder, a func folder per session."""
    files = dict(DERIV_TOP)
    for sub, sessions in subjects.items():
        files[f"{sub}/anat/{sub}_desc-preproc_T1w.nii.gz"] = f"preproc {sub}\n"
        for ses in sessions:
            files[f"{sub}/{ses}/func/{sub}_{ses}_desc-preproc_bold.nii.gz"] = f"{sub} {ses}\n"
    return files


class TwoInputs(Tree):
    """A ``Tree`` (raw BIDS at inputs/data) plus a derivatives tree at inputs/fmriprep."""

    def __init__(self, tmp: Path, raw: dict, deriv: dict[str, list[str]]) -> None:
        super().__init__(tmp, raw)
        self.deriv = self.root / "inputs" / "fmriprep"
        self.deriv.mkdir()
        git(self.deriv, "init", "-q")
        for rel, text in deriv_files(deriv).items():
            self.put(rel, text)

    def put(self, rel: str, text: str) -> None:
        (self.deriv / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.deriv / rel).write_text(text)
        sha = commit(self.deriv)
        git(self.root, "update-index", "--add", "--cacheinfo", f"160000,{sha},inputs/fmriprep")
        git(self.root, "commit", "-q", "-m", "derivatives")

    def planned(self, by: str = "session") -> tuple[dict, dict[str, str]]:
        _, jobs = self.jobs(by)
        skipped: dict[str, str] = {}
        got = add_secondaries(sorted(jobs.values()), [read_secondary(
            self.root, "fmriprep", "inputs/fmriprep")], skipped)
        return {j.job_id: j for j in got}, skipped


RAW = {"sub-01": {"ses-1": ["anat"], "ses-2": ["func"]}, "sub-02": {"ses-1": ["anat"]},
       "sub-03": {"ses-1": ["anat"]}}
DERIV = {"sub-01": ["ses-1", "ses-2"], "sub-02": ["ses-1"]}


def test_secondary_inputs_by_subject_and_session(tmp_path: Path):
    t = TwoInputs(tmp_path, RAW, DERIV)
    jobs, skipped = t.planned()
    assert sorted(jobs) == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    assert skipped == {"sub-03_ses-1": "sub-03 is not in input dataset(s) fmriprep"}
    extra = [p for p in jobs["sub-01_ses-1"].inputs if p.startswith("inputs/fmriprep")]
    assert extra == ["inputs/fmriprep/sub-01/anat", "inputs/fmriprep/sub-01/ses-1",
                     "inputs/fmriprep/dataset_description.json"]
    by_subject, _ = t.planned("subject")
    assert [p for p in by_subject["sub-01"].inputs if p.startswith("inputs/fmriprep")] == [
        "inputs/fmriprep/sub-01/anat", "inputs/fmriprep/sub-01/ses-1",
        "inputs/fmriprep/sub-01/ses-2", "inputs/fmriprep/dataset_description.json"]


def test_secondary_change_changes_only_its_subjects_jobs(tmp_path: Path):
    t = TwoInputs(tmp_path, RAW, DERIV)
    before, _ = t.planned()
    t.put("sub-01/ses-2/func/sub-01_ses-2_desc-preproc_bold.nii.gz", "rerun of fmriprep\n")
    after, _ = t.planned()
    assert [j for j in before if before[j].input_state != after[j].input_state] == [
        "sub-01_ses-2"]
    t.put("sub-01/anat/sub-01_desc-preproc_T1w.nii.gz", "new anat\n")
    again, _ = t.planned()
    assert [j for j in after if after[j].input_state != again[j].input_state] == [
        "sub-01_ses-1", "sub-01_ses-2"]
    t.put("dataset_description.json", '{"Name": "fmriprep 2"}\n')   # descriptive
    last, _ = t.planned()
    assert all(last[j].input_state == again[j].input_state for j in last)


def test_input_dir_placeholder_names_the_jobs_folder(tmp_path: Path):
    t = TwoInputs(tmp_path, RAW, {"sub-01": ["ses-1"], "sub-02": []})
    lay, _ = t.jobs("session")
    made = make_jobs(lay.units, "inputs/data", "results",
                     "run {input_dir} {input_dir:fmriprep} ${x} {{inputs}}")
    got = add_secondaries(made, [read_secondary(t.root, "fmriprep", "inputs/fmriprep")], {})
    commands = {j.job_id: j.command for j in got}
    assert commands["sub-01_ses-1"] == ("run inputs/data/sub-01/ses-1 "
                                        "inputs/fmriprep/sub-01/ses-1 ${x} {{inputs}}")
    # no ses-2 folder of sub-01 in the derivatives: the subject's folder
    assert commands["sub-01_ses-2"].startswith("run inputs/data/sub-01/ses-2 "
                                               "inputs/fmriprep/sub-01 ")
    assert commands["sub-02_ses-1"].startswith("run inputs/data/sub-02/ses-1 "
                                               "inputs/fmriprep/sub-02 ")


def test_one_input_plans_byte_identically(tmp_path: Path):
    t = Tree(tmp_path, RAW)
    _, jobs = t.jobs("session")
    made = sorted(jobs.values())
    assert render_tsv(add_secondaries(made, [], {})) == render_tsv(made)


def test_secondary_settings_are_validated():
    cfg = cfgmod.from_partial(
        "command: 'run {input_dir:fmriprep} {input_dir:freesurfer}'\n"
        "inputs:\n  secondary:\n    - {name: fmriprep, path: inputs/fmriprep}\n"
        "    - {name: fmriprep, path: inputs/data}\n    - {name: 1x, path: inputs/x}\n")
    problems = cfgmod.validate(cfg)
    assert "inputs.secondary[1].path 'inputs/data' is another input's path too" in problems
    assert "inputs.secondary[2].name '1x' must be a letter, then letters, digits, _ or -" \
        in problems
    assert "inputs.secondary: name 'fmriprep' is given twice" in problems
    assert any(p.startswith("command uses unknown placeholder(s) {input_dir:freesurfer}")
               for p in problems), problems


# ---------------------------------------------------------------- end to end

LIST = """\
#!/bin/sh
# list.sh INPUT_DIR DERIV_DIR OUTPUT_DIR: every file with content below inputs/
set -eu
echo "args: $1 $2"
mkdir -p "$3"
find -L inputs \\( -name .git -o -name .datalad \\) -prune -o -type f -print | sort \\
    | tee "$3/seen.txt" | sed 's/^/seen: /'
"""
CMD = "sh code/list.sh {input_dir} {input_dir:fmriprep} {output_dir}"


def seen(ana: Path, job: str) -> set[str]:
    log = (ana / ".fairbig" / "work" / "logs" / f"{job}.log").read_text()
    return {line.removeprefix("seen: ") for line in log.splitlines()
            if line.startswith("seen: ") and not line.endswith(".gitattributes")}


def make_derivatives(path: Path, store: str) -> None:
    """A derivatives-shaped DataLad dataset, every file annexed, published as ~fmriprep."""
    import datalad.api as dl

    dl.create(path=str(path), **gen.QUIET)
    for rel, text in deriv_files(DERIV).items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    dl.save(dataset=str(path), message="fmriprep outputs", **gen.QUIET)
    dl.create_sibling_ria(url=store, name="input-store", dataset=str(path), alias="fmriprep",
                          new_store_ok=True, **gen.QUIET)
    gen.publish(path)


@pytest.fixture(scope="module")
def two_inputs_run(tmp_path_factory, image, lab_key) -> dict:
    base = tmp_path_factory.mktemp("multi")
    raw_store, deriv_store = f"ria+file://{base}/raw-store", f"ria+file://{base}/deriv-store"
    # sub-03 (not in the derivatives) differs in content from sub-02: identical files
    # are one annex key, whose content is present for both once fetched for one
    gen.generate(base / "raw", {**gen.DEFAULT, "sub-03": {"ses-2": ["anat"]}},
                 store_url=raw_store)
    make_derivatives(base / "fmriprep", deriv_store)
    (base / "list.sh").write_text(LIST)
    ana, plan = run_by_session(base, image, lab_key, CMD, base / "list.sh",
                               "--input", f"{raw_store}#~bids",
                               "--input", f"fmriprep={deriv_store}#~fmriprep")
    return {"ana": ana, "deriv": base / "fmriprep", "plan": plan}


@pytest.mark.slow
def test_each_job_sees_its_subject_of_both_datasets(two_inputs_run):
    ana, plan = two_inputs_run["ana"], two_inputs_run["plan"]
    assert cfgmod.load(ana / "fairbig.yaml").inputs.secondary == [
        cfgmod.SecondaryInput("fmriprep", "inputs/fmriprep")]
    assert plan["new"] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    assert plan["skipped"] == {"sub-03_ses-2": "sub-03 is not in input dataset(s) fmriprep"}
    for job, sub, ses, other in (("sub-01_ses-1", "sub-01", "ses-1", "ses-2"),
                                 ("sub-01_ses-2", "sub-01", "ses-2", "ses-1"),
                                 ("sub-02_ses-1", "sub-02", "ses-1", "")):
        log = (ana / ".fairbig" / "work" / "logs" / f"{job}.log").read_text()
        assert f"args: inputs/data/{sub}/{ses} inputs/fmriprep/{sub}/{ses}\n" in log
        # installed with git from its own store, which the job may use (job_stores)
        assert "inputs/fmriprep is in no store of the job's" not in log
        files = seen(ana, job)
        assert {f for f in files if f.startswith("inputs/fmriprep/")} == {
            "inputs/fmriprep/dataset_description.json",
            f"inputs/fmriprep/{sub}/anat/{sub}_desc-preproc_T1w.nii.gz",
            f"inputs/fmriprep/{sub}/{ses}/func/{sub}_{ses}_desc-preproc_bold.nii.gz"}, job
        raw_own = {f for f in files if f.startswith("inputs/data/sub-")}
        assert raw_own and all(f.startswith((f"inputs/data/{sub}/{ses}/",
                                             f"inputs/data/{sub}/{sub}_sessions.tsv"))
                               for f in raw_own), (job, raw_own)
        assert not other or not any(f"/{other}/" in f for f in files)
    merges_and_reruns_identical(ana, plan["new"], "sub-01_ses-1")


@pytest.mark.slow
def test_a_derivatives_change_replans_only_its_subject(two_inputs_run):
    ana, deriv = two_inputs_run["ana"], two_inputs_run["deriv"]
    gen.edit(deriv, {"sub-02/ses-1/func/sub-02_ses-1_desc-preproc_bold.nii.gz": "redone\n"},
             "sub-02 rerun")
    out = json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)
    assert out["committed"] and out["input_updated"]
    assert out["changed"] == ["sub-02_ses-1"]
    assert out["done"] == ["sub-01_ses-1", "sub-01_ses-2"] and out["new"] == []
    recorded = git(ana, "ls-tree", "HEAD", "inputs/fmriprep").split()[2]
    assert recorded == git(deriv, "rev-parse", "HEAD")
    assert "inputs/fmriprep" in git(ana, "show", "--stat", "--format=%s", "HEAD")


def test_init_names_further_inputs():
    from fairbig.commands.init import split_inputs
    from fairbig.errors import FairbigError

    assert split_inputs(("ria+file:///s#~raw", "fmriprep=ria+file:///d#~fp")) == (
        "ria+file:///s#~raw", [("fmriprep", "ria+file:///d#~fp")])
    with pytest.raises(FairbigError, match="a further input dataset needs a name"):
        split_inputs(("a", "/path/without/name"))


