"""Calls into ``datalad.api`` with failures turned into one-line user errors."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .errors import FairbigError


def quiet() -> None:
    """DataLad logs progress at INFO to stderr; our own output is what users read."""
    logging.getLogger("datalad").setLevel(logging.WARNING)


def call(fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> list[dict]:
    """Call a datalad command; raise :class:`FairbigError` naming the first failure."""
    from datalad.support.exceptions import IncompleteResultsError

    kwargs.setdefault("result_renderer", "disabled")
    kwargs.setdefault("return_type", "list")
    kwargs.setdefault("on_failure", "ignore")
    try:
        results = fn(*args, **kwargs)
    except IncompleteResultsError as exc:
        results = list(exc.failed or [])
    except Exception as exc:  # datalad raises plain exceptions for bad arguments
        raise FairbigError(f"datalad {fn.__name__}: {_first_line(str(exc))}", hint) from exc
    failed = [r for r in results or [] if r.get("status") in ("error", "impossible")]
    if failed:
        r = failed[0]
        msg = r.get("message") or r.get("error_message") or "failed"
        if isinstance(msg, tuple):
            msg = msg[0] % msg[1:] if len(msg) > 1 else msg[0]
        raise FairbigError(f"datalad {r.get('action', fn.__name__)} {r.get('path', '')}: "
                           f"{_first_line(str(msg))}", hint)
    return list(results or [])


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
