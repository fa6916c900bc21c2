"""The container image, the runtime-neutral wrapper and the ukb-mini pipeline, for real.

No mocks: the image is built with containers/build-image, commands run through
containers/fairbig-container with the runtime this machine has (bubblewrap
here), the pipeline runs inside the image.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from .conftest import REPO

WRAPPER = REPO / "containers" / "fairbig-container"
CODE = REPO / "examples" / "ukb-mini" / "code"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
SH = shutil.which("sh") or "/bin/sh"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None and shutil.which("apptainer")
                                is None, reason="no container runtime")


def run(image: Path, cwd: Path, *cmd: str, cache: Path, check: bool = False,
        **env: str) -> subprocess.CompletedProcess:
    """``sh fairbig-container IMAGE CMD...`` in ``cwd``, as a run record would."""
    proc = subprocess.run([SH, str(WRAPPER), str(image), *cmd], cwd=cwd, text=True,
                          capture_output=True,
                          env={**os.environ, "FAIRBIG_CONTAINER_CACHE": str(cache), **env})
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}): {proc.stderr}")
    return proc


def unpacked(cache: Path) -> list[str]:
    """What the image cache holds, besides the memo of sha256 keys of plain files and
    each image's lock and entry count (leftover ``.unpack.*`` directories are listed)."""
    return sorted(p.name for p in cache.iterdir()
                  if p.name != ".keys" and not p.name.startswith((".lock.", ".count.", ".env.")))


# -- the image ------------------------------------------------------------------------

def test_build_is_deterministic(tmp_path: Path, image: Path):
    again = tmp_path / "sub" / "again.tar"  # a second, independent build
    subprocess.run([str(REPO / "containers" / "build-image"), str(again)], check=True)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (image, again)]
    assert digest[0] == digest[1]
    assert 1024 * 1024 < image.stat().st_size < 4 * 1024 * 1024
    assert [p.name for p in again.parent.iterdir()] == ["again.tar"]  # no temp file left
    names = subprocess.run(["tar", "-tf", str(image)], check=True, capture_output=True,
                           text=True).stdout.split()
    assert "./bin/busybox" in names and "./bin/unzip" in names and "./etc/passwd" in names
    assert {"./proc/", "./dev/", "./tmp/", "./work/"} <= set(names)


def test_build_survives_a_busybox_that_writes_its_list_slowly(tmp_path: Path):
    """CI at 75addfa: `busybox --list | grep -qx unzip` under pipefail failed at random
    (grep leaves at its match, busybox's next write dies of SIGPIPE). A busybox that
    writes each applet name apart, slowly, makes that race certain."""
    slow = tmp_path / "busybox"
    slow.write_text("#!/bin/sh\nfor a in sh unzip zcat; do echo $a; sleep 0.2; done\n")
    slow.chmod(0o755)
    out = tmp_path / "img.tar"
    run = subprocess.run([str(REPO / "containers" / "build-image"), str(out)],
                         env={**os.environ, "BUSYBOX": str(slow)}, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    names = subprocess.run(["tar", "-tf", str(out)], check=True, capture_output=True,
                           text=True).stdout.split()
    assert {"./bin/busybox", "./bin/unzip", "./bin/zcat"} <= set(names)


# -- the wrapper ----------------------------------------------------------------------

def test_writes_into_cwd_and_hides_the_host(tmp_path: Path, image: Path):
    res = run(image, tmp_path, "sh", "-c", "echo hi > out.txt; echo $HOME; cat /etc/hostname",
              cache=tmp_path / "cache")
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert res.stdout.strip() == "/tmp"
    if Path("/etc/hostname").exists():  # the host has one, the sandbox does not
        assert res.returncode != 0 and "/etc/hostname" in res.stderr


def test_shell_line_and_image_is_read_only(tmp_path: Path, image: Path):
    res = run(image, tmp_path, "touch /bin/evil || echo refused; pwd", cache=tmp_path / "c")
    assert res.returncode == 0 and res.stdout.split() == ["refused", str(tmp_path)]


@pytest.mark.skipif(not Path("/proc/net/dev").exists(), reason="no /proc/net/dev")
def test_no_network(tmp_path: Path, image: Path):
    if os.environ.get("FAIRBIG_CONTAINER_RUNTIME", "bwrap") in ("apptainer", "singularity"):
        pytest.skip("apptainer keeps the host network unprivileged")
    res = run(image, tmp_path, "sed -n 's/^ *\\([^:]*\\):.*/\\1/p' /proc/net/dev",
              cache=tmp_path / "c", check=True)
    assert res.stdout.split() == ["lo"]


def test_exit_code_and_clean_environment(tmp_path: Path, image: Path):
    res = run(image, tmp_path, "sh", "-c", 'env | sort; exit 7', cache=tmp_path / "c",
              FAIRBIG_PIPELINE_MODE="fast 'quoted' $x", SECRET="x", LANG="de_DE.UTF-8")
    assert res.returncode == 7
    env = dict(line.split("=", 1) for line in res.stdout.splitlines())
    for own in ("PWD", "SHLVL"):  # set by sh itself
        env.pop(own, None)
    assert env == {"PATH": "/bin:/usr/bin", "HOME": "/tmp", "LANG": "C",
                   "FAIRBIG_PIPELINE_MODE": "fast 'quoted' $x"}


def test_cwd_inside_an_image_directory(image: Path, tmp_path: Path):
    """The repo lives in /work here, and the image has /work and /etc: both still work."""
    res = run(image, REPO, "sh", "-c", "pwd; test -f README.md && grep -c root /etc/passwd",
              cache=tmp_path / "c", check=True)
    assert res.stdout.split() == [str(REPO.resolve()), "1"]


def test_missing_image_and_runtime(tmp_path: Path, image: Path):
    res = run(image.parent / "nope.tar", tmp_path, "true", cache=tmp_path / "c")
    assert res.returncode == 127 and "datalad get" in res.stderr
    res = run(image, tmp_path, "true", cache=tmp_path / "c", FAIRBIG_CONTAINER_RUNTIME="rkt")
    assert res.returncode == 127 and "unknown runtime" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    # a runtime that is not installed: one clear line, 127, nothing unpacked
    absent = next((r for r in ("docker", "podman", "singularity", "apptainer")
                   if shutil.which(r) is None), None)
    if absent:
        res = run(image, tmp_path, "true", cache=tmp_path / "c2",
                  FAIRBIG_CONTAINER_RUNTIME=absent)
        assert res.returncode == 127 and res.stderr.count("\n") == 1
        assert f"{absent} is not installed" in res.stderr
        assert not (tmp_path / "c2").exists()
    res = run(image, tmp_path, "sh", "-c", "exit 3", cache=tmp_path / "c",
              PATH="/nonexistent")  # no runtime on PATH at all
    assert res.returncode == 127 and "no container runtime" in res.stderr


@pytest.mark.parametrize("runtime", ["bwrap", "podman", "apptainer", "singularity"])
def test_each_runtime_same_behaviour(tmp_path: Path, image: Path, runtime: str):
    if shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    cache = tmp_path / "cache"
    run(image, tmp_path, "true", cache=cache, check=True)
    before = sorted(str(p.relative_to(cache)) for p in cache.rglob("*"))
    res = run(image, tmp_path, "echo hi > out.txt; env | sort; touch /bin/x && exit 1; exit 5",
              cache=cache, FAIRBIG_CONTAINER_RUNTIME=runtime, FAIRBIG_PIPELINE_N="1",
              SECRET="x")
    assert res.returncode == 5, res.stderr
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert set(res.stdout.split()) - {"PWD=" + str(tmp_path), "SHLVL=1"} == {
        "PATH=/bin:/usr/bin", "HOME=/tmp", "LANG=C", "FAIRBIG_PIPELINE_N=1"}
    # the unpacked image is shared by every job on the node: nobody writes into it
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) == before


def test_plain_file_key_is_remembered(tmp_path: Path, image: Path):
    img = tmp_path / "img.tar"
    shutil.copy(image, img)
    cache = tmp_path / "cache"
    run(img, tmp_path, "true", cache=cache, check=True)
    digest = hashlib.sha256(img.read_bytes()).hexdigest()
    memo = list((cache / ".keys").iterdir())
    assert len(memo) == 1 and memo[0].read_text() == f"sha256-{digest}\n"
    run(img, tmp_path, "true", cache=cache, check=True)
    assert unpacked(cache) == [f"sha256-{digest}"]
    with img.open("ab") as f:  # new content, new key
        f.write(b"\0" * 10240)
    run(img, tmp_path, "true", cache=cache, check=True)
    assert len(unpacked(cache)) == 2 and len(list((cache / ".keys").iterdir())) == 2


def test_sif_needs_apptainer(tmp_path: Path, image: Path):
    if shutil.which("apptainer") or shutil.which("singularity"):
        pytest.skip("apptainer would run it")
    sif = tmp_path / "x.sif"
    sif.write_bytes(b"#!/usr/bin/env run-singularity\n\0SIF_MAGIC\0" + bytes(100))
    res = run(sif, tmp_path, "true", cache=tmp_path / "c")
    assert res.returncode == 127 and "is a SIF: it needs apptainer" in res.stderr


def annex_link(where: Path, image: Path) -> Path:
    """``image`` as a dataset holds it: a symlink to an annex object named by its key."""
    key = "SHA256E-s123--" + "ab" * 32 + ".tar"
    obj = where / ".git" / "annex" / "objects" / "xx" / "yy" / key / key
    obj.parent.mkdir(parents=True)
    shutil.copy(image, obj)
    link = where / "ds" / "image"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(obj, link.parent))
    return link


def test_cache_is_keyed_by_annex_key(tmp_path: Path, image: Path):
    link = annex_link(tmp_path, image)
    key = link.resolve().name
    run(image, tmp_path, "true", cache=tmp_path / "cache", check=True)
    run(link, tmp_path, "true", cache=tmp_path / "cache", check=True)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert unpacked(tmp_path / "cache") == sorted([key, f"sha256-{digest}"])


def test_concurrent_first_unpack(tmp_path: Path, image: Path):
    cache = tmp_path / "cache"
    results: dict[int, subprocess.CompletedProcess] = {}
    barrier = threading.Barrier(4)

    def go(i: int) -> None:
        work = tmp_path / f"w{i}"
        work.mkdir()
        barrier.wait()
        results[i] = run(image, work, f"echo {i} > out", cache=cache)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i].returncode for i in range(4)] == [0] * 4, results
    assert [(tmp_path / f"w{i}" / "out").read_text() for i in range(4)] == \
        [f"{i}\n" for i in range(4)]
    assert len(unpacked(cache)) == 1  # one image, no .unpack.* leftovers
    assert (cache / unpacked(cache)[0] / "bin" / "busybox").is_file()


@pytest.mark.parametrize("kind", ["rootfs", "oci"])
def test_racing_first_unpacks_never_delete_each_other(tmp_path: Path, image: Path, kind: str,
                                                      request):
    """16 jobs start at once on a node with an empty cache, five times. The image tar is
    deterministic (mtimes of 1970), so a clean-up that judged an unpack stale by its
    mtime deleted a racing job's fresh unpack (issue 14 §1: 9 of 48 failed). The same
    for an OCI archive, whose layers are applied by fairbig-oci-unpack."""
    if kind == "oci":
        image = request.getfixturevalue("oci_archives")["oci"]
    image = annex_link(tmp_path, image)  # what a job's containers-run calls
    work = tmp_path / "w"
    work.mkdir()
    # the tasks of an array arrive spread over about one unpack's time, so that some
    # start while others have just finished their tar (the window of the old race)
    started = time.monotonic()
    run(image, work, "true", cache=tmp_path / "warmup", check=True)
    spread = (time.monotonic() - started) / 16
    failed = []
    for round_ in range(5):
        cache = tmp_path / f"cache{round_}"
        procs = []
        for i in range(16):
            procs.append(subprocess.Popen(
                [SH, str(WRAPPER), str(image), f"echo {i} > out{i}"], cwd=work,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env={**os.environ, "FAIRBIG_CONTAINER_CACHE": str(cache)}))
            time.sleep(spread)
        for i, proc in enumerate(procs):
            _, err = proc.communicate()
            if proc.returncode != 0 or (work / f"out{i}").read_text() != f"{i}\n":
                failed.append((round_, i, proc.returncode, err.strip()))
            (work / f"out{i}").unlink(missing_ok=True)
        assert unpacked(cache) == [image.resolve().name]  # no .unpack.* left
    assert failed == [], f"{len(failed)} of 80 container calls failed: {failed[:3]}"


def damage_emptied(root: Path) -> None:
    for entry in root.iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def damage_one_file(root: Path) -> None:
    (root / "bin" / "busybox").unlink()


def damage_key_dir_gone(root: Path) -> None:
    shutil.rmtree(root)


def damage_whole_cache_gone(root: Path) -> None:
    shutil.rmtree(root.parent)


@pytest.mark.parametrize("damage", [damage_emptied, damage_one_file, damage_key_dir_gone,
                                    damage_whole_cache_gone])
def test_damaged_cache_entry_is_unpacked_again(tmp_path: Path, image: Path, damage):
    """A node's scratch cleaner empties or thins out the image cache: the next job
    unpacks the image again instead of failing (and every later job with it)."""
    cache = tmp_path / "cache"
    run(image, tmp_path, "true", cache=cache, check=True)
    [key] = unpacked(cache)
    listing = sorted(str(p.relative_to(cache / key)) for p in (cache / key).rglob("*"))
    damage(cache / key)
    for i in range(2):  # the repaired entry serves the next job too
        res = run(image, tmp_path, f"echo ok{i} > out; cat out", cache=cache, check=True)
        assert res.stdout == f"ok{i}\n" and res.stderr == ""
    assert unpacked(cache) == [key]
    assert sorted(str(p.relative_to(cache / key)) for p in (cache / key).rglob("*")) == listing


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_cache_names_the_reason(tmp_path: Path, image: Path):
    """A cache (or TMPDIR) on a full file system: one line with the real reason, 127,
    nothing half-unpacked left behind, and the next call on a roomy cache works."""
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(tiny)], check=True)
    try:
        res = run(image, tmp_path, "true", cache=tiny / "cache")
        assert res.returncode == 127, res
        [line] = res.stderr.splitlines()
        assert line.startswith(f"fairbig-container: cannot unpack image '{image}': "), line
        assert "No space left on device" in line, line
        assert not [p for p in (tiny / "cache").iterdir() if p.name.startswith(".unpack")]
    finally:
        subprocess.run(["umount", str(tiny)], check=True)


# -- the ukb-mini pipeline -----------------------------------------------------------

def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A work dir with code/ and one subject of two records."""
    work = tmp_path / "work"
    sub = work / "in" / "1234567"
    sub.mkdir(parents=True)
    (sub / "20252_2_0.zip").write_bytes(make_zip({
        "T1/T1.nii.gz": bytes(range(256)) * 8 + b"\x00\xff",
        "T1/T1.json": b'{"field": 20252}\n',
        "T1/empty.txt": b""}))
    (sub / "20227_2_0.zip").write_bytes(make_zip({
        "fMRI/rfMRI.nii.gz": bytes((i * 7) % 251 for i in range(5000))}))
    shutil.copytree(CODE, work / "code")
    return work


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_pipeline_is_deterministic(work: Path, image: Path, tmp_path: Path):
    for out in ("o1", "o2"):
        run(image, work, "sh", "code/process_subject.sh", "in/1234567", f"out/{out}",
            cache=tmp_path / "cache", check=True)
    o1, o2 = tree(work / "out" / "o1"), tree(work / "out" / "o2")
    assert o1 == o2
    assert sorted(o1) == ["20227_2_0/members.sha256", "20227_2_0/sizes.tsv",
                          "20227_2_0/stats.tsv", "20252_2_0/members.sha256",
                          "20252_2_0/sizes.tsv", "20252_2_0/stats.tsv", "summary.json"]
    assert o1["summary.json"] == (b'{"subject": "1234567", "n_records": 2, '
                                  b'"records": ["20227_2_0", "20252_2_0"]}\n')
    t1 = bytes(range(256)) * 8 + b"\x00\xff"
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in
           [("T1/T1.json", b'{"field": 20252}\n'), ("T1/T1.nii.gz", t1), ("T1/empty.txt", b"")]}
    assert o1["20252_2_0/members.sha256"].decode().splitlines() == [
        f"{digest}  {name}" for name, digest in sha.items()]
    stats = o1["20252_2_0/stats.tsv"].decode().splitlines()
    assert stats[0] == "member\tbytes\tsum\tmean\tmin\tmax"
    assert stats[2] == f"T1/T1.nii.gz\t{len(t1)}\t{sum(t1)}\t{sum(t1) / len(t1):.6f}\t0\t255"
    assert stats[3] == "T1/empty.txt\t0\t0\t0.000000\t0\t0"
    assert o1["20252_2_0/sizes.tsv"].decode().splitlines()[1:] == [
        "T1/T1.json\t17", f"T1/T1.nii.gz\t{len(t1)}", "T1/empty.txt\t0"]
    assert not [p for p in (work / "out").iterdir() if p.name not in ("o1", "o2")]


def test_pipeline_names_corrupt_record(work: Path, image: Path, tmp_path: Path):
    good = (work / "in" / "1234567" / "20252_2_0.zip").read_bytes()
    (work / "in" / "1234567" / "20252_2_0.zip").write_bytes(good[: len(good) // 2])
    res = run(image, work, "sh code/process_subject.sh in/1234567 out",
              cache=tmp_path / "cache")
    assert res.returncode != 0 and "record 20252_2_0.zip is corrupt" in res.stderr
    assert not (work / "out" / "20252_2_0").exists()
    assert not (work / "out" / "summary.json").exists()
    (work / "in" / "1234567" / "20252_2_0.zip").write_bytes(b"not a zip")
    res = run(image, work, "sh code/process_subject.sh in/1234567 out",
              cache=tmp_path / "cache")
    assert res.returncode != 0 and "20252_2_0.zip" in res.stderr


def test_nondeterministic_variant_differs_in_summary(work: Path, image: Path,
                                                     tmp_path: Path):
    for out in ("n1", "n2"):
        run(image, work, "sh", "code/process_subject_nondeterministic.sh", "in/1234567", out,
            cache=tmp_path / "cache", check=True)
    n1, n2 = tree(work / "n1"), tree(work / "n2")
    assert sorted(n1) == sorted(n2)
    differ = [f for f in n1 if n1[f] != n2[f]]
    assert differ == ["summary.json"]
    assert b'"n_records": 2' in n1["summary.json"] and b'"nonce": ' in n1["summary.json"]
