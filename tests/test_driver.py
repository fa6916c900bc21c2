"""fairbig.driver's Snakemake view: which markers a start asks for, without Snakemake.

The real proof runs Snakemake (tests/test_snakemake.py); these pin the edge
cases at a scale no end-to-end test reaches (42,715 jobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fairbig.dataset import Analysis
from fairbig.driver import FAN_IN, Progress, SnakemakeView

COMMIT = "0123456789ab" + "0" * 28


@dataclass
class Settings:
    """The fields of Snakemake's DAGSettings the view reads."""

    forceall: bool = False
    forcerun: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    forcetargets: bool = False


@dataclass
class Workflow:
    dag_settings: Settings = field(default_factory=Settings)


def view(tmp_path: Path, todo: list[str], unmerged: dict[str, str] | None = None,
         merged: list[str] | None = None, settings: Settings | None = None) -> SnakemakeView:
    v = SnakemakeView(Analysis(tmp_path), {}, Workflow(settings or Settings()))
    v.__dict__["commit"] = COMMIT
    v.__dict__["progress"] = Progress(todo, unmerged or {}, merged or [])
    return v


def test_nothing_to_do_asks_only_for_the_plan(tmp_path):
    v = view(tmp_path, [], merged=["a", "b"])
    assert v.everything() == [str(tmp_path / ".fairbig" / "plan.tsv")]
    assert v.top() == []


def test_42715_jobs_give_short_input_lists(tmp_path):
    ids = [str(1_000_000 + i) for i in range(42_715)]
    v = view(tmp_path, ids)
    assert len(v.top()) <= FAN_IN
    seen = []
    for level in range(1, len(v._levels)):  # every job reaches the top once, via batches
        for index in range(len(v._levels[level])):
            inputs = v.batch_inputs(level, index)
            # a few KB of names, whatever the length of the analysis path (pytest's own)
            names = ", ".join(p.replace(str(tmp_path), "ANA") for p in inputs)
            assert 0 < len(inputs) <= FAN_IN and len(names) < 4096
            if level == 1:
                seen += [Path(p).name for p in inputs]
    assert seen == ids


def test_a_job_without_result_but_with_a_marker_gets_a_new_one(tmp_path):
    v = view(tmp_path, ["a"])
    done = Path(v.marks / COMMIT[:12] / "done" / "a")
    done.parent.mkdir(parents=True)
    done.write_text("old commit\n")
    assert v.needed == {"a": str(v.marks / COMMIT[:12] / "again-1" / "a")}


def test_a_forced_marker_brings_a_merged_job_back_and_renames_the_merge(tmp_path):
    marker = str(tmp_path / ".fairbig" / "work" / "snakemake" / COMMIT[:12] / "done" / "b")
    plain = view(tmp_path, [], merged=["a", "b"])
    forced = view(tmp_path, [], merged=["a", "b"],
                  settings=Settings(forcerun=frozenset({marker})))
    assert forced.needed == {"b": marker}
    assert forced.everything() == [forced.merged()] != plain.everything()
    every = view(tmp_path, [], merged=["a", "b"], settings=Settings(forceall=True))
    assert sorted(every.needed) == ["a", "b"]
    # a forced job may replace its stored result; the others keep theirs
    assert [forced.replace_setting(j) for j in "ab"] == ["FAIRBIG_REPLACE=", "FAIRBIG_REPLACE=1"]
    assert plain.replace_setting("b") == "FAIRBIG_REPLACE="
    assert every.replace_setting("a") == "FAIRBIG_REPLACE=1"


def test_unmerged_branches_alone_ask_for_a_merge(tmp_path):
    v = view(tmp_path, [], unmerged={"a": "1" * 40})
    w = view(tmp_path, [], unmerged={"a": "2" * 40})
    assert v.everything() == [v.merged()] and v.merged() != w.merged()


def test_a_fetched_job_is_asked_for_by_the_same_marker_before_and_after_its_merge(tmp_path):
    """The result rule's input set must not change when the job is merged, or the
    next start refetches (and reruns the host's rules) instead of doing nothing."""
    running = view(tmp_path, ["a"])
    before = running.before_fetch("a")
    assert before == [str(running.marks / COMMIT[:12] / "done" / "a")]
    Path(before[0]).parent.mkdir(parents=True)
    Path(before[0]).write_text("job commit\n")
    assert view(tmp_path, [], merged=["a"]).before_fetch("a") == before
    # finished elsewhere (fairbig submit), no marker: nothing to wait for, nothing to run
    assert view(tmp_path, [], merged=["b"]).before_fetch("b") == []
