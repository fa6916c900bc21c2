"""Shared fixtures: a lab GPG key, the ukb-mini input, the container image.

Everything is real (datalad, git-annex, gpg, bubblewrap); expensive pieces
are built once per session.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"


def load_generator(example: str = "ukb-mini"):
    """The input generator of ``examples/<example>/`` as a module."""
    spec = importlib.util.spec_from_file_location(
        f"{example.replace('-', '_')}_generate", REPO / "examples" / example / "generate_input.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# gpg-agent's sockets live in GNUPGHOME where there is no /run/user/UID (here, and on
# compute nodes), and it takes a socket path of at most 106 bytes: a key home under a
# deep TMPDIR (pytest's tmp_path) leaves gpg unable to decrypt. Key homes live in /tmp.
_GPG_ROOT: Path | None = None


def gnupg_home(name: str) -> Path:
    """A new, empty GnuPG home (0700) with a short path; removed at the session's end."""
    global _GPG_ROOT
    if _GPG_ROOT is None:
        _GPG_ROOT = Path(tempfile.mkdtemp(prefix="fbg-gpg-", dir="/tmp"))
    home = Path(tempfile.mkdtemp(prefix=f"{name[:12]}-", dir=_GPG_ROOT))
    home.chmod(0o700)
    return home


def make_key(home: Path, name: str = "fairbig test lab") -> str:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                    f"{name} <lab@example.org>", "default", "default", "never"],
                   env=env, check=True, capture_output=True)
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-keys"], env=env,
                         check=True, capture_output=True, text=True).stdout
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr"))


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under ``pytest -n 2 --dist loadgroup`` (make test): the tests that use the
    machine's one SLURM cluster and HTCondor pool run in turn on one worker; every
    other module stays on one worker, so its module-scoped analysis is built once.
    (Marked as each item is collected, before every collection_modifyitems hook:
    xdist reads the groups in its own.)"""
    cluster = item.get_closest_marker("slurm") or item.get_closest_marker("htcondor")
    item.add_marker(pytest.mark.xdist_group("cluster" if cluster else item.module.__name__))


@pytest.fixture(scope="session", autouse=True)
def no_gpg_agent_left(tmp_path_factory):
    """gpg and git-annex start an agent per GNUPGHOME; stop the tests' agents at the end
    (they would outlive the session, one daemon per key home)."""
    yield
    roots = [tmp_path_factory.getbasetemp()] + ([_GPG_ROOT] if _GPG_ROOT else [])
    for ring in (r for root in roots for r in root.rglob("pubring.kbx")):
        subprocess.run(["gpgconf", "--homedir", str(ring.parent), "--kill", "all"],
                       check=False, capture_output=True)
    if _GPG_ROOT:
        shutil.rmtree(_GPG_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_key(tmp_path_factory) -> str:
    """A passphrase-less lab key in a session GNUPGHOME (set for the whole session)."""
    home = gnupg_home("lab")
    fpr = make_key(home)
    os.environ["GNUPGHOME"] = str(home)
    return fpr


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image") / "ukb-mini.tar"
    subprocess.run([str(REPO / "containers" / "build-image"), str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def oci_archives(tmp_path_factory, image: Path) -> dict[str, Path]:
    """The ukb-mini image as an OCI and as a Docker archive (containers/build-oci-archive:
    umoci and skopeo, offline), with an environment of its own in the image config."""
    if not (shutil.which("umoci") and shutil.which("skopeo")):
        pytest.skip("needs umoci and skopeo (scripts/bootstrap installs them)")
    out = tmp_path_factory.mktemp("oci")
    archives = {kind: out / f"ukb-mini.{kind}.tar" for kind in ("oci", "docker")}
    for kind, path in archives.items():
        subprocess.run([str(REPO / "containers" / "build-oci-archive"), str(image), str(path),
                        kind, "PATH=/bin:/usr/bin:/opt/tool/bin", "TOOL_HOME=/opt/tool"],
                       check=True, capture_output=True)
    return archives


@pytest.fixture(scope="session")
def ukb_input(tmp_path_factory) -> dict:
    """A small ukb-mini input (4 participants) published to an input store."""
    base = tmp_path_factory.mktemp("ukbin")
    gen = load_generator()
    store = f"ria+file://{base}/input-store"
    ids = gen.generate(base / "ukb", 4, 7, store)
    return {"path": base / "ukb", "store": store, "url": f"{store}#~ukb", "ids": ids,
            "base": base}


def fairbig(*args: str, cwd: Path | None = None, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would."""
    proc = subprocess.run([str(BIN / "fairbig"), *args], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"fairbig {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


UKB_COMMAND = "sh code/process_subject.sh {input_dir} {output_dir}"


def init_analysis(base: Path, ukb_input: dict, image: Path, lab_key: str,
                  command: str = UKB_COMMAND, name: str = "analysis",
                  code: tuple[Path, ...] = (), container_name: str = "") -> Path:
    """``fairbig init`` with the ukb-mini scripts and ``code`` in code/."""
    target = base / name
    fairbig("init", str(target), "--input", ukb_input["url"], "--container", str(image),
            *(("--container-name", container_name) if container_name else ()),
            "--command", command, "--input-store", f"{base}/{name}-in",
            "--output-store", f"{base}/{name}-out", "--encrypt-to", lab_key,
            "--code", str(REPO / "examples" / "ukb-mini" / "code" / "process_subject.sh"),
            "--code", str(REPO / "examples" / "ukb-mini" / "code"
                          / "process_subject_nondeterministic.sh"),
            *(arg for path in code for arg in ("--code", str(path))))
    return target


def planned_sleeping_analysis(base: Path, ukb_input: dict, image: Path, lab_key: str,
                              configure, seconds: int = 300) -> Path:
    """A planned analysis whose jobs sleep ``seconds`` before the pipeline, so they stay
    queued or running while a test kills, resubmits or cancels; ``configure`` points it
    at a scheduler."""
    ana = init_analysis(base, ukb_input, image, lab_key,
                        command=f"sh -c 'sleep {seconds}; " + UKB_COMMAND + "'")
    configure(ana)
    fairbig("plan", cwd=ana)
    return ana


STATUS_PROBLEMS_EXIT = 3  # fairbig status: some job is failed or lost


def status(ana: Path) -> dict:
    """``fairbig status --json``; its exit code must say whether any job failed or is lost."""
    proc = fairbig("status", "--json", cwd=ana, check=False)
    rep = json.loads(proc.stdout)
    problems = rep["counts"]["failed"] + rep["counts"]["lost"]
    assert proc.returncode == (STATUS_PROBLEMS_EXIT if problems else 0), proc.stderr
    return rep


def wait_idle(ana: Path, timeout: float = 300) -> list[dict[str, int]]:
    """Poll status until nothing is queued or running; returns every distinct view."""
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = status(ana)["counts"]
        if not seen or seen[-1] != c:
            seen.append(c)
        if c["queued"] + c["running"] == 0:
            return seen
        time.sleep(1)
    pytest.fail(f"jobs still active after {timeout} s: {seen[-1]}")


def max_overlap(records: list[dict]) -> int:
    """The most jobs whose own records overlap in time (started to last update)."""
    events = sorted([(r["started"], 1) for r in records] + [(r["updated"], -1) for r in records],
                    key=lambda e: (e[0], e[1]))
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak
