"""Calls into ``datalad.api`` with failures turned into one-line user errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from .errors import FairbigError


def quiet() -> None:
    """DataLad logs progress at INFO to stderr; our own output is what users read."""
    os.environ.setdefault("DATALAD_LOG_LEVEL", "warning")
    logging.getLogger("datalad").setLevel(logging.WARNING)


def call(fn: Callable[..., Any], *args: Any, hint: str = "", **kwargs: Any) -> list[dict]:
    """Call a datalad command; raise :class:`FairbigError` naming the first failure."""
    from datalad.support.exceptions import IncompleteResultsError

    kwargs.setdefault("result_renderer", "disabled")
    kwargs.setdefault("return_type", "list")
    kwargs.setdefault("result_xfm", None)  # plain result records, never Dataset objects
    kwargs.setdefault("on_failure", "ignore")
    try:
        with _stdout_silenced():
            results = fn(*args, **kwargs)
    except IncompleteResultsError as exc:
        results = list(exc.failed or [])
    except Exception as exc:  # datalad raises plain exceptions for bad arguments
        raise FairbigError(f"datalad {_name(fn)}: {_first_line(str(exc))}", hint) from exc
    failed = [r for r in results or [] if r.get("status") in ("error", "impossible")]
    if failed:
        r = failed[0]
        msg = r.get("message") or r.get("error_message") or "failed"
        if isinstance(msg, tuple):
            msg = msg[0] % msg[1:] if len(msg) > 1 else msg[0]
        raise FairbigError(f"datalad {r.get('action', _name(fn))} {r.get('path', '')}: "
                           f"{_first_line(str(msg))}", hint)
    return list(results or [])


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", "datalad").split(".")[0].lower()


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    """Some datalad commands render inner results to stdout whatever we ask; our
    stdout is for the user and for --json, so silence it at the file descriptor."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
