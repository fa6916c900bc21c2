"""The lab's GPG key: jobs encrypt with its public half, only the lab decrypts."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import FairbigError
from .proc import run


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    uid: str
    has_secret: bool


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
    return KeyInfo(fpr, uid, sec.returncode == 0)


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


def check_roundtrip(fingerprint: str) -> None:
    """Encrypt and decrypt a probe: proves the secret key is usable (no passphrase prompt)."""
    enc = run(["gpg", "--batch", "--trust-model", "always", "--armor", "--encrypt", "-r",
               fingerprint], input="probe", check=False)
    dec = run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
               "--decrypt"], input=enc.stdout, check=False)
    if enc.returncode != 0 or dec.stdout != "probe":
        raise FairbigError(f"the secret key of {fingerprint} cannot decrypt here",
                           "unlock it in gpg-agent or read results on a machine that has it")
