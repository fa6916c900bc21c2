"""Reading the plan (issue 20 §5): its IDs and paths are checked all at once
(ids.all_job_ids_valid, ids.all_paths_safe), and row by row only to name the first
bad row. The all-at-once check must never accept what the one-value rules
(ids.job_id_problem, ids.path_problem) refuse, and must accept what they accept, or
every plan would be read twice. Pure: no repository."""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from unittest import mock

import pytest

from fairbig import ids, jobtable
from fairbig.errors import FairbigError
from fairbig.ids import all_job_ids_valid, all_paths_safe, job_id_problem, path_problem
from fairbig.jobtable import HEADER, LIST_SEP, Job, parse_tsv, render_tsv

# Hand-picked: each rule's edges (ids.py's JOB_ID_RE, JOB_ID_NOT_CONTAINING,
# JOB_ID_NOT_ENDING, PATH_RE, _BAD_PARTS) and what a hand-edited plan might hold.
IDS = ["1234567", "sub-01", "sub-01_ses-2", "a", "a" * 128, "a" * 129, "a.b", "lock",
       "a.lockb", "x.lock", "x.", "a..b", "..", ".", ".a", "-a", "_a", "a/b", "a b", "a'b",
       "a$b", "é", "", "sub-01.lock.d", "a.-b", "a\tb", " a", "a ", "a.lock.", "a...",
       "ａ", "a\u00a0", "a,b", "0", "Z9", "a_", "a-", ".lock", "x.LOCK"]
PATHS = ["inputs/data/1000001", "results/sub-01/ses-1", "a", "a/b", ".a", "a/.b", "a.",
         "a/b.", "...", "a/.../b", "a..b", "-x", "+x", "=x", "@x", "x@y=z+w-v_u.t",
         "", ".", "..", "./x", "x/.", "x/..", "../x", "a/../b", "a/./b", "//", "/x", "x/",
         "a//b", "/", "a b", "a\tb", "é", "a/é", "a,b", "a\\b", "a:b", "~x", "a*", "x/./",
         "ｘ", "a\u2028b", "a\rb"]
ID_ALPHABET = ["a", "Z", "0", "9", ".", ".", "_", "-", "l", "o", "c", "k", "/", " ", "\t",
               "é", "$"]
PATH_ALPHABET = ["a", "0", ".", ".", "/", "/", "-", "_", "+", "=", "@", " ", "\t", "é", ":"]


def random_values(alphabet: list[str], n: int, seed: int) -> list[str]:
    """Short strings over ``alphabet``: dense in its awkward characters, so runs like
    '..', '/./', a trailing '.' or '.lock' and empty values come up often."""
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 7))) for _ in range(n)]


def groups(values: list[str], seed: int) -> Iterator[list[str]]:
    """``values`` in random groups of 0 to 6, most of them valid-heavy (a plan is)."""
    rng = random.Random(seed)
    for _ in range(3000):
        yield rng.sample(values, rng.randint(0, 6))


@pytest.mark.parametrize(("bulk", "problem", "picked", "alphabet"), [
    (all_job_ids_valid, job_id_problem, IDS, ID_ALPHABET),
    (all_paths_safe, path_problem, PATHS, PATH_ALPHABET),
], ids=["job_ids", "paths"])
def test_all_at_once_agrees_with_the_one_value_rule(
        bulk: Callable[[list[str]], bool], problem: Callable[[str], str | None],
        picked: list[str], alphabet: list[str]):
    values = picked + random_values(alphabet, 3000, seed=20)
    for v in values:
        assert bulk([v]) == (problem(v) is None), v
    for group in groups(values, seed=5):
        assert bulk(group) == all(problem(v) is None for v in group), group
    # each bad value alone among many good ones, first, in the middle or last
    good = [v for v in values if problem(v) is None][:50]
    for bad in (v for v in values if problem(v) is not None):
        for at in (0, 25, 50):
            assert not bulk([*good[:at], bad, *good[at:]]), (bad, at)


def test_a_value_holding_the_separator_is_never_accepted_at_once():
    # a plan's fields hold no newline (it splits lines first); a caller's value that
    # does is left to the one-value rule, whatever that says of it
    for v in ("a\nb", "a\n", "\n", "a/\n./b"):
        assert not all_job_ids_valid([v]) and not all_paths_safe([v])


def test_the_bulk_patterns_are_the_rules_and_cannot_match_the_separator():
    for rule, bulk in ((ids.JOB_ID_RE, ids._JOB_IDS_RE), (ids.PATH_RE, ids._PATHS_RE)):
        body = rule.pattern[1:-1]
        assert bulk.pattern == f"(?:{body}{ids._SEP})*"
        assert re.search(body, ids._SEP) is None and re.fullmatch(body, f"a{ids._SEP}a") is None


def test_paths_joined_within_cells_agree_with_the_paths_split():
    rng = random.Random(7)
    values = PATHS + random_values(PATH_ALPHABET, 2000, seed=8)
    for _ in range(3000):
        cells = [LIST_SEP.join(rng.sample(values, rng.randint(1, 4)))
                 for _ in range(rng.randint(0, 3))]
        paths = [p for c in cells for p in c.split(LIST_SEP)]
        expected = all(path_problem(p) is None for p in paths)
        assert all_paths_safe(cells, LIST_SEP) == expected, cells


# ------------------------------------------------------------------ parse_tsv

def plan_rows(n: int, paths_per_row: int = 2) -> list[list[str]]:
    """``n`` good rows as fields; ``paths_per_row`` > 2 adds top-level files every row
    inherits, as a BIDS plan has them."""
    inherited = [f"inputs/data/f{i}.json" for i in range(paths_per_row - 2)]
    return [[f"sub-{i:03d}", f"sub-{i:03d}", "", "a" * 40,
             LIST_SEP.join([f"inputs/data/sub-{i:03d}", *inherited]),
             f"results/sub-{i:03d}", "sh x {input_dir}"] for i in range(n)]


def text_of(rows: list[list[str]]) -> str:
    return "\t".join(HEADER) + "\n" + "".join("\t".join(f) + "\n" for f in rows)


def row_by_row(text: str) -> list[Job] | str:
    """parse_tsv as it was: every row checked one by one (the error, or the jobs)."""
    with mock.patch.object(jobtable, "_rows_valid", lambda rows: False):
        return outcome(text)


def outcome(text: str) -> list[Job] | str:
    try:
        return parse_tsv(text)
    except FairbigError as e:
        return str(e)


@pytest.mark.parametrize("paths_per_row", [2, 5])
def test_a_bad_row_is_named_by_its_line_as_before(paths_per_row: int):
    rng = random.Random(paths_per_row)
    n = 40
    def one_field(v: str) -> bool:     # a bad value that stays one field of one row
        return "\t" not in v and LIST_SEP not in v and v.splitlines() in ([], [v])
    bad_ids = [v for v in IDS + random_values(ID_ALPHABET, 300, seed=1)
               if job_id_problem(v)]
    bad_paths = [v for v in PATHS + random_values(PATH_ALPHABET, 300, seed=2)
                 if path_problem(v)]
    for case in range(600):
        rows = plan_rows(n, paths_per_row)
        at = (0, n // 2, n - 1, rng.randrange(n))[case % 4]
        kind = case % 5
        bad = ""
        if kind == 0:
            bad = rows[at][0] = rng.choice(bad_ids)
            expected = f"has a job ID {bad!r} that {job_id_problem(bad)}"
        elif kind in (1, 2):     # a bad input (first or after the inherited ones) or output
            bad = rng.choice(bad_paths)
            column = 4 if kind == 1 else 5
            where = rng.choice((0, -1))
            parts = rows[at][column].split(LIST_SEP)
            parts[where] = bad
            rows[at][column] = LIST_SEP.join(parts)
            expected = f"has a path {bad!r} that {path_problem(bad)}"
        elif kind == 3:
            rows[at] = rows[at][:rng.choice((0, 1, 6))] or [""]
            expected = f"has {len(rows[at])} fields, not {len(HEADER)}"
        else:
            rows[at] = [*rows[at], "extra"]
            expected = f"has {len(HEADER) + 1} fields, not {len(HEADER)}"
        text = text_of(rows)
        got = outcome(text)
        assert got == row_by_row(text), (got, at)
        if one_field(bad):      # else the line or field count is what is wrong, if anything
            assert isinstance(got, str), bad
            assert got.startswith(f"line {at + 2} of the plan file {expected} (run "), got


def test_good_plans_parse_as_before_and_roundtrip():
    for n, per_row in ((0, 2), (1, 2), (50, 2), (50, 6)):
        text = text_of(plan_rows(n, per_row))
        jobs = parse_tsv(text)
        assert jobs == row_by_row(text) and len(jobs) == n
        assert render_tsv(jobs) == text
    # a row with several paths reaches the job as a tuple, split at LIST_SEP only
    job = parse_tsv(text_of(plan_rows(1, 4)))[0]
    assert job.inputs == ("inputs/data/sub-000", "inputs/data/f0.json", "inputs/data/f1.json")
    assert job.outputs == ("results/sub-000",)


def test_line_ends_other_than_newline_are_lines_as_before():
    # str.splitlines() ends a line at '\r' and '\x1e' too: a plan saved with CRLF reads
    # as before, a row split by a stray separator is refused as before
    rows = plan_rows(3)
    crlf = text_of(rows).replace("\n", "\r\n")
    assert parse_tsv(crlf) == parse_tsv(text_of(rows))
    rows[1][4] = "inputs/data/sub-001\x1ex"
    assert outcome(text_of(rows)) == row_by_row(text_of(rows))
    assert outcome(text_of(rows)).startswith("line 3 of the plan file has 5 fields, not 7")
