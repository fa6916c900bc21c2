"""Validation of every value that ends up in a shell script, a ref or a path.

Job IDs become branch names, file names and environment values in job
scripts; a strict whitelist is the only defence that does not depend on
quoting being right everywhere.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

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
