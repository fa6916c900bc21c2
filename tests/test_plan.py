"""Planning from git trees: layouts, determinism, incrementality, hostile IDs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from fairbig.errors import FairbigError
from fairbig.plan import HEADER, diff, make_jobs, parse_tsv, read_layout, render_tsv, select

CMD = "sh code/p.sh {input_dir} {output_dir} {subject} {session}"
FAKE = "1" * 40


def git(repo: Path, *args: str, input: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, input=input).stdout.strip()


def commit_all(repo: Path, msg: str = "x") -> str:
    git(repo, "commit", "-q", "--allow-empty", "-m", msg)
    return git(repo, "rev-parse", "HEAD")


def make_super(tmp: Path, build_input) -> Path:
    """An analysis repo whose inputs/data is a gitlink to a repo built by ``build_input``."""
    root = tmp / "ana"
    inp = root / "inputs" / "data"
    inp.mkdir(parents=True)
    git(root, "init", "-q")
    git(inp, "init", "-q")
    build_input(inp)
    sha = commit_all(inp)
    git(root, "update-index", "--add", "--cacheinfo", f"160000,{sha},inputs/data")
    git(root, "commit", "-q", "-m", "inputs")
    return root


def ukb_like(subjects: list[str], shas: dict[str, str] | None = None):
    def build(inp: Path) -> None:
        for s in subjects:
            sha = (shas or {}).get(s, FAKE)
            git(inp, "update-index", "--add", "--cacheinfo", f"160000,{sha},{s}")
    return build


def bids_like(layout: dict[str, list[str]]):
    def build(inp: Path) -> None:
        (inp / "dataset_description.json").write_text("{}")
        for sub, sessions in layout.items():
            for ses in sessions or [""]:
                d = inp / sub / ses / "anat"
                d.mkdir(parents=True)
                (d / "T1w.nii.gz").write_text(f"{sub}{ses}")
        git(inp, "add", "-A")
    return build


def test_ukb_layout_subject_jobs(tmp_path: Path):
    root = make_super(tmp_path, ukb_like(["2000001", "1000001"]))
    layout = read_layout(root, "inputs/data", "auto", "subject")
    assert layout.kind == "ukb"
    jobs = make_jobs(layout.units, "inputs/data", "results", CMD)
    assert [j.job_id for j in jobs] == ["1000001", "2000001"]
    j = jobs[0]
    assert j.inputs == ("inputs/data/1000001",)
    assert j.outputs == ("results/1000001",)
    assert j.input_state == FAKE
    assert j.command == "sh code/p.sh inputs/data/1000001 results/1000001 1000001 "


def test_bids_layout_by_session(tmp_path: Path):
    root = make_super(tmp_path, bids_like({"sub-02": ["ses-1", "ses-2"], "sub-01": []}))
    layout = read_layout(root, "inputs/data", "auto", "session")
    assert layout.kind == "bids"
    jobs = make_jobs(layout.units, "inputs/data", "results", CMD)
    assert [j.job_id for j in jobs] == ["sub-02_ses-1", "sub-02_ses-2"]
    assert jobs[0].inputs == ("inputs/data/sub-02/ses-1", "inputs/data/dataset_description.json")
    by_subject = make_jobs(read_layout(root, "inputs/data", "bids", "subject").units,
                           "inputs/data", "results", CMD)
    assert [j.job_id for j in by_subject] == ["sub-01", "sub-02"]
    assert by_subject[0].inputs[0] == "inputs/data/sub-01"


def test_plan_is_deterministic_and_roundtrips(tmp_path: Path):
    root = make_super(tmp_path, ukb_like([str(1000000 + i) for i in range(50)]))
    texts = {render_tsv(make_jobs(read_layout(root, "inputs/data", "ukb", "subject").units,
                                  "inputs/data", "results", CMD)) for _ in range(3)}
    assert len(texts) == 1
    text = texts.pop()
    assert render_tsv(parse_tsv(text)) == text


def test_incremental_diff(tmp_path: Path):
    root = make_super(tmp_path, ukb_like(["1000001", "1000002", "1000003"],
                                         {"1000002": "2" * 40}))
    jobs = make_jobs(read_layout(root, "inputs/data", "ukb", "subject").units,
                     "inputs/data", "results", CMD)
    d = diff(jobs, {"1000001": FAKE, "1000002": FAKE})
    assert d.done == ["1000001"] and d.changed == ["1000002"] and d.new == ["1000003"]
    assert d.todo == ["1000003", "1000002"]
    again = diff(jobs, {}, {"1000001": FAKE, "1000002": FAKE})
    assert again.changed == ["1000002"] and again.new == ["1000001", "1000003"]


@pytest.mark.parametrize("bad", ["sub 01", "a;b", "$(touch x)", "-rf", "a..b", "`id`",
                                 "ü1", "x\ny", "a'b"])
def test_hostile_ids_refused_with_one_line(tmp_path: Path, bad: str):
    root = make_super(tmp_path, ukb_like(["1000001", bad]))
    layout = read_layout(root, "inputs/data", "ukb", "subject")
    with pytest.raises(FairbigError) as exc:
        make_jobs(layout.units, "inputs/data", "results", CMD)
    assert "unsafe for job names" in str(exc.value) and "--exclude" in str(exc.value)
    assert "\n" not in str(exc.value).replace(repr(bad), "")
    ok = make_jobs(select(layout.units, set(), {bad}), "inputs/data", "results", CMD)
    assert [j.job_id for j in ok] == ["1000001"]


def test_only_and_exclude(tmp_path: Path):
    root = make_super(tmp_path, ukb_like(["1000001", "1000002", "1000003"]))
    units = read_layout(root, "inputs/data", "ukb", "subject").units
    assert [u.subject for u in select(units, {"1000002"}, set())] == ["1000002"]
    assert [u.subject for u in select(units, set(), {"1000002"})] == ["1000001", "1000003"]


def test_missing_input_subdataset(tmp_path: Path):
    root = tmp_path / "ana"
    root.mkdir()
    git(root, "init", "-q")
    commit_all(root)
    with pytest.raises(FairbigError, match="is not a subdataset"):
        read_layout(root, "inputs/data", "auto", "subject")


@pytest.mark.parametrize(("row", "message"), [
    ("1000001\t1000001\t\t" + "a" * 40 + "\tinputs/data/1000001\t../../home\tsh x",
     "line 2 of the plan file has a path '../../home' that must not contain"),
    ("1000001\t1000001\t\t" + "a" * 40 + "\tinputs/data/1000001\t/etc\tsh x",
     "line 2 of the plan file has a path '/etc' that must be a relative path"),
    ("-rf\t1000001\t\t" + "a" * 40 + "\tinputs/data/1000001\tresults/-rf\tsh x",
     "line 2 of the plan file has a job ID '-rf' that must be letters"),
    ("1000001\t1000001", "line 2 of the plan file has 2 fields, not 7"),
])
def test_tampered_plan_row_refused(row: str, message: str):
    with pytest.raises(FairbigError) as exc:
        parse_tsv("\t".join(HEADER) + "\n" + row + "\n")
    assert message in str(exc.value)
