"""BIDS datasets: inheritance, sessions, labels, required_files.

The planning tests read real git trees of BIDS-shaped datasets (plain git, fast); the
end-to-end test runs jobs on a generated DataLad dataset that annexes every file,
sidecars included, with a pipeline that lists what it sees.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.bids import (
    PARTICIPANTS,
    ColumnChange,
    Inheritance,
    Name,
    column_change,
    inheritable,
    refuse_bad_labels,
)
from fairbig.errors import FairbigError
from fairbig.jobtable import (
    BidsOptions,
    diff,
    filter_files,
    make_jobs,
    read_layout,
    row_table,
    select,
)

from .conftest import REPO, fairbig, load_generator

CMD = "sh code/p.sh {input_dir} {output_dir}"


gen = load_generator("bids-mini")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "x")
    return git(repo, "rev-parse", "HEAD")


class Tree:
    """An analysis repo whose ``inputs/data`` records a BIDS tree built with plain git."""

    def __init__(self, tmp: Path, subjects: dict[str, dict[str, list[str]]],
                 subdatasets: bool = False) -> None:
        self.root = tmp / "ana"
        self.inp = self.root / "inputs" / "data"
        self.inp.mkdir(parents=True)
        git(self.root, "init", "-q")
        git(self.inp, "init", "-q")
        for name, text in gen.TOP_FILES.items():
            (self.inp / name).write_text(text)
        (self.inp / "participants.tsv").write_text(
            "participant_id\tage\n" + "".join(gen.participant_row(s) for s in sorted(subjects)))
        for sub, sessions in subjects.items():
            if subdatasets:
                (self.inp / sub).mkdir()
                git(self.inp / sub, "init", "-q")
            gen.write_subject(self.inp, sub, sessions)
            if subdatasets:
                commit(self.inp / sub)
        self.record()

    def record(self) -> None:
        for sub in self.inp.glob("sub-*/.git"):
            if git(sub.parent, "status", "--porcelain"):  # a new commit only if changed
                commit(sub.parent)
        sha = commit(self.inp)
        git(self.root, "update-index", "--add", "--cacheinfo", f"160000,{sha},inputs/data")
        git(self.root, "commit", "-q", "-m", "inputs")

    def write(self, rel: str, text: str) -> None:
        (self.inp / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.inp / rel).write_text(text)
        self.record()

    def jobs(self, by: str = "session", layout: str = "auto", **opts):
        lay = read_layout(self.root, "inputs/data", layout, by, bids=BidsOptions(**opts))
        return lay, {j.job_id: j for j in make_jobs(lay.units, "inputs/data", "results", CMD)}


def states(jobs: dict) -> dict[str, str]:
    return {k: j.input_state for k, j in jobs.items()}


def test_bids_names_and_the_inheritance_rule():
    t1w = Name.parse("sub-01_ses-1_acq-mprage_T1w.nii.gz")
    assert t1w == Name(frozenset({"acq-mprage"}), "T1w")
    assert Name.parse("T1w.json").applies_to(t1w)
    assert Name.parse("acq-mprage_T1w.json").applies_to(t1w)
    assert not Name.parse("acq-other_T1w.json").applies_to(t1w)
    assert not Name.parse("dwi.json").applies_to(t1w)
    bold = Name.parse("sub-01_task-rest_bold.nii.gz")
    assert Name.parse("task-rest_events.tsv").applies_to(bold)
    assert not Name.parse("task-nback_events.tsv").applies_to(bold)
    assert Name.parse("README") is not None and Name.parse(".gitattributes") is None


def test_inheritance_cache_gives_each_subject_its_own_files():
    """The answer is cached per file shapes and names of the subject folder's files:
    subjects with different subject-level sidecars get different inputs, and subjects
    whose files are named alike each get their own paths, not the first one's."""
    rules = Inheritance(inheritable([("T1w.json", "t"), ("dwi.json", "d"), ("README", "r")]))

    def paths(sub: str, *own: str) -> list[str]:
        local = inheritable([(f"{sub}_{name}", sub) for name in own], f"{sub}/")
        return [i.path for i in rules.applying([f"anat/{sub}_ses-1_T1w.nii.gz"], local)]

    assert paths("sub-01", "T1w.json", "sessions.tsv") == [
        "T1w.json", "sub-01/sub-01_T1w.json", "sub-01/sub-01_sessions.tsv"]
    assert paths("sub-02", "dwi.json", "sessions.tsv") == [
        "T1w.json", "sub-02/sub-02_sessions.tsv"]
    assert paths("sub-03", "T1w.json", "sessions.tsv") == [
        "T1w.json", "sub-03/sub-03_T1w.json", "sub-03/sub-03_sessions.tsv"]
    assert paths("sub-04") == ["T1w.json"]


@pytest.mark.parametrize("subdatasets", [False, True], ids=["folders", "subdatasets"])
def test_each_job_owns_and_inherits_exactly_its_files(tmp_path: Path, subdatasets: bool):
    t = Tree(tmp_path, gen.DEFAULT, subdatasets)
    lay, jobs = t.jobs()
    assert lay.kind == "bids" and not lay.mixed and not lay.sessionless
    assert sorted(jobs) == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    fetched = ["dataset_description.json", "CHANGES", "README", "participants.json",
               "participants.tsv"]
    assert sorted(jobs["sub-01_ses-1"].inputs) == sorted(f"inputs/data/{p}" for p in [
        "sub-01/ses-1", "T1w.json", "acq-mprage_T1w.json", "task-rest_bold.json",
        "task-rest_events.tsv", "sub-01/sub-01_sessions.tsv", *fetched])
    assert sorted(jobs["sub-02_ses-1"].inputs) == sorted(f"inputs/data/{p}" for p in [
        "sub-02/ses-1", "dwi.json", "dwi.bval", "dwi.bvec", "task-rest_bold.json",
        "task-rest_events.tsv", "sub-02/sub-02_sessions.tsv", *fetched])
    assert jobs["sub-01_ses-2"].command == "sh code/p.sh inputs/data/sub-01/ses-2 results/" \
        "sub-01_ses-2"
    by_subject = t.jobs("subject")[1]
    assert sorted(by_subject["sub-01"].inputs)[:3] == [
        "inputs/data/CHANGES", "inputs/data/README", "inputs/data/T1w.json"]
    assert "inputs/data/dwi.bval" not in by_subject["sub-01"].inputs

    before, before_subject = states(jobs), states(by_subject)
    for rel in ("README", "CHANGES", "dataset_description.json", "participants.json"):
        t.write(rel, "edited\n")
    assert states(t.jobs()[1]) == before and states(t.jobs("subject")[1]) == before_subject

    t.write("T1w.json", '{"MagneticFieldStrength": 7}\n')
    after = states(t.jobs()[1])
    assert [j for j in after if after[j] != before[j]] == ["sub-01_ses-1", "sub-01_ses-2"]
    t.write("dwi.bval", "0 2000 2000\n")
    again = states(t.jobs()[1])
    assert [j for j in again if again[j] != after[j]] == ["sub-02_ses-1"]

    # a participant added: its row and its folder; nobody else's state moves
    participants = (t.inp / "participants.tsv").read_text()
    (t.inp / "participants.tsv").write_text(participants + gen.participant_row("sub-03"))
    if subdatasets:
        (t.inp / "sub-03").mkdir()
        git(t.inp / "sub-03", "init", "-q")
    gen.write_subject(t.inp, "sub-03", {"ses-1": ["anat"]})
    t.record()
    added = states(t.jobs()[1])
    assert {j: s for j, s in added.items() if j != "sub-03_ses-1"} == again
    t.write("participants.tsv", participants.replace("sub-02\t30", "sub-02\t31")
            + gen.participant_row("sub-03"))
    edited_row = states(t.jobs()[1])
    assert [j for j in edited_row if edited_row[j] != added[j]] == ["sub-02_ses-1"]


def with_column(text: str, name: str, value: str) -> str:
    """``text`` (a TSV) with a column ``name`` appended, ``value`` in every row."""
    return "".join(f"{line}\t{name if k == 0 else value}\n"
                   for k, line in enumerate(text.splitlines()))


def test_a_column_change_is_detected_and_an_added_one_can_be_ignored(tmp_path: Path):
    """Columns are part of every row's state; an added column left out with
    ignore_columns gives every job its old state byte for byte, a removed or renamed one
    cannot be left out (the old rows held it)."""
    t = Tree(tmp_path, gen.DEFAULT)
    before, first = states(t.jobs()[1]), git(t.inp, "rev-parse", "HEAD")
    old = (t.inp / "participants.tsv").read_text()
    t.write("participants.tsv", with_column(old, "handedness", "R"))
    added = git(t.inp, "rev-parse", "HEAD")
    new = row_table(t.root, "inputs/data", added)
    assert row_table(t.root, "inputs/data", first) == old and new.startswith(
        "participant_id\tage\thandedness\n")
    change = column_change(PARTICIPANTS, old, new)
    assert change == ColumnChange(PARTICIPANTS, ("handedness",), ())
    assert change.ignorable and change.describe() == "added: handedness"
    assert column_change(PARTICIPANTS, old, new, ["handedness"]) is None
    assert column_change(PARTICIPANTS, old, old) is None
    after = states(t.jobs()[1])
    assert all(after[j] != before[j] for j in before)
    assert states(t.jobs(ignore_columns=("handedness",))[1]) == before
    assert states(t.jobs("subject", ignore_columns=("handedness", "age"))[1]) != states(
        t.jobs("subject")[1])

    renamed = old.replace("participant_id\tage", "participant_id\tyears")
    change = column_change(PARTICIPANTS, old, renamed, ["age"])
    assert change == ColumnChange(PARTICIPANTS, ("years",), ("age",)) and not change.ignorable
    assert change.describe() == "added: years; removed: age"
    reordered = column_change(PARTICIPANTS, new, "participant_id\thandedness\tage\n")
    assert reordered is not None and reordered.describe() == "reordered"
    # an annexed table is read from the annex (end to end below); one whose content
    # cannot be got is refused in one line, never taken as a table without rows
    (t.inp / "participants.tsv").unlink()
    (t.inp / "participants.tsv").symlink_to(".git/annex/objects/x/MD5E-s1--x.tsv")
    t.record()
    with pytest.raises(FairbigError) as err:
        row_table(t.root, "inputs/data", git(t.inp, "rev-parse", "HEAD"))
    assert str(err.value).startswith(
        f"participants.tsv is annexed in {t.inp} and its content (MD5E-s1--x.tsv) could not "
        "be got (") and str(err.value).endswith(
        "); make it available (datalad get), or keep the table in git")


def test_jobs_that_never_ran_are_new_not_changed(tmp_path: Path):
    t = Tree(tmp_path, gen.DEFAULT)
    jobs = list(t.jobs()[1].values())
    t.write("T1w.json", "{}\n")
    replanned = list(t.jobs()[1].values())
    d = diff(replanned, {"sub-02_ses-1": jobs[2].input_state,
                         "sub-01_ses-1": jobs[0].input_state})
    assert d.new == ["sub-01_ses-2"] and d.changed == ["sub-01_ses-1"]
    assert d.done == ["sub-02_ses-1"]


@pytest.mark.parametrize("subdatasets", [False, True], ids=["folders", "subdatasets"])
def test_sessionless_and_mixed_datasets(tmp_path: Path, subdatasets: bool):
    mixed = {"sub-01": {"ses-1": ["anat"], "ses-2": ["anat"]}, "sub-02": {"": ["anat"]}}
    t = Tree(tmp_path, mixed, subdatasets)
    lay, jobs = t.jobs("session")
    assert lay.kind == "bids"
    assert sorted(jobs) == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    assert lay.mixed and lay.sessionless == ["sub-02"]
    assert jobs["sub-02"].inputs[0] == "inputs/data/sub-02"
    lay, jobs = t.jobs("subject")
    assert sorted(jobs) == ["sub-01", "sub-02"] and not lay.mixed and not lay.sessionless

    none = Tree(tmp_path / "none", {"sub-01": {"": ["anat"]}, "sub-02": {"": ["func"]}},
                subdatasets)
    lay, jobs = none.jobs("session")
    assert sorted(jobs) == ["sub-01", "sub-02"]
    assert lay.sessionless == ["sub-01", "sub-02"] and not lay.mixed


def test_bids_app_label_placeholders(tmp_path: Path):
    t = Tree(tmp_path, gen.DEFAULT)
    lay = read_layout(t.root, "inputs/data", "bids", "session")
    app = "app {input_dir} {output_dir} participant --participant-label {subject_label} " \
          "--session-id {session_label} --bids-filter-file {bids_filter_file}"
    jobs = {j.job_id: j for j in make_jobs(lay.units, "inputs/data", "results", app)}
    assert jobs["sub-01_ses-2"].command == ("app inputs/data/sub-01/ses-2 results/sub-01_ses-2 "
                                            "participant --participant-label 01 --session-id 2"
                                            " --bids-filter-file .fairbig/bids-filters/ses-2.json")
    files = filter_files(list(jobs.values()), app)
    assert sorted(files) == [".fairbig/bids-filters/ses-1.json", ".fairbig/bids-filters/ses-2.json"]
    assert json.loads(files[".fairbig/bids-filters/ses-2.json"])["t1w"] == {"session": "2"}
    assert filter_files(list(jobs.values()), CMD) == {}
    assert cfgmod.validate(cfgmod.Config(command=app)) == [
        p for p in cfgmod.validate(cfgmod.Config(command="x")) if "command" not in p]


def test_subject_subdatasets_are_bids_not_ukb(tmp_path: Path):
    t = Tree(tmp_path, gen.DEFAULT, subdatasets=True)
    lay, jobs = t.jobs("session", layout="auto")
    assert lay.kind == "bids"
    assert jobs["sub-01_ses-2"].command.startswith("sh code/p.sh inputs/data/sub-01/ses-2 ")


def test_emptyroom_left_out_unless_asked(tmp_path: Path):
    t = Tree(tmp_path, {**gen.DEFAULT, "sub-emptyroom": {"ses-20261203": ["anat"]}})
    lay, jobs = t.jobs()
    assert "sub-emptyroom_ses-20261203" not in jobs
    assert "sub-emptyroom" in lay.skipped
    lay, jobs = t.jobs(emptyroom=True)
    assert "sub-emptyroom_ses-20261203" in jobs and not lay.skipped


def test_invalid_labels_refused_naming_them_until_excluded(tmp_path: Path):
    t = Tree(tmp_path, {**gen.DEFAULT, "sub-12_x": {"": ["anat"]},
                        "sub-03": {"ses-pre_op": ["anat"]}})
    units = t.jobs()[0].units
    with pytest.raises(FairbigError) as err:
        refuse_bad_labels((u.subject, u.session) for u in units)
    assert err.value.message == ("2 folder(s) of the input dataset are no valid BIDS labels "
                              "(letters and digits only after sub-/ses-): 'ses-pre_op', "
                              "'sub-12_x'")
    assert err.value.hint.startswith("rename them, or leave them out with --exclude ")
    refuse_bad_labels((u.subject, u.session)
                      for u in select(units, (), ("sub-12_x", "sub-03_ses-pre_op")))


def test_required_files_skip_jobs_with_a_reason(tmp_path: Path):
    t = Tree(tmp_path, gen.DEFAULT)
    lay, jobs = t.jobs(required_files=("anat/*_T1w.nii*",))
    assert sorted(jobs) == ["sub-01_ses-1", "sub-01_ses-2"]
    assert lay.skipped == {"sub-02_ses-1": "no file matches required_files anat/*_T1w.nii*"}
    lay, jobs = t.jobs("subject", required_files=("anat/*_T1w.nii*",))
    assert sorted(jobs) == ["sub-01"] and list(lay.skipped) == ["sub-02"]


# ---------------------------------------------------------------- end to end (DataLad)

DESCRIPTIVE = ["CHANGES", "README", "dataset_description.json", "participants.json",
               "participants.tsv"]


APP = ("sh code/bids_app.sh inputs/data {output_dir} participant --participant-label "
       "{subject_label} --session-label {session_label} --bids-filter-file {bids_filter_file}")


def seen(ana: Path, job: str, what: str = "seen") -> set[str]:
    """What the BIDS-App-shaped pipeline saw with content (``seen``) or opened (``read``),
    from the job's log (git-tracked ``.gitattributes`` files aside: no BIDS files)."""
    log = (ana / ".fairbig" / "work" / "logs" / f"{job}.log").read_text()
    return {line.removeprefix(f"{what}: ") for line in log.splitlines()
            if line.startswith(f"{what}: ") and not line.endswith(".gitattributes")}


@pytest.fixture(scope="module")
def bids_run(tmp_path_factory, image, lab_key) -> dict:
    """A BIDS dataset annexing every file, planned by session and run with a BIDS-App-
    shaped pipeline (its session's filter file) that lists what it sees and reads."""
    base = tmp_path_factory.mktemp("bids")
    store = f"ria+file://{base}/input-store"
    gen.generate(base / "bids", store_url=store)
    ana, plan = run_by_session(base, image, lab_key, APP,
                               REPO / "examples" / "bids-mini" / "code" / "bids_app.sh",
                               "--input", f"{store}#~bids")
    return {"ana": ana, "src": base / "bids", "plan": plan}


def run_by_session(base: Path, image: Path, lab_key: str, command: str, code: Path,
                   *inputs: str) -> tuple[Path, dict]:
    """``base/analysis`` made of ``inputs`` (``--input`` options), planned by session and
    run on the local backend; the plan's ``--json``."""
    ana = base / "analysis"
    fairbig("init", str(ana), *inputs, "--container", str(image), "--command", command,
            "--by", "session", "--input-store", f"{base}/analysis-in",
            "--output-store", f"{base}/analysis-out", "--encrypt-to", lab_key,
            "--code", str(code))
    plan = json.loads(fairbig("plan", "--json", cwd=ana).stdout)
    fairbig("submit", "-j", "2", cwd=ana)
    return ana, plan


@pytest.mark.slow
def test_every_inherited_file_is_present_in_the_job(bids_run):
    ana, plan = bids_run["ana"], bids_run["plan"]
    assert plan["layout"] == "bids" and plan["jobs"] == 3
    assert plan["new"] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    assert plan["sessionless"] == [] and plan["mixed"] is False
    assert seen(ana, "sub-01_ses-1") == {*DESCRIPTIVE, "T1w.json", "acq-mprage_T1w.json",
                                         "task-rest_bold.json", "task-rest_events.tsv",
                                         "sub-01/sub-01_sessions.tsv",
                                         "sub-01/ses-1/sub-01_ses-1_scans.tsv",
                                         "sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_T1w.nii.gz",
                                         "sub-01/ses-1/func/sub-01_ses-1_task-rest_bold.nii.gz"}
    assert seen(ana, "sub-02_ses-1") == {*DESCRIPTIVE, "dwi.json", "dwi.bval", "dwi.bvec",
                                         "task-rest_bold.json", "task-rest_events.tsv",
                                         "sub-02/sub-02_sessions.tsv",
                                         "sub-02/ses-1/sub-02_ses-1_scans.tsv",
                                         "sub-02/ses-1/dwi/sub-02_ses-1_dwi.nii.gz",
                                         "sub-02/ses-1/func/sub-02_ses-1_task-rest_bold.nii.gz"}
    merges_and_reruns_identical(ana, plan["new"], "sub-02_ses-1")


def merges_and_reruns_identical(ana: Path, new: list[str], job: str) -> None:
    """``merge`` merges exactly the ``new`` jobs, ``rerun`` of ``job`` is IDENTICAL."""
    merged = json.loads(fairbig("merge", "--json", cwd=ana).stdout)["merged"]
    assert merged == new
    rerun = json.loads(fairbig("rerun", job, "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"] and set(rerun["files"].values()) == {"identical"}, rerun


@pytest.mark.slow
def test_bids_app_reads_only_its_session_through_its_filter_file(bids_run):
    ana = bids_run["ana"]
    log = (ana / ".fairbig" / "work" / "logs" / "sub-01_ses-2.log").read_text()
    assert 'filter: {"bold":{"session":"2"},"flair":{"session":"2"}' in log
    assert seen(ana, "sub-01_ses-2", "read") == {
        "sub-01/ses-2/sub-01_ses-2_scans.tsv",
        "sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_T1w.nii.gz",
        "sub-01/ses-2/func/sub-01_ses-2_task-rest_bold.nii.gz"}
    rerun = json.loads(fairbig("rerun", "sub-01_ses-2", "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["ok"] and set(rerun["files"].values()) == {"identical"}, rerun


@pytest.mark.slow
def test_only_what_a_job_inherits_or_owns_changes_it(bids_run):
    ana, src = bids_run["ana"], bids_run["src"]

    def replan() -> dict:
        return json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)

    all_jobs = ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    gen.edit(src, {"README": "a better description\n", "CHANGES": "1.0.1\n"}, "describe")
    out = replan()
    assert out["input_updated"] and out["done"] == all_jobs and out["changed"] == []
    gen.edit(src, {"T1w.json": '{"MagneticFieldStrength": 7}\n'}, "field strength")
    out = replan()
    assert out["changed"] == ["sub-01_ses-1", "sub-01_ses-2"] and out["done"] == ["sub-02_ses-1"]
    participants = (src / "participants.tsv").read_text()
    gen.write_subject(src, "sub-03", {"ses-1": ["anat"]})
    gen.edit(src, {"participants.tsv": participants + gen.participant_row("sub-03")},
             "sub-03 added")
    out = replan()
    assert out["new"] == ["sub-03_ses-1"]
    assert out["changed"] == ["sub-01_ses-1", "sub-01_ses-2"] and out["done"] == ["sub-02_ses-1"]
    # the table is annexed here (every file is): its rows are read from the annex, so
    # sub-02's edited row changes sub-02's job only (read as a link, it changed none)
    assert (src / "participants.tsv").is_symlink()
    edited = (src / "participants.tsv").read_text().replace(
        gen.participant_row("sub-02"), gen.participant_row("sub-02", age=31))
    gen.edit(src, {"participants.tsv": edited}, "sub-02's age")
    out = replan()
    assert out["changed"] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1"]
    assert out["new"] == ["sub-03_ses-1"] and out["done"] == []


@pytest.mark.slow
def test_a_new_column_is_refused_once_with_a_choice(bids_run):
    """Adding a column to participants.tsv (kept in git, as BIDS text files usually are)
    is refused naming it and both ways out; accepting changes the jobs, ignoring the
    column keeps every job done. Runs after the test above (same dataset)."""
    ana, src = bids_run["ana"], bids_run["src"]
    text = (src / "participants.tsv").read_text()
    attributes = (src / ".gitattributes").read_text()
    gen.edit(src, {".gitattributes": f"{attributes}participants.tsv annex.largefiles=nothing\n",
                   "participants.tsv": text}, "participants.tsv in git")
    assert git(src, "ls-files", "-s", "participants.tsv").startswith("100644")
    fairbig("plan", "--update", cwd=ana)
    fairbig("submit", "-j", "2", cwd=ana)
    everyone = ["sub-01_ses-1", "sub-01_ses-2", "sub-02_ses-1", "sub-03_ses-1"]
    assert json.loads(fairbig("plan", "--json", cwd=ana).stdout)["done"] == everyone

    gen.edit(src, {"participants.tsv": with_column(text, "handedness", "R")}, "handedness")
    head = git(ana, "rev-parse", "HEAD")
    refused = fairbig("plan", "--update", cwd=ana, check=False)
    assert refused.returncode != 0 and refused.stderr.strip().splitlines()[-1] == (
        "fairbig: error: participants.tsv's columns changed (added: handedness): that changes "
        "4 job(s) with results (re-plan them with 'fairbig plan --update --columns-changed "
        "rerun', or keep their results with inputs.ignore_columns: [handedness] in "
        "fairbig.yaml; nothing was planned)")
    assert git(ana, "rev-parse", "HEAD") == head

    rerun = json.loads(fairbig("plan", "--update", "--columns-changed", "rerun", "--dry-run",
                               "--json", cwd=ana).stdout)
    assert rerun["changed"] == everyone and rerun["columns"] == [
        {"table": "participants.tsv", "added": ["handedness"], "removed": [], "changed": 4}]
    said = fairbig("plan", "--update", "--columns-changed", "rerun", "--dry-run", cwd=ana)
    assert "  participants.tsv's columns changed: 4 job(s) changed by it" in said.stdout

    cfgmod.update_file(ana / cfgmod.CONFIG_NAME,
                       {"inputs.ignore_columns": cfgmod.flow_list(["handedness"])})
    git(ana, "commit", "-q", "-m", "ignore handedness", cfgmod.CONFIG_NAME)
    kept = json.loads(fairbig("plan", "--update", "--json", cwd=ana).stdout)
    assert kept["input_updated"] and kept["done"] == everyone and kept["changed"] == []
    assert kept["columns"] == []


def test_bids_settings_are_validated():
    cfg = cfgmod.from_partial("inputs:\n  bids_emptyroom: 'yes'\n  required_files: ['/abs']\n"
                              "  ignore_columns: [participant_id, '']\n")
    problems = cfgmod.validate(cfg)
    assert "inputs.bids_emptyroom 'yes' must be true or false" in problems
    assert "inputs.required_files: '/abs' must be a pattern relative to the job's folder" \
        in problems
    assert [p for p in problems if p.startswith("inputs.ignore_columns")] == [
        f"inputs.ignore_columns: {c!r} must be a column name of participants.tsv (not "
        "participant_id, its key)" for c in ("participant_id", "")]
