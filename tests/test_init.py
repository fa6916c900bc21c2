"""fairbig init on real datalad, git-annex, gpg, container and RIA stores."""

from __future__ import annotations

import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from fairbig import config as cfgmod

from .conftest import fairbig, gnupg_home, init_analysis, make_key

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, ukb_input, image, lab_key) -> Path:
    return init_analysis(tmp_path_factory.mktemp("init"), ukb_input, image, lab_key)


def sh(*args: str, cwd: Path | None = None, env: dict | None = None,
       check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, check=check,
                          env={**os.environ, **(env or {})})


def dsid(path: Path) -> str:
    return sh("git", "config", "-f", str(path / ".datalad" / "config"),
              "datalad.dataset.id").stdout.strip()


def test_fresh_clone_from_input_store_is_complete(analysis: Path, tmp_path: Path):
    cfg = cfgmod.load(analysis / "fairbig.yaml")
    clone = tmp_path / "clone"
    sh("datalad", "clone", f"{cfg.stores.input}#{dsid(analysis)}", str(clone))
    subs = sh("datalad", "subdatasets", cwd=clone).stdout
    assert "inputs/data" in subs and "containers" in subs
    cfgmod.load(clone / "fairbig.yaml")  # valid
    assert (clone / ".fairbig" / "lab-pubkey.asc").read_text().startswith("-----BEGIN PGP")
    info = sh("git", "annex", "info", "output-storage", cwd=clone).stdout
    assert "encryption: sharedpubkey" in info
    # the container is gettable by a job
    sh("datalad", "get", "containers/images/ukb-mini.tar", cwd=clone)


def test_check_passes(analysis: Path):
    out = fairbig("check", cwd=analysis).stdout
    names = [line.split(":")[0].split(None, 1) for line in out.splitlines()]
    assert names == [["ok", n] for n in (
        "tools", "config", "scheduler", "container runtime", "input store",
        "output store", "encryption key", "container")], out


def test_encryption_at_rest(analysis: Path, tmp_path: Path, lab_key: str):
    """A writer with only the public key stores; only the secret key reads."""
    cfg = cfgmod.load(analysis / "fairbig.yaml")
    marker = "FAIRBIG-PLAINTEXT-MARKER-7f3a9c"
    pub_home = gnupg_home("pubonly")
    env = {"GNUPGHOME": str(pub_home)}
    sh("gpg", "--batch", "--import", str(analysis / ".fairbig" / "lab-pubkey.asc"), env=env)
    writer = tmp_path / "writer"
    sh("datalad", "clone", f"{cfg.stores.input}#{dsid(analysis)}", str(writer), env=env)
    sh("git", "config", "annex.gnupg-options", "--trust-model always", cwd=writer)
    for remote in ("output-storage", "input-storage"):
        out = sh("git", "annex", "verifyremote", remote, cwd=writer, env=env, check=False)
        ident = (out.stdout + out.stderr).split("--safe ")[-1].split()[0]
        sh("git", "annex", "verifyremote", remote, "--safe", ident, cwd=writer, env=env)
    (writer / "results" / "probe").mkdir(parents=True)
    (writer / "results" / "probe" / "marker.txt").write_text(marker * 100)
    sh("datalad", "save", "-m", "probe", cwd=writer, env=env)
    sh("git", "annex", "copy", "--to", "output-storage", "results/probe", cwd=writer, env=env)
    sh("git", "push", "-q", str(Path(cfg.stores.output[len("ria+file://"):]) / dsid(analysis)[:3]
                                / dsid(analysis)[3:]), "HEAD:refs/heads/probe", cwd=writer)
    store = Path(cfg.stores.output[len("ria+file://"):])
    hits = sh("grep", "-rl", marker, str(store), check=False)
    assert hits.returncode == 1 and not hits.stdout, f"plaintext in store: {hits.stdout}"
    objects = list(store.rglob("annex/objects/*/*/*/*"))
    assert objects and all(p.name.startswith("GPGHMACSHA1--") for p in objects)

    reader = tmp_path / "reader"
    sh("datalad", "clone", f"{cfg.stores.output}#{dsid(analysis)}", str(reader), env=env)
    sh("git", "checkout", "-q", "probe", cwd=reader)
    # the writer pushed no location log: learn it from the store (no decryption needed)
    sh("git", "annex", "fsck", "--fast", "--from", "output-storage", "results/probe", cwd=reader,
       env=env)
    start = time.monotonic()
    nokey = sh("git", "annex", "get", "results/probe/marker.txt", cwd=reader, env=env,
               check=False)
    assert nokey.returncode != 0
    assert "gpg" in (nokey.stdout + nokey.stderr).lower()
    assert time.monotonic() - start < 30
    assert not (reader / "results" / "probe" / "marker.txt").exists()
    withkey = sh("git", "annex", "get", "results/probe/marker.txt", cwd=reader)
    assert withkey.returncode == 0
    assert (reader / "results" / "probe" / "marker.txt").read_text() == marker * 100


def _assert_nothing_left(base: Path, before: set[str]) -> None:
    assert set(os.listdir(base)) == before, sorted(set(os.listdir(base)) - before)


def _init_args(base: Path, ukb_input: dict, image: Path, key: str, **over: str) -> list[str]:
    args = {"target": str(base / "ana"), "--input": ukb_input["url"], "--container": str(image),
            "--command": "sh code/process_subject.sh {input_dir} {output_dir}",
            "--input-store": str(base / "in"), "--output-store": str(base / "out"),
            "--encrypt-to": key}
    args.update(over)
    return [args.pop("target"), *[x for kv in args.items() for x in kv]]


@pytest.mark.parametrize("case", ["not-a-dataset", "nonempty-target", "unknown-key",
                                  "store-not-ria", "store-is-file", "broken-container",
                                  "missing-input-url"])
def test_bad_input_refused_and_nothing_left(case: str, tmp_path: Path, ukb_input: dict,
                                            image: Path, lab_key: str):
    base = tmp_path / "b"
    base.mkdir()
    over: dict[str, str] = {}
    expect = ""
    if case == "not-a-dataset":
        (base / "plain").mkdir()
        over["--input"], expect = str(base / "plain"), "is not a DataLad dataset"
    elif case == "nonempty-target":
        (base / "ana").mkdir()
        (base / "ana" / "x").write_text("x")
        expect = "exists and is not empty"
    elif case == "unknown-key":
        over["--encrypt-to"], expect = "0123456789ABCDEF", "is not in your keyring"
    elif case == "store-not-ria":
        over["--output-store"], expect = "https://example.org/store", "is not a RIA URL"
    elif case == "store-is-file":
        (base / "out").write_text("x")
        expect = "exists and is not a directory"
    elif case == "broken-container":
        bad = base / "bad.tar"
        with tarfile.open(bad, "w") as tf:
            tf.add(base, arcname=".", recursive=False)
        over["--container"], expect = str(bad), "give a SIF, an OCI or Docker image archive"
    elif case == "missing-input-url":
        over["--input"] = f"ria+file://{base}/nowhere#~ukb"
        expect = "datalad"
    before = set(os.listdir(base))
    proc = fairbig("init", *_init_args(base, ukb_input, image, lab_key, **over), check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) >= 1 and lines[-1].startswith("fairbig: error: "), proc.stderr
    assert expect in lines[-1]
    assert "Traceback" not in proc.stderr
    _assert_nothing_left(base, before)


def test_second_key_encrypts_too(tmp_path: Path, ukb_input: dict, image: Path, lab_key: str):
    """Several lab keys: all are recorded; the set-up is usable."""
    home = gnupg_home("other-home")
    other = make_key(home, "second lab member")
    exported = sh("gpg", "--batch", "--armor", "--export", other,
                  env={"GNUPGHOME": str(home)}).stdout
    subprocess.run(["gpg", "--batch", "--import"], input=exported, text=True, check=True,
                   capture_output=True)
    base = tmp_path / "two"
    base.mkdir()
    args = _init_args(base, ukb_input, image, lab_key)
    fairbig("init", *args, "--encrypt-to", other)
    cfg = cfgmod.load(base / "ana" / "fairbig.yaml")
    assert cfg.encryption.keys == [lab_key, other]


def test_init_takes_settings_from_a_given_config(tmp_path: Path, ukb_input: dict, image: Path,
                                                 lab_key: str):
    base = tmp_path / "cfg"
    base.mkdir()
    given = base / "given.yaml"
    given.write_text(cfgmod.render({
        "stores.input": str(base / "in"), "stores.output": str(base / "out"),
        "encryption.keys": [lab_key], "command": "sh code/process_subject.sh {input_dir} x",
        "backend.slurm.partition": "short", "backend.name": "slurm"}))
    missing = fairbig("init", str(base / "nope"), "--input", ukb_input["url"], "--container",
                      str(image), check=False)
    assert missing.returncode != 0 and "missing --command, --input-store" in missing.stderr
    fairbig("init", str(base / "ana"), "--input", ukb_input["url"], "--container", str(image),
            "--config", str(given), "--command", "sh code/run.sh {input_dir} {output_dir}")
    cfg = cfgmod.load(base / "ana" / "fairbig.yaml")
    assert cfg.backend.slurm.partition == "short" and cfg.backend.name == "slurm"
    assert cfg.command == "sh code/run.sh {input_dir} {output_dir}"  # the flag wins
    assert cfg.stores.output == f"ria+file://{base}/out"


def test_one_main_branch_everywhere(analysis: Path):
    """The branch is ``main`` in the analysis dataset, its containers subdataset and both
    stores (each store's HEAD names it), so ``compare STORE@main``, as the help and README
    write it, works (issue 14 §7: the store's branch was ``master``)."""
    cfg = cfgmod.load(analysis / "fairbig.yaml")
    ident = dsid(analysis)
    out_git = Path(cfg.stores.output.removeprefix("ria+file://")) / ident[:3] / ident[3:]
    in_git = Path(cfg.stores.input.removeprefix("ria+file://")) / ident[:3] / ident[3:]
    for repo in (analysis / ".git", analysis / "containers" / ".git", out_git, in_git):
        head = sh("git", f"--git-dir={repo}", "symbolic-ref", "HEAD").stdout.strip()
        assert head == "refs/heads/main", (repo, head)
        sh("git", f"--git-dir={repo}", "rev-parse", "--verify", "refs/heads/main^{commit}")
    # no results yet, but @main resolves (it was "ref 'main' not found") in both forms
    main = sh("git", f"--git-dir={out_git}", "rev-parse", "main").stdout.strip()
    res = fairbig("compare", f"{out_git}@main", f"{cfg.stores.output}#{ident}@main",
                  cwd=analysis, check=False)
    assert f"no files below results/ in {out_git} at {main[:12]}" in res.stderr, res.stderr
