"""Images of every kind: rootfs tars, OCI and Docker archives (built offline with umoci
and skopeo, run by bubblewrap and podman for real), SIFs (no Apptainer here: tested up
to the runtime call), and files of no known kind or damaged ones (one line each)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from fairbig import config as cfgmod
from fairbig.errors import FairbigError
from fairbig.images import image_kind

from .conftest import BIN, REPO, fairbig, init_analysis, status

WRAPPER = REPO / "containers" / "fairbig-container"
SIF_HEADER = b"#!/usr/bin/env run-singularity\n\0SIF_MAGIC\0"


def fake_sif(path: Path) -> Path:
    """A file with a SIF's header (no Apptainer here to build a real one)."""
    path.write_bytes(SIF_HEADER + bytes(4096))
    return path


def data_tar(path: Path) -> Path:
    src = path.parent / "data"
    src.mkdir()
    (src / "notes.txt").write_text("not an image\n")
    with tarfile.open(path, "w") as tar:
        tar.add(src, arcname=".")
    return path


def truncated(src: Path, dest: Path) -> Path:
    dest.write_bytes(src.read_bytes()[: src.stat().st_size // 3])
    return dest


# -- kinds -------------------------------------------------------------------------------

def test_kinds(image: Path, oci_archives: dict[str, Path], tmp_path: Path):
    assert image_kind(image).name == "rootfs"
    assert image_kind(oci_archives["oci"]).name == "oci-archive"
    assert image_kind(oci_archives["docker"]).name == "docker-archive"
    assert image_kind(fake_sif(tmp_path / "x.sif")).name == "sif"


@pytest.mark.parametrize(("make", "line"), [
    (lambda t, a: data_tar(t / "data.tar"), "is a tar, but neither an image archive"),
    (lambda t, a: (t / "x.img").write_text("hello") and t / "x.img", "is of no known kind"),
    (lambda t, a: truncated(a["oci"], t / "cut.tar"), "is damaged: "),
])
def test_bad_image_is_one_line(tmp_path: Path, oci_archives: dict[str, Path], make, line):
    path = make(tmp_path, oci_archives)
    with pytest.raises(FairbigError) as exc:
        image_kind(path)
    assert line in str(exc.value) and "\n" not in str(exc.value)


# -- run by the wrapper ---------------------------------------------------------------------

def wrap(image: Path, cwd: Path, line: str, cache: Path, **env: str):
    return subprocess.run(["sh", str(WRAPPER), str(image), line], cwd=cwd, text=True,
                          capture_output=True,
                          env={**os.environ, "FAIRBIG_CONTAINER_CACHE": str(cache), **env})


RUNTIMES = [pytest.param(r, marks=pytest.mark.skipif(shutil.which(r) is None,
                                                     reason=f"{r} is not installed"))
            for r in ("bwrap", "podman")]


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_archive_runs_with_its_environment(tmp_path: Path, oci_archives, kind, runtime):
    cache = tmp_path / "cache"
    res = wrap(oci_archives[kind], tmp_path,
               "echo $PATH $TOOL_HOME > out; ls /bin | grep -c . ; touch /bin/x || exit 3",
               cache, FAIRBIG_CONTAINER_RUNTIME=runtime)
    assert res.returncode == 3, res.stderr
    assert (tmp_path / "out").read_text() == "/bin:/usr/bin:/opt/tool/bin /opt/tool\n"
    assert int(res.stdout) > 200  # every busybox applet of the layer
    # keyed by content: the same archive under another name is not unpacked again
    copy = tmp_path / "again.tar"
    shutil.copy(oci_archives[kind], copy)
    wrap(copy, tmp_path, "true", cache, FAIRBIG_CONTAINER_RUNTIME=runtime)
    assert len([p for p in cache.iterdir() if p.name.startswith("sha256-")]) == 1


def test_damaged_archive_fails_in_one_line(tmp_path: Path, oci_archives):
    cut = truncated(oci_archives["docker"], tmp_path / "cut.tar")
    res = wrap(cut, tmp_path, "echo ran", tmp_path / "cache")
    assert res.returncode == 127 and res.stdout == ""
    assert res.stderr.startswith(f"fairbig-container: cannot unpack image '{cut}'")
    assert res.stderr.count("\n") == 1
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("sha256-")]


def test_sif_fails_in_one_line_without_apptainer(tmp_path: Path):
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("apptainer would run it")
    res = wrap(fake_sif(tmp_path / "x.sif"), tmp_path, "true", tmp_path / "cache")
    assert res.returncode == 127 and res.stderr == (
        f"fairbig-container: image '{tmp_path / 'x.sif'}' is a SIF: it needs apptainer or "
        "singularity, this machine has bwrap\n")


# -- init, check, and a real run ------------------------------------------------------------

def init_args(base: Path, ukb_input: dict, image: Path, lab_key: str) -> list[str]:
    return ["init", str(base / "ana"), "--input", ukb_input["url"], "--container", str(image),
            "--command", "true", "--input-store", f"{base}/in", "--output-store",
            f"{base}/out", "--encrypt-to", lab_key]


def test_init_refuses_bad_images_in_one_line(tmp_path: Path, ukb_input, lab_key,
                                             oci_archives):
    for path, line in ((data_tar(tmp_path / "data.tar"), "is a tar, but neither"),
                       (truncated(oci_archives["oci"], tmp_path / "cut.tar"), "is damaged")):
        proc = fairbig(*init_args(tmp_path, ukb_input, path, lab_key), check=False)
        assert proc.returncode != 0 and line in proc.stderr.splitlines()[0], proc.stderr
        assert not (tmp_path / "ana").exists() and not (tmp_path / "in").exists()


@pytest.mark.slow
def test_sif_is_added_as_it_is_and_fails_in_one_line(tmp_path: Path, ukb_input, lab_key):
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("apptainer would run it")
    sif = fake_sif(tmp_path / "tool.sif")
    fairbig(*init_args(tmp_path, ukb_input, sif, lab_key))
    ana = tmp_path / "ana"
    assert cfgmod.load(ana / "fairbig.yaml").container == "containers/tool"
    recorded = subprocess.run(["git", "config", "-f", str(ana / "containers" / ".datalad" /
                                                          "config"), "--get-regexp", "tool"],
                              capture_output=True, text=True, check=True).stdout
    assert "datalad.containers.tool.image images/tool.sif" in recorded
    assert (ana / "containers" / "images" / "tool.sif").read_bytes() == sif.read_bytes()
    proc = fairbig("check", cwd=ana, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("FAIL container")]
    why = "is a SIF: it needs apptainer or singularity, this machine has bwrap"
    assert proc.returncode != 0 and len(line) == 1 and why in line[0], proc.stdout
    # a job runs up to the runtime call and fails with that line
    fairbig("plan", "--only", ukb_input["ids"][0], cwd=ana)
    fairbig("submit", cwd=ana, check=False)
    (job,) = status(ana)["jobs"]
    assert (job["state"], job["step"]) == ("failed", "run"), job
    log = (ana / ".fairbig" / "work" / "logs" / f"{job['job_id']}.log").read_text()
    assert f"fairbig-container: image 'containers/images/tool.sif' {why}" in log


@pytest.mark.slow
def test_oci_archive_submit_merge_rerun(tmp_path_factory, ukb_input, lab_key, oci_archives):
    """A Docker archive through init, jobs run by podman (where it is installed) or
    bubblewrap, merge, and a rerun by bubblewrap: IDENTICAL."""
    base = tmp_path_factory.mktemp("ociana")
    ana = init_analysis(base, ukb_input, oci_archives["docker"], lab_key, name="ana")
    images = sorted(p.name for p in (ana / "containers" / "images").iterdir())
    assert images == ["ukb-mini.docker.tar"]
    runtime = "podman" if shutil.which("podman") else "bwrap"
    cfgmod.update_file(ana / "fairbig.yaml", {"runtime.name": runtime})
    subprocess.run([str(BIN / "datalad"), "save", "-m", "runtime"], cwd=ana, check=True,
                   capture_output=True)
    jid = sorted(ukb_input["ids"])[0]  # one job shows the runtime; more only cost time
    fairbig("plan", "--only", jid, cwd=ana)
    fairbig("submit", cwd=ana)
    counts = status(ana)["counts"]
    assert counts["done"] == 1, counts
    assert json.loads(fairbig("merge", "--json", cwd=ana).stdout)["merged"] == [jid]
    cfgmod.update_file(ana / "fairbig.yaml", {"runtime.name": "bwrap"})
    rerun = json.loads(fairbig("rerun", jid, "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["files"] and set(rerun["files"].values()) == {"identical"}, rerun


# -- an existing DataLad container dataset (laid out like ReproNim/containers) -------------

ROOTFS_CMD = """\
#!/bin/sh
# This dataset's own runner (as ReproNim's scripts/singularity_cmd is theirs):
# rootfs_cmd IMAGE CMD...: unpack the rootfs tar to a temporary directory, run CMD in it
set -eu
img=$1
shift
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
tar -C "$root" -xf "$img"
bwrap --bind "$root" / --bind "$PWD" "$PWD" --chdir "$PWD" --proc /proc --dev /dev \\
    --tmpfs /tmp --unshare-net --die-with-parent --clearenv --setenv PATH /bin:/usr/bin \\
    --setenv HOME /tmp "$@"
"""
OWN_CALL_FMT = "sh {img_dspath}/scripts/rootfs_cmd {img} {cmd}"


def datalad(*args: str, cwd: Path) -> None:
    subprocess.run([str(BIN / "datalad"), *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def container_dataset(tmp_path_factory, image: Path) -> Path:
    """images/NAME/NAME--VERSION.tar annexed, scripts/ in git, and in .datalad/config two
    containers with a call format of the dataset's own."""
    ds = tmp_path_factory.mktemp("containers") / "repro"
    datalad("create", str(ds), cwd=ds.parent)
    (ds / "scripts").mkdir()
    (ds / "scripts" / "rootfs_cmd").write_text(ROOTFS_CMD)
    for name, version in (("bb", "1.0"), ("other", "2.0")):
        (ds / "images" / name).mkdir(parents=True)
        shutil.copy(image, ds / "images" / name / f"{name}--{version}.tar")
    with (ds / "images" / "other" / "other--2.0.tar").open("ab") as other:
        other.write(bytes(10240))  # still the same tar, but other content (another key)
    datalad("save", "-m", "images and runner", "--to-git", "scripts", cwd=ds)
    datalad("save", "-m", "images", cwd=ds)
    for name, version in (("bb", "1.0"), ("other", "2.0")):
        datalad("containers-add", name, "-i", f"images/{name}/{name}--{version}.tar",
                "--call-fmt", OWN_CALL_FMT, cwd=ds)
    return ds


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="the dataset's runner needs bwrap")
def test_container_dataset_lacking_the_name_is_one_line(tmp_path: Path, ukb_input, lab_key,
                                                        container_dataset: Path):
    args = init_args(tmp_path, ukb_input, container_dataset, lab_key)
    proc = fairbig(*args, "--container-name", "fmriprep", check=False)
    assert proc.returncode != 0 and proc.stderr.splitlines() == [
        f"fairbig: error: the container dataset {container_dataset} has no container "
        "'fmriprep' (choose one with --container-name: bb, other)"], proc.stderr
    assert not (tmp_path / "ana").exists() and not (tmp_path / "in").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="the dataset's runner needs bwrap")
def test_container_dataset_with_its_own_call_format(tmp_path_factory, ukb_input, lab_key,
                                                    container_dataset: Path):
    """Installed as the container subdataset, the container chosen by name, its call
    format recorded in every run record; submit, merge and rerun: IDENTICAL."""
    base = tmp_path_factory.mktemp("repro-ana")
    ana = init_analysis(base, ukb_input, container_dataset, lab_key, name="ana",
                        container_name="bb")
    assert cfgmod.load(ana / "fairbig.yaml").container == "containers/bb"
    installed = subprocess.run(["git", "config", "-f", str(ana / "containers" / ".datalad" /
                                                           "config"), "--get-regexp",
                                "datalad.containers"], capture_output=True, text=True,
                               check=True).stdout
    assert f"datalad.containers.bb.cmdexec {OWN_CALL_FMT}" in installed
    # only the chosen image was fetched
    present = subprocess.run(["git", "annex", "find", "images"], cwd=ana / "containers",
                             capture_output=True, text=True, check=True).stdout.split()
    assert present == ["images/bb/bb--1.0.tar"]
    # This runner gives the container a fresh /tmp after binding $PWD: a clone under
    # /tmp (a TMPDIR there) would be hidden, so the work dir is set as the README says.
    cfgmod.update_file(ana / "fairbig.yaml", {"job.workdir": "/var/tmp"})
    datalad("save", "-m", "job work dir outside /tmp", cwd=ana)
    jid = sorted(ukb_input["ids"])[0]  # one job shows the call format; more only cost time
    fairbig("plan", "--only", jid, cwd=ana)
    fairbig("submit", cwd=ana)
    counts = status(ana)["counts"]
    assert counts["done"] == 1, counts
    fairbig("merge", cwd=ana)
    cfg = cfgmod.load(ana / "fairbig.yaml")
    dsid = subprocess.run(["git", "config", "-f", str(ana / ".datalad" / "config"),
                           "datalad.dataset.id"], capture_output=True, text=True).stdout.strip()
    store = Path(cfg.stores.output[len("ria+file://"):]) / dsid[:3] / dsid[3:]
    log = subprocess.run(["git", f"--git-dir={store}", "log", "--format=%B", "main"],
                         capture_output=True, text=True, check=True).stdout
    assert log.count('"cmd": "sh containers/scripts/rootfs_cmd containers/images/bb/'
                     f'bb--1.0.tar sh code/process_subject.sh inputs/data/{jid} ') == 1
    rerun = json.loads(fairbig("rerun", jid, "--json", cwd=ana).stdout)["jobs"][0]
    assert rerun["files"] and set(rerun["files"].values()) == {"identical"}, rerun
