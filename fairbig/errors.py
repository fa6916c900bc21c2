"""Errors users see: one line saying what is wrong and how to fix it."""

from __future__ import annotations


class FairbigError(Exception):
    """A user-facing error; the CLI prints ``fairbig: error: <message> (<hint>)``."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(FairbigError):
    """Invalid configuration; carries every problem found, not just the first."""

    def __init__(self, problems: list[str], source: str = "fairbig.yaml") -> None:
        self.problems = problems
        joined = "; ".join(problems)
        super().__init__(f"{source}: {joined}", "fix the values and run the command again")


class CommandError(FairbigError):
    """An external command failed; quotes the command, exit code and stderr tail."""

    def __init__(self, cmd: list[str], returncode: int, stderr: str, hint: str = "") -> None:
        self.cmd = cmd
        self.returncode = returncode
        self.stderr = stderr
        tail = " | ".join(line.strip() for line in stderr.strip().splitlines()[-3:] if line.strip())
        shown = " ".join(cmd[:6]) + (" …" if len(cmd) > 6 else "")
        super().__init__(f"`{shown}` failed with exit code {returncode}: {tail or 'no output'}",
                         hint)
