"""Planning from git trees: layouts, determinism, incrementality, hostile IDs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.errors import FairbigError
from fairbig.gittree import symlinked_outputs
from fairbig.jobtable import (
    HEADER,
    PLACEHOLDER_RE,
    PLACEHOLDERS,
    command_template,
    diff,
    make_jobs,
    nearest,
    parse_tsv,
    read_layout,
    refuse_unknown,
    render_tsv,
    select,
)

from .conftest import BIN, fairbig, init_analysis, load_generator

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
    # sub-01 has no sessions: a subject job, not left out
    assert [j.job_id for j in jobs] == ["sub-01", "sub-02_ses-1", "sub-02_ses-2"]
    assert layout.sessionless == ["sub-01"] and layout.mixed
    assert jobs[1].inputs == ("inputs/data/sub-02/ses-1", "inputs/data/dataset_description.json")
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


def test_command_template_fills_placeholders_and_keeps_every_other_brace():
    cmd = "run {job} ${HOME} {inputs} {{x}} {subject_label}} {bids_filter_file}{"
    values = {p: f"<{p}>" for p in PLACEHOLDERS}
    filled = command_template(cmd).format_map(values)
    assert filled == "run <job> ${HOME} {inputs} {{x}} <subject_label>} <bids_filter_file>{"
    assert filled == PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], cmd)


def test_incremental_diff(tmp_path: Path):
    root = make_super(tmp_path, ukb_like(["1000001", "1000002", "1000003"],
                                         {"1000002": "2" * 40}))
    jobs = make_jobs(read_layout(root, "inputs/data", "ukb", "subject").units,
                     "inputs/data", "results", CMD)
    d = diff(jobs, {"1000001": FAKE, "1000002": FAKE})
    assert d.done == ["1000001"] and d.changed == ["1000002"] and d.new == ["1000003"]
    assert d.todo == ["1000003", "1000002"]
    never_ran = diff(jobs, {})  # planned before with another state, but never run: new
    assert never_ran.changed == [] and never_ran.new == ["1000001", "1000002", "1000003"]


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
    # paths are checked once per plan: a good row first must not let a bad one through
    ("1000001\t1000001\t\t" + "a" * 40 + "\tinputs/data/1000001,code\tresults/1000001\tsh x\n"
     "1000002\t1000002\t\t" + "a" * 40 + "\tinputs/data/1000002,code/..\tresults/1000002\tsh x",
     "line 3 of the plan file has a path 'code/..' that must not contain"),
])
def test_tampered_plan_row_refused(row: str, message: str):
    with pytest.raises(FairbigError) as exc:
        parse_tsv("\t".join(HEADER) + "\n" + row + "\n")
    assert message in str(exc.value)


# ------------------------------------------------ the plan command on real datasets

def test_nearest_id_suggests_the_sub_prefix_and_close_typos(tmp_path: Path):
    root = make_super(tmp_path, bids_like({"sub-01": [], "sub-02": [], "sub-10": []}))
    units = read_layout(root, "inputs/data", "bids", "subject").units
    assert [nearest(x, units) for x in ("01", "sub-1O", "nosuch")] == ["sub-01", "sub-10", ""]
    with pytest.raises(FairbigError) as exc:
        refuse_unknown("--only", ["01", "sub-02", "zzz"], units)
    assert str(exc.value) == (
        "--only names 2 ID(s) that are no subject or job of the input dataset: '01' (did you "
        "mean 'sub-01'?), 'zzz' (give subject IDs or job IDs as 'fairbig plan --dry-run --json'"
        " lists them; nothing was planned)")


def test_outputs_through_committed_symlinks_found_in_one_pass(tmp_path: Path):
    """A committed link on an output's way is found; an annexed output file is not."""
    repo = tmp_path / "r"
    (repo / "results" / "a").mkdir(parents=True)
    (repo / "results" / "a" / "keep").write_text("x")
    (repo / "results" / "b").symlink_to("/etc")
    (repo / "code").mkdir()
    (repo / "code" / "escape").symlink_to(tmp_path)
    (repo / "results" / "f").symlink_to(".git/annex/objects/Xx/Yy/MD5E-s1--x/MD5E-s1--x")
    git(tmp_path, "init", "-q", str(repo))
    git(repo, "add", "-A")
    commit_all(repo)
    found = symlinked_outputs(repo / ".git", "HEAD", ["results/a", "results/b",
                                                      "code/escape/x", "results/f", "new/x"])
    assert found == [("results/b", "results/b"), ("code/escape/x", "code/escape")]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout


def snapshot(ana: Path) -> dict:
    """All a refused or failed plan must leave byte-identical: HEAD, index and work tree
    of the analysis dataset, the input dataset's checkout, the plan and the settings."""
    return {"head": _git(ana, "rev-parse", "HEAD"),
            "status": _git(ana, "status", "--porcelain", "--ignore-submodules=none"),
            "inputs": _git(ana / "inputs" / "data", "rev-parse", "HEAD"),
            "inputs_status": _git(ana / "inputs" / "data", "status", "--porcelain"),
            "files": {p: (ana / p).read_bytes() for p in (".fairbig/plan.tsv", "fairbig.yaml")},
            "log": _git(ana, "log", "--format=%H %s")}


def refused(ana: Path, *args: str, cwd: Path | None = None) -> str:
    """The one error line of a refused ``fairbig plan``; asserts nothing changed."""
    before = snapshot(ana)
    proc = fairbig("-C", str(ana), "plan", *args, cwd=cwd or ana, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("fairbig: fetching")]
    assert len(lines) == 1, proc.stderr
    assert snapshot(ana) == before
    return lines[0]


def states_of(ana: Path) -> dict[str, str]:
    """Input state per job of the committed plan."""
    return {j.job_id: j.input_state for j in parse_tsv((ana / ".fairbig/plan.tsv").read_text())}


def plan_json(ana: Path, *args: str, cwd: Path | None = None) -> dict:
    return json.loads(fairbig("plan", "--json", *args, cwd=cwd or ana).stdout)


@pytest.fixture(scope="module")
def own_input(tmp_path_factory) -> dict:
    """An input dataset of this module's own: its tests change it upstream."""
    base = tmp_path_factory.mktemp("planin")
    store = f"ria+file://{base}/input-store"
    ids = load_generator().generate(base / "ukb", 4, 11, store)
    return {"path": base / "ukb", "store": store, "url": f"{store}#~ukb", "ids": ids,
            "base": base}


@pytest.fixture(scope="module")
def ana(tmp_path_factory, own_input, image, lab_key) -> Path:
    path = init_analysis(tmp_path_factory.mktemp("plan"), own_input, image, lab_key)
    assert plan_json(path)["jobs"] == 4
    return path


@pytest.mark.slow
def test_unknown_ids_refused_in_one_line_and_nothing_written(ana, own_input, tmp_path):
    first = own_input["ids"][0]
    typo = first[:-1] + str((int(first[-1]) + 1) % 10)
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{own_input['ids'][1]}\n{typo}\n")
    hint = ("(give subject IDs or job IDs as 'fairbig plan --dry-run --json' lists them; "
            "nothing was planned)")
    start = "fairbig: error: --only names 1 ID(s) that are no subject or job of the input dataset"
    assert refused(ana, "--only", "nosuch") == f"{start}: 'nosuch' {hint}"
    assert refused(ana, "--only", f"@{ids}") == (
        f"{start}: '{typo}' (did you mean '{first}'?) {hint}")
    assert refused(ana, "--exclude", "nosuch").startswith(
        "fairbig: error: --exclude names 1 ID(s) that are no subject or job")
    missing = tmp_path / "nosuch.txt"
    assert refused(ana, "--only", f"@{missing}") == (
        f"fairbig: error: ID file {missing} does not exist (give an existing file after '@',"
        " one ID per line)")
    (tmp_path / "empty.txt").write_text("\n# no IDs\n")
    assert refused(ana, "--only", "@empty.txt", cwd=tmp_path) == (
        f"fairbig: error: ID file {tmp_path / 'empty.txt'} holds no IDs (write one subject or "
        "job ID per line)")
    assert refused(ana, *[a for i in own_input["ids"] for a in ("--exclude", i)]) == (
        "fairbig: error: this plan would have no jobs (selection: by subject, all subjects, "
        f"excluding {' '.join(own_input['ids'])}) (change --only/--exclude (--all plans every "
        "subject), or pass --allow-shrink for an empty plan; nothing was planned)")


@pytest.mark.slow
def test_update_dry_run_and_dash_c_from_elsewhere(ana, own_input, tmp_path):
    """Issue 16: ``-C DIR plan --update`` from outside DIR failed and left inputs/data
    moved; ``--dry-run`` moved it and committed too."""
    gen = load_generator()
    victim = own_input["ids"][1]
    record = "20252_2_0.zip"
    gen.replace_record(own_input["path"], victim, record,
                       gen.make_record(record, victim, seed=99), "update")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = snapshot(ana)
    planned = states_of(ana)
    dry = json.loads(fairbig("-C", str(ana), "plan", "--update", "--dry-run", "--json",
                             cwd=elsewhere).stdout)
    # no job of this analysis ever ran: the victim's new input makes it new, not changed
    assert victim in dry["new"] and dry["changed"] == []
    assert dry["input_updated"] and not dry["committed"]
    assert snapshot(ana) == before
    text = fairbig("-C", str(ana), "plan", "--update", "--dry-run", cwd=elsewhere).stdout
    assert "dry run: nothing written" in text and "new: " in text
    assert snapshot(ana) == before
    out = json.loads(fairbig("-C", str(ana), "plan", "--update", "--json", cwd=elsewhere).stdout)
    assert out["committed"] and out["changed"] == []
    now = states_of(ana)
    assert [j for j in now if now[j] != planned[j]] == [victim]
    assert _git(ana, "status", "--porcelain", "--ignore-submodules=none") == ""
    assert _git(ana, "log", "-1", "--format=%s") == (
        f"fairbig: plan of 4 jobs (input dataset updated to {out['input_commit'][:12]})\n")
    assert _git(ana, "rev-parse", "HEAD:inputs/data").strip() == out["input_commit"]
    assert _git(ana / "inputs" / "data", "rev-parse", "HEAD").strip() == out["input_commit"]
    again = json.loads(fairbig("-C", str(ana), "plan", "--update", "--json",
                               cwd=elsewhere).stdout)
    assert not again["committed"] and not again["input_updated"]


@pytest.mark.slow
def test_failed_update_leaves_no_commit_and_inputs_where_they_were(ana, own_input):
    gen = load_generator()
    victim = own_input["ids"][2]
    record = "20252_2_0.zip"
    gen.replace_record(own_input["path"], victim, record,
                       gen.make_record(record, victim, seed=98), "update")
    lock = ana / ".git" / "index.lock"   # another git command at work: the commit fails
    lock.touch()
    try:
        before = snapshot(ana)
        proc = fairbig("plan", "--update", cwd=ana, check=False)
    finally:
        lock.unlink()
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("fairbig: error: datalad save")
    assert snapshot(ana) == before
    planned = states_of(ana)
    assert plan_json(ana, "--update")["committed"]
    now = states_of(ana)
    assert [j for j in now if now[j] != planned[j]] == [victim]


@pytest.mark.slow
def test_selection_is_kept_and_shown(ana, own_input):
    out = plan_json(ana, "--by", "session")
    assert out["selection"] == {"by": "session", "only": [], "exclude": []} and out["committed"]
    assert sorted(out["dropped"]) == sorted(own_input["ids"])
    text = fairbig("plan", cwd=ana).stdout     # a plain plan plans the same jobs
    assert "plan unchanged" in text
    assert ("  selection: by session, all subjects (kept in fairbig.yaml; change with --by/"
            "--only/--exclude, --all for every subject)") in text.splitlines()
    keep = own_input["ids"][:2]
    out = plan_json(ana, "--by", "subject", *[a for i in keep for a in ("--only", i)])
    assert out["jobs"] == 2 and out["selection"]["only"] == keep
    cfg = cfgmod.load(ana / "fairbig.yaml")
    assert (cfg.inputs.by, cfg.inputs.only, cfg.inputs.exclude) == ("subject", keep, [])
    assert not plan_json(ana)["committed"]
    assert plan_json(ana, "--all", "--exclude", own_input["ids"][3])["jobs"] == 3
    assert plan_json(ana)["jobs"] == 3
    assert plan_json(ana, "--all")["jobs"] == 4
    assert _git(ana, "status", "--porcelain") == ""


@pytest.mark.slow
def test_plan_dropping_jobs_with_results_is_refused(ana, own_input):
    ids = own_input["ids"]
    fairbig("submit", "--only", ids[0], cwd=ana)
    fairbig("merge", cwd=ana)
    fairbig("submit", "--only", ids[1], cwd=ana)       # done, not merged
    assert refused(ana, "--only", ids[2]) == (
        f"fairbig: error: this plan would drop 2 job(s) whose results are in the output "
        f"store: {ids[0]}, {ids[1]} (keep them in --only/--exclude, or pass --allow-shrink to "
        "drop them; nothing was planned)")
    assert refused(ana, "--by", "session").startswith(
        f"fairbig: error: this plan would drop 2 job(s) whose results are in the output "
        f"store: {ids[0]}, {ids[1]} (")
    out = plan_json(ana, "--exclude", ids[0], "--allow-shrink")
    assert out["dropped"] == [ids[0]] and out["jobs"] == 3 and out["committed"]


@pytest.mark.slow
def test_input_subject_removed_upstream_is_refused_then_allowed(ana, own_input):
    gone = own_input["ids"][1]                        # done (previous test)
    plan_json(ana, "--all")
    sh = {"check": True, "capture_output": True}
    subprocess.run([str(BIN / "datalad"), "remove", "-d", str(own_input["path"]),
                    "--reckless", "kill", str(own_input["path"] / gone)], **sh)
    subprocess.run([str(BIN / "datalad"), "push", "-d", str(own_input["path"]),
                    "--to", "input-store"], **sh)
    assert refused(ana, "--update") == (
        f"fairbig: error: this plan would drop 1 job(s) whose results are in the output "
        f"store: {gone} (keep them in --only/--exclude, or pass --allow-shrink to drop "
        "them; nothing was planned)")
    out = plan_json(ana, "--update", "--allow-shrink")
    assert out["dropped"] == [gone] and out["input_updated"] and out["committed"]


def answer(proc: subprocess.CompletedProcess) -> object:
    """A command's JSON answer without its timings."""
    data = json.loads(proc.stdout) if proc.stdout.strip() else None
    return {k: v for k, v in data.items() if k != "seconds"} if isinstance(data, dict) else data


@pytest.mark.slow
@pytest.mark.long
def test_every_command_with_dash_c_answers_as_inside(ana, own_input, tmp_path):
    """The -C audit: read-only commands give the same answer from another directory."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = snapshot(ana)
    for cmd in (["status", "--json"], ["merge", "--dry-run", "--json"],
                ["cleanup", "--dry-run", "--json"], ["check", "--json"],
                ["plan", "--dry-run", "--json"], ["rerun", own_input["ids"][0], "--json"]):
        inside = fairbig(*cmd, cwd=ana, check=False)
        outside = fairbig("-C", str(ana), *cmd, cwd=elsewhere, check=False)
        assert (outside.returncode, answer(outside)) == (inside.returncode, answer(inside)), cmd
    dry = [json.loads(fairbig(*pre, "submit", "--dry-run", "--json", cwd=cwd).stdout)
           for pre, cwd in (((), ana), (("-C", str(ana)), elsewhere))]
    assert [{k: v for k, v in d.items() if k != "run_dir"} for d in dry] == [
        {k: v for k, v in dry[0].items() if k != "run_dir"}] * 2
    script = json.loads(fairbig("-C", str(ana), "script", "--json", cwd=elsewhere).stdout)
    assert Path(script["script"]).is_relative_to(ana / ".fairbig" / "work" / "runs")
    assert snapshot(ana) == before


@pytest.mark.slow
def test_plan_refuses_outputs_through_a_committed_symlink(ana, own_input, tmp_path):
    """Issue 15: a job deletes its outputs; a committed link on the way (here the job's
    own results directory, pointing at a host directory) is refused at plan time."""
    # a job of the plan as it stands (an earlier test of the module may exclude a subject)
    victim = (ana / ".fairbig" / "plan.tsv").read_text().splitlines()[1].split("\t")[0]
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep me")
    link = ana / "results" / victim
    # the module's analysis may hold the job's results already, in HEAD only once a merge
    # left results/ out of the working tree (--sparse: git touches it all the same)
    _git(ana, "rm", "--sparse", "-r", "-q", "--ignore-unmatch", f"results/{victim}")
    shutil.rmtree(link, ignore_errors=True)
    link.parent.mkdir(exist_ok=True)  # git rm may have removed an emptied results/
    link.symlink_to(host)
    _git(ana, "add", "--sparse", f"results/{victim}")
    # --no-verify: the deletion of merged results is meant here (the analysis dataset's
    # pre-commit hook refuses it, as a `datalad save` of a sparse checkout would do it)
    _git(ana, "commit", "--no-verify", "-q", "-m", "a link where a job writes")
    try:
        assert refused(ana) == (
            f"fairbig: error: 1 job output path(s) go through a committed symlink, e.g. "
            f"'results/{victim}' through 'results/{victim}' (remove the symlink "
            f"'results/{victim}' from the analysis dataset (git rm) or change 'results' in "
            "fairbig.yaml; nothing was planned)")
    finally:
        _git(ana, "reset", "-q", "--hard", "HEAD~1")
    assert (host / "precious").read_text() == "keep me"
