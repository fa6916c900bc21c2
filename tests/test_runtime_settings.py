"""fairbig.yaml's runtime settings (binds, environment, GPUs, extra runtime options):
validated up front in one line each, handed to the container wrapper, and a real
run whose pipeline reads a bound licence file and writes a passed variable, through
submit, merge and rerun (IDENTICAL)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.errors import ConfigError
from fairbig.render import render
from fairbig.sandbox import wrapper_env

from .conftest import BIN, REPO, fairbig, init_analysis, status

WRAPPER = REPO / "containers" / "fairbig-container"
BASE = {"stores": {"input": "ria+file:///s/in", "output": "ria+file:///s/out"},
        "encryption": {"keys": ["0123456789ABCDEF"]}, "container": "containers/x",
        "command": "sh code/run.sh {input_dir} {output_dir}"}


def problems(runtime: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        cfgmod.from_data({**BASE, "runtime": runtime})
    return exc.value.problems


# -- validated up front ------------------------------------------------------------------

@pytest.mark.parametrize(("runtime", "line"), [
    ({"binds": ["/a:b:/c"]}, "runtime.binds[0] '/a:b:/c' has a ':' in a path"),
    ({"binds": ["/data/x:y:/z"]}, "runtime.binds[0] '/data/x:y:/z' has a ':' in a path"),
    ({"binds": ["/lic\n/x"]}, "runtime.binds[0] '/lic\\n/x' must be one line"),
    ({"binds": ["lic.txt:/lic"]}, "runtime.binds[0] 'lic.txt:/lic' needs absolute paths"),
    ({"binds": ["/a:/tmp"]}, "runtime.binds[0] '/a:/tmp' cannot replace /tmp inside"),
    ({"env": ["1X=2"]}, "runtime.env[0] '1X=2' must be NAME or NAME=VALUE"),
    ({"env": ["A=b\nc"]}, "runtime.env[0] 'A=b\\nc' must be one line"),
    ({"env": ["PATH=/x"]}, "runtime.env[0] 'PATH=/x' sets PATH"),
    ({"gpus": 1, "name": "bwrap"}, "runtime.gpus 1 needs a runtime that passes GPUs in"),
    ({"name": "rkt"}, "runtime.name 'rkt' must be auto or one of bwrap"),
    ({"gpu_vendor": "intel"}, "runtime.gpu_vendor 'intel' must be nvidia or amd"),
    ({"args": {"podman": ["--x\ny"]}}, "runtime.args.podman[0] '--x\\ny' must be one line"),
])
def test_bad_setting_is_one_line(runtime: dict, line: str):
    (problem,) = problems(runtime)
    assert problem.startswith(line) and "\n" not in problem


@pytest.mark.parametrize("runtime", [{"binds": ["/a:b:/c"]}, {"binds": ["/lic\n/x"]},
                                     {"gpus": 1, "name": "bwrap"}])
@pytest.mark.parametrize("command", ["plan", "submit"])
def test_bad_setting_stops_the_command_in_one_line(tmp_path: Path, runtime: dict,
                                                   command: str):
    """Through the real CLI: exit 1, one line naming the setting, nothing written."""
    (tmp_path / ".datalad").mkdir()
    (tmp_path / "fairbig.yaml").write_text(json.dumps({**BASE, "runtime": runtime}))  # YAML
    before = sorted(tmp_path.rglob("*"))
    proc = fairbig(command, cwd=tmp_path, check=False)
    (line,) = proc.stderr.splitlines()
    assert proc.returncode == 1 and line.startswith("fairbig: error: ") and \
        f"runtime.{next(iter(runtime))}" in line, proc.stderr
    assert sorted(tmp_path.rglob("*")) == before


def test_wrapper_environment():
    cfg = cfgmod.from_data({**BASE, "runtime": {
        "name": "podman", "binds": ["/opt/lic.txt:/lic.txt", "/scratch:rw", "/tf"],
        "env": ["SITE=lab 7", "TEMPLATEFLOW_HOME"], "gpus": 2,
        "args": {"podman": ["--memory=8g"]}}})
    assert wrapper_env(cfg.runtime) == {
        "FAIRBIG_CONTAINER_RUNTIME": "podman",
        "FAIRBIG_CONTAINER_BINDS": "/opt/lic.txt:/lic.txt:ro\n/scratch:/scratch:rw\n/tf:/tf:ro",
        "FAIRBIG_CONTAINER_ENV": "SITE=lab 7\nTEMPLATEFLOW_HOME",
        "FAIRBIG_CONTAINER_GPU": "nvidia", "FAIRBIG_CONTAINER_ARGS_PODMAN": "--memory=8g"}
    assert wrapper_env(cfgmod.from_data(BASE).runtime) == {}  # the defaults add nothing


def test_gpus_reach_the_scheduler_request():
    cfg = cfgmod.from_data({**BASE, "runtime": {"gpus": 2}})
    header = render("slurm-header.j2", cfg=cfg.backend.slurm, job_name="j", gpus=2)
    assert "#SBATCH --gres=gpu:2\n" in header
    sub = render("htcondor.sub.j2", cfg=cfg.backend.htcondor, gpus=2, script="s", run_dir="r",
                 token="t", output="o", home="/h")
    assert "request_gpus = 2\n" in sub
    assert "gres" not in render("slurm-header.j2", cfg=cfg.backend.slurm, job_name="j", gpus=0)


# -- the wrapper, with the runtime this machine has ----------------------------------------

bwrap_only = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def wrap(image: Path, cwd: Path, line: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(WRAPPER), str(image), line], cwd=cwd, text=True,
                          capture_output=True,
                          env={**os.environ, "FAIRBIG_CONTAINER_RUNTIME": "bwrap",
                               "FAIRBIG_CONTAINER_CACHE": str(cwd / ".cache"), **env})


@bwrap_only
def test_binds_env_and_args_inside(tmp_path: Path, image: Path):
    lic = tmp_path / "licence.txt"
    lic.write_text("LICENCE-42\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    res = wrap(image, work,
               "cat /opt/fs/license.txt /bin/licence; echo $SITE $SCANNER $UNSET_ONE $X;"
               " echo w > /scratch/out; echo x > /opt/fs/license.txt || echo read-only;"
               " ls /bin | grep -c .",
               FAIRBIG_CONTAINER_BINDS=f"{lic}:/opt/fs/license.txt:ro\n{lic}:/bin/licence:ro\n"
                                       f"{scratch}:/scratch:rw",
               FAIRBIG_CONTAINER_ENV="SITE=lab 7\nSCANNER\nUNSET_ONE", SCANNER="prisma",
               FAIRBIG_CONTAINER_ARGS_BWRAP="--setenv\nX\nfrom-args")
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[:4] == ["LICENCE-42", "LICENCE-42", "lab 7 prisma from-args", "read-only"]
    # a bind into an image directory (/bin) keeps the image's other entries there
    assert int(out[4]) > 200
    assert (scratch / "out").read_text() == "w\n" and lic.read_text() == "LICENCE-42\n"


@bwrap_only
@pytest.mark.parametrize(("env", "line"), [
    ({"FAIRBIG_CONTAINER_BINDS": "/nonexistent/licence:/l:ro"},
     "fairbig-container: bind source /nonexistent/licence does not exist on this node"),
    ({"FAIRBIG_CONTAINER_GPU": "nvidia"},
     "fairbig-container: GPUs requested (runtime.gpus), but bwrap cannot pass GPUs"),
    ({"FAIRBIG_CONTAINER_ENV": "A-B"}, "fairbig-container: FAIRBIG_CONTAINER_ENV: 'A-B' is not"),
])
def test_wrapper_refuses_in_one_line(tmp_path: Path, image: Path, env: dict, line: str):
    res = wrap(image, tmp_path, "echo ran", **env)
    assert res.returncode != 0 and res.stdout == ""
    assert res.stderr.startswith(line) and res.stderr.count("\n") == 1
    assert not (tmp_path / ".cache").exists()  # refused before anything was unpacked


# -- a real run: submit, merge, rerun --------------------------------------------------------

SITE_SH = """\
#!/bin/sh
# reads a licence bound in by fairbig.yaml and writes a passed variable
set -eu
mkdir -p "$2"
cat /licence/licence.txt >"$2/licence.txt"
printf '%s %s\\n' "$SITE_NAME" "$SCANNER" >"$2/site.txt"
ls "$1" | wc -l >"$2/records.txt"
"""


@pytest.mark.slow
@bwrap_only
def test_bound_licence_and_env_through_submit_merge_rerun(tmp_path_factory, ukb_input,
                                                           image, lab_key):
    base = tmp_path_factory.mktemp("runtime")
    code = base / "site.sh"
    code.write_text(SITE_SH)
    ana = init_analysis(base, ukb_input, image, lab_key, name="ana",
                        command="sh code/site.sh {input_dir} {output_dir}", code=(code,))
    licence = base / "site" / "licence.txt"
    cfgmod.update_file(ana / "fairbig.yaml", {
        "runtime.binds": [f"{licence.parent}:/licence"],
        "runtime.env": ["SITE_NAME=lab-7", "SCANNER"]})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "runtime settings"], cwd=ana,
                   check=True, capture_output=True)
    env = {"SCANNER": "prisma"}
    ids = sorted(ukb_input["ids"])[:2]  # two jobs show it per job; four only cost time
    fairbig("plan", *(f"--only={i}" for i in ids), cwd=ana)
    # the licence is not there yet: check and submit say so in one line, no job starts
    line = f"runtime.binds: {licence.parent} does not exist on this machine"
    proc = fairbig("check", cwd=ana, check=False, env=env)
    assert proc.returncode != 0 and line in proc.stdout, proc.stdout
    proc = fairbig("submit", cwd=ana, check=False, env=env)
    assert proc.returncode != 0 and proc.stderr.splitlines() == [
        f"fairbig: error: {line} (create it, or fix or remove the bind in fairbig.yaml)"], \
        proc.stderr
    assert not list((ana / ".fairbig" / "work").glob("runs/*"))
    assert not list((ana / ".fairbig" / "work").glob("state/*"))

    licence.parent.mkdir()
    licence.write_text("LICENCE-XYZ-123\n")
    assert "binds: " + str(licence.parent) in fairbig("check", cwd=ana, env=env).stdout
    fairbig("submit", "-j", "2", cwd=ana, env=env)
    counts = status(ana)["counts"]
    assert counts["done"] == len(ids), counts
    merged = json.loads(fairbig("merge", "--json", cwd=ana).stdout)["merged"]
    assert sorted(merged) == ids

    # the results hold what the pipeline read and was given, decrypted from the store
    cfg = cfgmod.load(ana / "fairbig.yaml")
    dsid = subprocess.run(["git", "config", "-f", str(ana / ".datalad" / "config"),
                           "datalad.dataset.id"], capture_output=True, text=True).stdout.strip()
    clone = base / "fresh"
    subprocess.run([str(BIN / "datalad"), "clone", f"{cfg.stores.output}#{dsid}", str(clone)],
                   check=True, capture_output=True)
    subprocess.run([str(BIN / "datalad"), "get", "results"], cwd=clone, check=True,
                   capture_output=True)
    for jid in ids:
        assert (clone / "results" / jid / "licence.txt").read_text() == "LICENCE-XYZ-123\n"
        assert (clone / "results" / jid / "site.txt").read_text() == "lab-7 prisma\n"
    subprocess.run(["chmod", "-R", "u+w", str(clone)], check=True)

    jid = ids[0]
    rerun = json.loads(fairbig("rerun", jid, "--json", cwd=ana, env=env).stdout)["jobs"][0]
    assert set(rerun["files"].values()) == {"identical"}, rerun

