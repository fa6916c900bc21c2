"""One place where external commands run, so failures always carry context."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .errors import CommandError


def run(cmd: Sequence[str | os.PathLike[str]], *, cwd: Path | str | None = None,
        input: str | bytes | None = None, env: Mapping[str, str] | None = None,
        check: bool = True, text: bool = True, hint: str = "",
        error: type[CommandError] = CommandError) -> subprocess.CompletedProcess:
    """Run ``cmd`` capturing output; raise ``error`` (a :class:`CommandError`) on failure
    when ``check``. git goes through :mod:`fairbig.gitcmd`, which runs it here."""
    args = [os.fspath(c) for c in cmd]
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(args, cwd=cwd, input=input, env=full_env, capture_output=True,
                              text=text, check=False)
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"{args[0]}: command not found",
                           hint or f"install {args[0]} or put it on PATH") from exc
    if check and proc.returncode != 0:
        stderr = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise error(args, proc.returncode, stderr or (proc.stdout or ""), hint)
    return proc


def run_each(cmd: Sequence[str | os.PathLike[str]], inputs: Sequence[str], *,
             cwd: Path | str | None = None) -> list[subprocess.CompletedProcess]:
    """Run ``cmd`` once per item of ``inputs`` (its stdin), all at once; the results in
    the order of ``inputs``. For batch commands whose cost is round trips to a helper
    process, not CPU of their own (``git annex checkpresentkey --batch`` against the
    ORA remote), so that several of them keep the cores busy where one waits. Each
    runs through :func:`run` in a thread of its own (``subprocess.run`` feeds and
    drains its pipes itself, so none blocks another); if any fails, the first failed
    one in ``inputs`` order raises its :class:`CommandError`, after all have ended."""
    if len(inputs) < 2:
        return [run(cmd, cwd=cwd, input=i) for i in inputs]
    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        futures = [pool.submit(run, cmd, cwd=cwd, input=i) for i in inputs]
    return [f.result() for f in futures]
