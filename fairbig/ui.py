"""Output for people (rich on a TTY, plain lines in logs) and for scripts (--json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any


def is_tty() -> bool:
    return sys.stdout.isatty()


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def say(text: str) -> None:
    print(text, flush=True)


def step(text: str) -> None:
    """A progress line on stderr, so --json output on stdout stays parseable."""
    print(f"fairbig: {text}", file=sys.stderr, flush=True)


def table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    rows = [[str(c) for c in r] for r in rows]
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        t = Table(title=title)
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*r)
        Console().print(t)
        return
    say(title)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(columns)]
    say("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for r in rows:
        say("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


class Progress:
    """Counts toward a total: a rich bar on a TTY, a plain line every 10% otherwise."""

    def __init__(self, total: int, label: str, bar: Any = None, task: Any = None) -> None:
        self.total, self.label, self._bar, self._task = total, label, bar, task
        self.done = 0
        self._next = 0

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, description=f"{self.label} {note}".strip())
        elif self.done >= self._next or self.done == self.total:
            step(f"{self.label}: {self.done}/{self.total} {note}".rstrip())
            self._next = self.done + max(1, self.total // 10)


@contextmanager
def progress(total: int, label: str) -> Iterator[Progress]:
    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        with RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), transient=False) as bar:
            yield Progress(total, label, bar, bar.add_task(label, total=total))
    else:
        yield Progress(total, label)
