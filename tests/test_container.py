"""The container image, the runtime-neutral wrapper and the ukb-mini pipeline, for real."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

import pytest

from .conftest import REPO, load_generator

WRAPPER = REPO / "containers" / "fairbig-container"
CODE = REPO / "examples" / "ukb-mini" / "code"


def in_container(image: Path, cwd: Path, line: str, cache: Path,
                 check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(WRAPPER), str(image), line], cwd=cwd, text=True,
                          capture_output=True, check=check,
                          env={**os.environ, "FAIRBIG_CONTAINER_CACHE": str(cache)})


def test_build_is_deterministic(tmp_path: Path, image: Path):
    again = tmp_path / "again.tar"
    subprocess.run([str(REPO / "containers" / "build-image"), str(again)], check=True)
    digest = [hashlib.sha256(p.read_bytes()).hexdigest() for p in (image, again)]
    assert digest[0] == digest[1]
    assert image.stat().st_size < 4 * 1024 * 1024


def test_runs_command_in_sandbox(tmp_path: Path, image: Path):
    res = in_container(image, tmp_path, "echo hi > out.txt; cat /etc/hostname; echo $HOME",
                       tmp_path / "cache", check=False)
    assert (tmp_path / "out.txt").read_text() == "hi\n"
    assert "can't open '/etc/hostname'" in res.stderr  # the host's files are not there
    assert res.stdout.strip() == "/tmp"


def test_exit_code_and_environment(tmp_path: Path, image: Path):
    res = subprocess.run(["sh", str(WRAPPER), str(image), "sh", "-c",
                          'echo "$FAIRBIG_PIPELINE_MODE/${SECRET:-unset}"; exit 7'],
                         cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "FAIRBIG_CONTAINER_CACHE": str(tmp_path / "c"),
                              "FAIRBIG_PIPELINE_MODE": "fast", "SECRET": "x"})
    assert res.returncode == 7 and res.stdout.strip() == "fast/unset"


def test_missing_runtime_and_image(tmp_path: Path, image: Path):
    res = subprocess.run(["sh", str(WRAPPER), str(tmp_path / "nope.tar"), "true"],
                         capture_output=True, text=True)
    assert res.returncode == 127 and "datalad get" in res.stderr
    res = subprocess.run(["sh", str(WRAPPER), str(image), "true"], capture_output=True,
                         text=True, env={**os.environ, "FAIRBIG_CONTAINER_RUNTIME": "rkt"})
    assert res.returncode == 127 and "unknown runtime" in res.stderr


def test_concurrent_first_unpack(tmp_path: Path, image: Path):
    cache = tmp_path / "cache"
    results: list[subprocess.CompletedProcess] = []

    def go(i: int) -> None:
        work = tmp_path / f"w{i}"
        work.mkdir()
        results.append(in_container(image, work, f"echo {i} > out", cache, check=False))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0] * 4
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 1
    assert not [p for p in cache.iterdir() if p.name.startswith(".unpack")]


@pytest.fixture
def records(tmp_path: Path) -> Path:
    gen = load_generator()
    d = tmp_path / "work" / "in" / "1234567"
    d.mkdir(parents=True)
    for name in gen.record_names(2):
        (d / name).write_bytes(gen.make_record(name, "1234567", 1))
    for script in CODE.glob("*.sh"):
        (tmp_path / "work" / script.name).write_text(script.read_text())
    return tmp_path / "work"


def test_pipeline_is_deterministic(records: Path, image: Path, tmp_path: Path):
    for out in ("o1", "o2"):
        in_container(image, records, f"sh process_subject.sh in/1234567 {out}",
                     tmp_path / "cache")
    files = sorted(p.relative_to(records / "o1") for p in (records / "o1").rglob("*")
                   if p.is_file())
    assert Path("20252_3_0/stats.tsv") in files and Path("summary.json") in files
    for rel in files:
        assert (records / "o1" / rel).read_bytes() == (records / "o2" / rel).read_bytes()


def test_pipeline_names_corrupt_record(records: Path, image: Path, tmp_path: Path):
    (records / "in" / "1234567" / "20227_2_0.zip").write_bytes(b"not a zip")
    res = in_container(image, records, "sh process_subject.sh in/1234567 out",
                       tmp_path / "cache", check=False)
    assert res.returncode != 0 and "20227_2_0.zip is corrupt" in res.stderr
    assert not (records / "out" / "20227_2_0").exists()


def test_nondeterministic_variant_differs(records: Path, image: Path, tmp_path: Path):
    for out in ("n1", "n2"):
        in_container(image, records, f"sh process_subject_nondeterministic.sh in/1234567 {out}",
                     tmp_path / "cache")
    assert (records / "n1" / "nonce.txt").read_text() != (records / "n2" / "nonce.txt"
                                                           ).read_text()
    assert (records / "n1" / "summary.json").read_text() == (records / "n2" / "summary.json"
                                                             ).read_text()
