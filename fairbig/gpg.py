"""The lab's GPG key: jobs encrypt with its public half, only the lab decrypts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import FairbigError
from .proc import run


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    uid: str
    has_secret: bool
    #: why the secret key cannot be used although it may be there (gpg-agent cannot start)
    no_agent: str | None = None


def key_info(keyid: str) -> KeyInfo:
    """Look ``keyid`` up in the user's keyring (GNUPGHOME)."""
    pub = run(["gpg", "--batch", "--with-colons", "--list-keys", keyid], check=False)
    if pub.returncode != 0:
        raise FairbigError(f"GPG key '{keyid}' is not in your keyring",
                           "import the lab's public key with 'gpg --import' or check GNUPGHOME")
    fpr, uid = "", ""
    for line in pub.stdout.splitlines():
        f = line.split(":")
        if f[0] == "fpr" and not fpr:
            fpr = f[9]
        elif f[0] == "uid" and not uid:
            uid = f[9]
    sec = run(["gpg", "--batch", "--with-colons", "--list-secret-keys", fpr], check=False)
    # listing secret keys asks gpg-agent: one that cannot start must not read as "no key"
    return KeyInfo(fpr, uid, sec.returncode == 0,
                   None if sec.returncode == 0 else agent_socket_problem())


def export_public(fingerprints: list[str]) -> str:
    return run(["gpg", "--batch", "--armor", "--export", *fingerprints]).stdout


def check_encrypt(fingerprint: str) -> None:
    """Encrypt a probe so an expired or unusable key is caught before any job runs."""
    res = run(["gpg", "--batch", "--trust-model", "always", "--encrypt", "-r", fingerprint,
               "-o", "/dev/null"], input="probe", check=False)
    if res.returncode != 0:
        raise FairbigError(f"GPG key {fingerprint} cannot encrypt: "
                           f"{res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''}",
                           "use a key with an encryption subkey that has not expired")


# A Unix socket's path has 108 bytes with its NUL, and gpg-agent refuses one of 107
# (measured with GnuPG 2.2.40: 106 starts, 107 fails). It puts its sockets into GNUPGHOME
# when there is no /run/user/UID (compute nodes, containers, su shells), and the longest
# of them is this one.
SOCKET_PATH_MAX = 106
LONGEST_SOCKET = "S.gpg-agent.browser"


def agent_socket_problem() -> str | None:
    """Why gpg-agent cannot start here, if it is the length of its socket path: every
    secret-key use (decrypting a result) then fails with gpg's bare "exit status 2"."""
    res = run(["gpgconf", "--list-dirs", "socketdir"], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return None
    longest = Path(res.stdout.strip()) / LONGEST_SOCKET
    size = len(str(longest).encode())
    if size <= SOCKET_PATH_MAX:
        return None
    return (f"gpg-agent cannot start: its socket {longest} is {size} bytes, over the "
            f"{SOCKET_PATH_MAX} gpg-agent accepts for a socket path")


SHORTER_HOME_HINT = ("give GNUPGHOME a short path, e.g. ln -s \"$GNUPGHOME\" /tmp/gnupg-$USER "
                     "&& export GNUPGHOME=/tmp/gnupg-$USER")


def check_roundtrip(fingerprint: str) -> None:
    """Encrypt and decrypt a probe: proves the secret key is usable (no passphrase prompt)."""
    enc = run(["gpg", "--batch", "--trust-model", "always", "--armor", "--encrypt", "-r",
               fingerprint], input="probe", check=False)
    dec = run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
               "--decrypt"], input=enc.stdout, check=False)
    if enc.returncode != 0 or dec.stdout != "probe":
        socket = agent_socket_problem()
        if socket:
            raise FairbigError(f"the secret key of {fingerprint} cannot decrypt here: {socket}",
                               SHORTER_HOME_HINT)
        raise FairbigError(f"the secret key of {fingerprint} cannot decrypt here",
                           "unlock it in gpg-agent or read results on a machine that has it")


def require_secret_key(keys: list[str]) -> str:
    """The lab key that decrypts here, or one line saying why none does: without it every
    stored object would fail to decrypt and look damaged."""
    no_agent = None
    for keyid in keys:
        try:
            info = key_info(keyid)
        except FairbigError:
            continue
        if info.has_secret:
            check_roundtrip(info.fingerprint)
            return info.fingerprint
        no_agent = no_agent or info.no_agent
    if no_agent:
        raise FairbigError(f"stored results cannot be decrypted here: {no_agent}",
                           SHORTER_HOME_HINT)
    home = os.environ.get("GNUPGHOME", "~/.gnupg")
    raise FairbigError(f"no secret key of the lab key(s) {', '.join(k[-16:] for k in keys)} "
                       f"in your keyring ({home}): stored results cannot be decrypted here",
                       "import the lab's secret key ('gpg --import') or set GNUPGHOME to "
                       "the keyring holding it")
