"""examples/ukb-mini/run end to end, as a user starts it on a fresh machine.

Cold where a user is cold (issue 14 §1, §6): a fresh TMPDIR (so the jobs' container
cache, ``$TMPDIR/fairbig-containers-UID``, is empty), a fresh HOME and XDG cache (no
datalad or fairbig caches, no gpg agent, no GNUPGHOME), no CONDOR_CONFIG. Given: the
git identity that ``make install`` (scripts/bootstrap) writes into HOME when there is
none, since a fresh machine has it after its first ``make``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fairbig.jobinstall import COMPLETE

from .conftest import REPO, fairbig

RUN = REPO / "examples" / "ukb-mini" / "run"
VENV = Path(sys.executable).parent.parent


def cold_env(tmp: Path) -> dict[str, str]:
    """The environment of a user's first shell on a fresh machine."""
    home, tmpdir = tmp / "home", tmp / "tmpdir"
    home.mkdir()
    tmpdir.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GNUPGHOME", "XDG_", "FAIRBIG_", "CONDOR_", "SLURM_"))}
    env.update(HOME=str(home), TMPDIR=str(tmpdir), FAIRBIG_VENV=str(VENV))
    env.pop("GIT_CONFIG_GLOBAL", None)
    # bootstrap's identity (see the module docstring), in the new HOME: jobs on a
    # cluster or in the pool get this HOME, not the files of this machine's /root
    for name, default in (("user.name", "fairbig"), ("user.email", "fairbig@localhost")):
        value = subprocess.run(["git", "config", "--global", name], capture_output=True,
                               text=True).stdout.strip() or default
        subprocess.run(["git", "config", "--global", name, value], env=env, check=True)
    return env


def run_example(workdir: Path, env: dict[str, str], *args: str,
                timeout: float = 1500) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(RUN), "--workdir", str(workdir), *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def assert_complete(workdir: Path, proc: subprocess.CompletedProcess, subjects: int,
                    env: dict[str, str]) -> None:
    """Every job merged with its resource usage recorded, the rerun IDENTICAL, the
    report written last, and ``compare STORE@main`` (the help's form) finds the store's
    main equal to itself through the RIA URL."""
    ana = workdir / "analysis"
    assert "IDENTICAL" in proc.stdout and "NOT REPRODUCED" not in proc.stdout
    st = json.loads(fairbig("status", "--json", cwd=ana, env=env).stdout)
    counts = st["counts"]
    assert counts.get("merged", 0) == subjects, counts
    # every job measured its steps, the container call among them (on every backend)
    assert set(st["usage"]) == {j["job_id"] for j in st["jobs"]}, st["usage"]
    for used in st["usage"].values():
        assert set(used) >= {"clone", "get", "run", "container", "push-content", "job"}, used
        assert used["container"]["max_rss_mb"] > 0 and used["job"]["cpu_s"] > 0, used
    # and it ends with the report, written, its path said last
    report = workdir / "report.html"
    assert str(report) in proc.stdout.strip().splitlines()[-1] and report.stat().st_size
    dsid = subprocess.run(["git", "config", "-f", str(ana / ".datalad" / "config"),
                           "datalad.dataset.id"], capture_output=True, text=True,
                          check=True).stdout.strip()
    store_git = workdir / "output-store" / dsid[:3] / dsid[3:]
    res = fairbig("compare", f"{store_git}@main", f"ria+file://{workdir}/output-store#{dsid}",
                  cwd=ana, env=env, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_example_on_a_cold_machine(tmp_path: Path):
    """``make demo`` as CI's fresh machine runs it: exit 0 with an empty container cache
    (today's failure: racing first unpacks deleted each other, issue 14 §1), in a work dir
    deep enough that gpg-agent's socket path would be over the 106 bytes it accepts."""
    env = cold_env(tmp_path)
    workdir = tmp_path / "projects-of-a-lab-with-long-names" / ("x" * 40) / "demo"
    assert len(str(workdir / "gnupg-demo" / "S.gpg-agent.browser")) > 106
    proc = run_example(workdir, env, "--subjects", "4")
    assert_complete(workdir, proc, 4, env)
    home = Path(next(ln.split()[3] for ln in proc.stdout.splitlines()
                     if ln.startswith("demo GnuPG home:")))
    if not Path(f"/run/user/{os.getuid()}").is_dir():
        assert home.is_symlink() and home.resolve() == (workdir / "gnupg-demo").resolve()
    subprocess.run(["gpgconf", "--kill", "all"], env={**env, "GNUPGHOME": str(home)})
    if home.is_symlink():
        home.unlink()
    cache = Path(env["TMPDIR"]) / f"fairbig-containers-{os.getuid()}"
    images = [p.name for p in cache.iterdir() if not p.name.startswith((".lock.", ".count."))
              and p.name != "datasets"]
    assert len(images) == 1 and not images[0].startswith("."), images  # no leftovers
    # the node's one template of the container dataset, whole, no half-built one beside it
    templates = [p for p in (cache / "datasets").iterdir() if not p.name.endswith(".lock")]
    assert len(templates) == 1 and (templates[0] / COMPLETE).is_file(), templates


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.long
def test_example_slurm_backend(tmp_path: Path):
    """``--backend slurm`` finds the cluster that answers or starts the repo's own."""
    from .slurm_cluster import slurm_available
    if not slurm_available():
        pytest.skip("the SLURM test cluster cannot run here")
    env = cold_env(tmp_path)
    proc = run_example(tmp_path / "demo", env, "--subjects", "2", "--backend", "slurm")
    said = [ln for ln in proc.stdout.splitlines() if "SLURM cluster" in ln]
    assert len(said) == 1 and ("slurm-down" in said[0] or "answers here" in said[0]), said
    assert_complete(tmp_path / "demo", proc, 2, env)


@pytest.mark.slow
@pytest.mark.htcondor
@pytest.mark.long
def test_example_htcondor_backend(tmp_path: Path):
    """``--backend htcondor`` without CONDOR_CONFIG starts (or finds) the repo's pool and
    points the client at it (it failed: "Unable to locate local daemon")."""
    from .condor_pool import condor_available
    if not condor_available():
        pytest.skip("needs root, namespaces and the htcondor bindings for the test pool")
    env = cold_env(tmp_path)
    workdir = Path("/var/tmp") / f"fairbig-test-example-{os.getpid()}"
    try:
        proc = run_example(workdir, env, "--subjects", "2", "--backend", "htcondor")
        said = [ln for ln in proc.stdout.splitlines() if "HTCondor pool" in ln]
        assert len(said) == 1 and "condor-down" in said[0], said
        env["CONDOR_CONFIG"] = said[0].split("CONDOR_CONFIG=")[1].split()[0]
        assert_complete(workdir, proc, 2, env)
    finally:
        if workdir.exists():
            subprocess.run(["chmod", "-R", "u+w", str(workdir)], check=False)
            shutil.rmtree(workdir, ignore_errors=True)


def test_example_htcondor_refuses_a_workdir_the_pool_cannot_see(tmp_path: Path):
    env = cold_env(tmp_path)
    # never below /tmp or /var/tmp, wherever the checkout (or pytest's tmp) lies
    unseen = Path("/") / f"fairbig-no-such-demo-{os.getpid()}"
    proc = subprocess.run([str(RUN), "--backend", "htcondor", "--workdir", str(unseen)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "give --workdir /var/tmp/NAME" in proc.stderr
    assert not unseen.exists()

