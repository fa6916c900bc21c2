"""The lab key on a machine whose GnuPG home has a deep path (issue 14 §1: state only a
warm machine has). Where there is no /run/user/UID, gpg-agent's sockets live in the home,
and a Unix socket path has at most 107 bytes: gpg then fails with a bare "exit status 2"
and lists no secret key, which fairbig must not report as "no secret key"."""

from __future__ import annotations

import os
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
    assert problem and str(deep / gpg.LONGEST_SOCKET) in problem and "107" in problem
    with pytest.raises(FairbigError) as err:
        gpg.require_secret_key([fpr])
    assert "gpg-agent cannot start" in str(err.value) and "ln -s" in err.value.hint
    assert gpg.key_info(fpr).no_agent == problem
