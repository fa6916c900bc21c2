"""Validation of every value that ends up in a shell script, a ref or a path.

Job IDs become branch names, file names and environment values in job
scripts; a strict whitelist is the only defence that does not depend on
quoting being right everywhere.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

from .errors import FairbigError

# The job-ID rule, the one definition: the characters (a POSIX ERE, so bash's =~ reads
# it as Python does), plus what git refuses in a branch name ("job-<ID>"). The job body
# and workflows/Snakefile get it rendered from here (job_id_bash_function, JOB_ID_WILDCARD).
JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
JOB_ID_NOT_CONTAINING = ".."
JOB_ID_NOT_ENDING = (".lock", ".")
# The same rule as one Python regex without anchors that looks at nothing outside its
# own match (a Snakemake wildcard constraint sits between other parts of a path).
JOB_ID_WILDCARD = (
    JOB_ID_RE.pattern[1:-1].replace(
        "[A-Za-z0-9._-]", rf"(?:[A-Za-z0-9._-](?<!{re.escape(JOB_ID_NOT_CONTAINING)}))")
    + "".join(rf"(?<!{re.escape(s)})" for s in JOB_ID_NOT_ENDING))
PATH_RE = re.compile(r"^[A-Za-z0-9._+=@-][A-Za-z0-9._/+=@-]*$")
_BAD_PARTS = frozenset({"", ".", ".."})  # path components a safe path has none of
# Many values are checked at once joined by _SEP, which no rule above lets through.
_SEP = "\n"


def _bulk(rule: re.Pattern[str]) -> re.Pattern[str]:
    """``rule`` (anchored ``^…$``) for many values at once, each followed by _SEP, so
    that one C-level pass replaces a Python call per value. Derived, not written again:
    the rule's own pattern, which must not match _SEP (a test checks)."""
    assert rule.pattern[0] == "^" and rule.pattern[-1] == "$", rule.pattern
    return re.compile(f"(?:{rule.pattern[1:-1]}{_SEP})*")


_JOB_IDS_RE, _PATHS_RE = _bulk(JOB_ID_RE), _bulk(PATH_RE)


def job_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid job/subject ID, or None if it is."""
    if not JOB_ID_RE.match(value):
        return "must be letters, digits, '.', '_' or '-' and start with a letter or digit"
    if JOB_ID_NOT_CONTAINING in value:
        return f"must not contain '{JOB_ID_NOT_CONTAINING}'"
    if value.endswith(JOB_ID_NOT_ENDING):
        return "must not end in " + " or ".join(f"'{s}'" for s in JOB_ID_NOT_ENDING)
    return None


def job_id_bash_function(name: str) -> str:
    """The job-ID rule as a bash function ``name ID`` (status 0 when valid), rendered into
    the job body: bash's =~ has no lookaround, so the parts are tested one by one, and
    its regex comes from a variable (a quoted regex after =~ is matched literally)."""
    tests = ['[[ $1 =~ $re ]]', f"[[ $1 != *{shlex.quote(JOB_ID_NOT_CONTAINING)}* ]]",
             *(f"[[ $1 != *{shlex.quote(s)} ]]" for s in JOB_ID_NOT_ENDING)]
    return (f"{name}() {{ local re={shlex.quote(JOB_ID_RE.pattern)}; "
            + " && ".join(tests) + "; }")


def path_problem(value: str) -> str | None:
    """Why ``value`` is not a safe relative dataset path, or None if it is."""
    if not PATH_RE.match(value):
        return "must be a relative path of letters, digits and ._/+=@-"
    if not _BAD_PARTS.isdisjoint(value.split("/")):
        return "must not contain empty, '.' or '..' components"
    return None


def _joined(values: Sequence[str]) -> str | None:
    """``values`` each followed by _SEP, or None if one contains _SEP itself (then only
    the value-by-value check can say what is wrong)."""
    text = _SEP.join([*values, ""])
    return text if text.count(_SEP) == len(values) else None


def all_job_ids_valid(values: Sequence[str]) -> bool:
    """True only if :func:`job_id_problem` finds nothing in any of ``values``: the same
    rule in one regex pass and a substring search or two over all of them joined: every
    command reads the plan (43,767 IDs: 10 ms one by one, 2.5 ms so; load 2.6). False
    when in doubt: the caller then names the first bad value with :func:`job_id_problem`."""
    text = _joined(values)
    return (text is not None and _JOB_IDS_RE.fullmatch(text) is not None
            and JOB_ID_NOT_CONTAINING not in text
            and not any(s + _SEP in text for s in JOB_ID_NOT_ENDING))


def all_paths_safe(values: Sequence[str], within: str = _SEP) -> bool:
    """True only if :func:`path_problem` finds nothing in any path of ``values``, each a
    path or several joined by ``within`` (as a plan's columns hold them, so they need not
    be split into a list first); as :func:`all_job_ids_valid` does for IDs (87,534 paths:
    31 ms one by one, 9.5 ms so). Components: with every separator made a '/' and one
    '/' in front, each component of each path stands between two '/'."""
    text = _joined(values)
    if text is None or _PATHS_RE.fullmatch(text.replace(within, _SEP)) is None:
        return False
    slashed = "/" + text.replace(_SEP, "/").replace(within, "/")
    return not any(f"/{part}/" in slashed for part in _BAD_PARTS)


def require_planned(values: Iterable[str], planned: set[str]) -> None:
    """Refuse IDs that are unsafe or not in the plan, naming them: a command acting on
    "these jobs" must not quietly act on none."""
    values = list(values)
    bad = [v for v in values if job_id_problem(v)]
    if bad:
        raise FairbigError(f"invalid job ID {bad[0]!r}: {job_id_problem(bad[0])}",
                           "give job IDs as 'fairbig status --all' lists them")
    unknown = sorted(set(values) - planned)
    if unknown:
        shown = ", ".join(unknown[:5]) + (" …" if len(unknown) > 5 else "")
        raise FairbigError(f"not in the plan: {shown}",
                           "check the IDs with 'fairbig status --all'")
