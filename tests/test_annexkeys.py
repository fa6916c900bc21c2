"""Availability of annexed results in the encrypted output store (``missing_in``, what
``fairbig merge`` and ``fairbig verify`` ask before they trust a result): real
git-annex against the real ORA remote of a ``fairbig init`` analysis, checked in
several ``checkpresentkey`` processes at once."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fairbig import annexkeys
from fairbig.contract import OUTPUT_STORAGE as STORAGE
from fairbig.errors import CommandError
from fairbig.proc import run_each

from .conftest import init_analysis


def annex(ana: Path, *args: str) -> str:
    return subprocess.run(["git", "annex", *args], cwd=ana, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory, ukb_input, image, lab_key) -> dict:
    """A real analysis (``fairbig init``: encrypted ORA output storage) and keys: six
    whose content is in the output store, encrypted, three annexed only locally, three
    that no repository ever had."""
    ana = init_analysis(tmp_path_factory.mktemp("annexkeys"), ukb_input, image, lab_key)
    scratch = ana / "scratch"
    scratch.mkdir()
    for i in range(9):
        (scratch / f"f{i}").write_text(f"content {i}\n")
    added = [json.loads(line) for line in
             annex(ana, "add", "--force-large", "--json", "scratch").splitlines()]
    key = {Path(a["file"]).name: a["key"] for a in added}
    present = [key[f"f{i}"] for i in range(6)]
    for k in present:
        annex(ana, "copy", "--key", k, "--to", STORAGE)
    return {"ana": ana, "present": present, "local": [key[f"f{i}"] for i in range(6, 9)],
            "never": [f"MD5E-s7--{i:032x}" for i in range(3)]}


def arranged(keys: dict) -> tuple[list[str], list[str]]:
    """Twelve keys in three chunks of four, each chunk with present and absent keys in
    its own order, and the absent ones as ``missing_in`` must return them: reordered
    or dropped chunks, or answers paired with the wrong keys, give another list."""
    p, (l1, l2, l3), (a1, a2, a3) = keys["present"], keys["local"], keys["never"]
    order = [p[0], a1, l1, p[1],    # each chunk's answers differ from the others'
             l2, p[2], a2, p[3],
             p[4], p[5], l3, a3]
    return order, [a1, l1, l2, a2, l3, a3]


@pytest.mark.slow
def test_parallel_check_returns_the_absent_keys_in_order(keys, monkeypatch):
    order, absent = arranged(keys)
    assert annexkeys.missing_in(keys["ana"], STORAGE, order) == absent  # one process
    batches: list[int] = []
    run_each = annexkeys.run_each

    def counted(cmd, inputs, **kw):
        batches.extend(len(i.splitlines()) for i in inputs)
        return run_each(cmd, inputs, **kw)

    monkeypatch.setattr(annexkeys, "run_each", counted)
    monkeypatch.setattr(annexkeys, "_cpus", lambda: 3)
    monkeypatch.setattr(annexkeys, "MIN_KEYS_PER_WORKER", 4)
    assert annexkeys.missing_in(keys["ana"], STORAGE, order) == absent
    assert batches == [4, 4, 4]


@pytest.mark.slow
def test_a_failing_batch_raises_its_error(keys, monkeypatch):
    monkeypatch.setattr(annexkeys, "_cpus", lambda: 3)
    monkeypatch.setattr(annexkeys, "MIN_KEYS_PER_WORKER", 4)
    order, _ = arranged(keys)
    with pytest.raises(CommandError) as err:
        annexkeys.missing_in(keys["ana"], "no-such-storage", order)
    assert err.value.cmd[:4] == ["git", "annex", "checkpresentkey", "--batch"]
    assert err.value.returncode == 1
    assert str(err.value).endswith(
        'git-annex: there is no available git remote named "no-such-storage"')


def test_workers_follow_the_cpus_and_the_minimum(monkeypatch):
    monkeypatch.setattr(annexkeys, "_cpus", lambda: 2)
    per = annexkeys.MIN_KEYS_PER_WORKER
    assert [annexkeys.check_workers(n) for n in (0, 1, 2 * per - 1, 2 * per, 100 * per)] \
        == [1, 1, 1, 2, 2]
    monkeypatch.setattr(annexkeys, "_cpus", lambda: 64)
    assert annexkeys.check_workers(100 * per) == annexkeys.MAX_WORKERS


def test_run_each_answers_in_input_order_and_raises_the_first_failure_in_it():
    # the first input ends last, the second fails last: order is the inputs', not time's
    late = ["sh", "-c", 'read s; sleep "$s"; echo "$s"']
    assert [r.stdout for r in run_each(late, ["0.4\n", "0\n", "0.2\n"])] == \
        ["0.4\n", "0\n", "0.2\n"]
    fail = ["sh", "-c", 'read s c; sleep "$s"; echo "failed $c" >&2; exit "$c"']
    with pytest.raises(CommandError) as err:
        run_each(fail, ["0 0\n", "0.4 3\n", "0 2\n"])
    assert (err.value.returncode, err.value.stderr) == (3, "failed 3\n")
