"""Validation of every value that ends up in a shell script, a ref or a path.

Job IDs become branch names, file names and environment values in job
scripts; a strict whitelist is the only defence that does not depend on
quoting being right everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import FairbigError

JOB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
PATH_RE = re.compile(r"^[A-Za-z0-9._+=@-][A-Za-z0-9._/+=@-]*$")


def job_id_problem(value: str) -> str | None:
    """Why ``value`` is not a valid job/subject ID, or None if it is."""
    if not JOB_ID_RE.match(value):
        return "must be letters, digits, '.', '_' or '-' and start with a letter or digit"
    if ".." in value:
        return "must not contain '..'"
    if value.endswith(".lock") or value.endswith("."):
        return "must not end in '.lock' or '.'"
    return None


def path_problem(value: str) -> str | None:
    """Why ``value`` is not a safe relative dataset path, or None if it is."""
    if not PATH_RE.match(value):
        return "must be a relative path of letters, digits and ._/+=@-"
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
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
