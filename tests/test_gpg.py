"""The lab key on a machine whose GnuPG home has a deep path (issue 14 §1: state only a
warm machine has). Where there is no /run/user/UID, gpg-agent's sockets live in the home,
and gpg-agent takes a socket path of at most 106 bytes: gpg then fails with a bare "exit status 2"
and lists no secret key, which fairbig must not report as "no secret key"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fairbig import gpg
from fairbig.errors import FairbigError

from .conftest import gnupg_home, make_key


def test_a_deep_gnupg_home_is_named_as_the_cause(tmp_path: Path, monkeypatch):
    short = gnupg_home("deep")
    deep = tmp_path / ("d" * 60) / ("e" * 40) / "gnupg"
    deep.parent.mkdir(parents=True)
    short.rename(deep)
    short.symlink_to(deep)          # the same home under a short path: the agent starts
    fpr = make_key(short)
    os.system(f"GNUPGHOME={short} gpgconf --kill all")
    monkeypatch.setenv("GNUPGHOME", str(short))
    assert gpg.agent_socket_problem() is None
    monkeypatch.setenv("GNUPGHOME", str(deep))
    problem = gpg.agent_socket_problem()
    assert problem and str(deep / gpg.LONGEST_SOCKET) in problem and "106" in problem
    with pytest.raises(FairbigError) as err:
        gpg.require_secret_key([fpr])
    assert "gpg-agent cannot start" in str(err.value) and "ln -s" in err.value.hint
    assert gpg.key_info(fpr).no_agent == problem


def test_the_limit_is_where_gpg_agent_starts_or_not(monkeypatch):
    """106 bytes start an agent, 107 do not (the first failure seen in CI-shaped runs was
    at exactly 107): the check must draw the line where gpg-agent does."""
    base = gnupg_home("limit")  # short, whatever TMPDIR is
    for length, starts in ((106, True), (107, False)):
        pad = length - len(f"{base}/") - len("/h/") - len(gpg.LONGEST_SOCKET)
        home = base / ("p" * pad) / "h"
        home.mkdir(mode=0o700, parents=True)
        assert len(str(home / gpg.LONGEST_SOCKET)) == length
        monkeypatch.setenv("GNUPGHOME", str(home))
        made = subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                               "x <x@example.org>", "default", "default", "never"],
                              capture_output=True).returncode == 0
        subprocess.run(["gpgconf", "--kill", "all"], capture_output=True)
        assert made is starts and (gpg.agent_socket_problem() is None) is starts, length
