#!/usr/bin/env python3
"""Generate a UK-Biobank-shaped input dataset, deterministically from a seed.

One subdataset per participant (7-digit IDs), each holding ZIP records named
``<field>_<instance>_<array>.zip`` like UKB's bulk imaging fields:
``20252`` (T1 structural) and ``20227`` (resting-state fMRI) at instance 2,
and for every third participant a second imaging visit (instance 3). The
bytes inside are synthetic but seeded, so the same seed gives the same
annex keys on every machine.
"""

from __future__ import annotations

import argparse
import io
import logging
import random
import sys
import zipfile
from pathlib import Path

FIELDS = {
    "20252": ("T1/T1.nii.gz", "T1/T1_brain_mask.nii.gz", "T1/T1.json"),
    "20227": ("fMRI/rfMRI.nii.gz", "fMRI/rfMRI_SBREF.nii.gz", "fMRI/rfMRI.json"),
}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def subject_ids(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return sorted(str(i) for i in rng.sample(range(1_000_000, 6_000_000), n))


def record_names(index: int) -> list[str]:
    instances = ["2", "3"] if index % 3 == 2 else ["2"]
    return [f"{field}_{inst}_0.zip" for inst in instances for field in FIELDS]


def make_record(name: str, subject: str, seed: int) -> bytes:
    """A small deterministic ZIP record: synthetic image bytes plus a JSON sidecar."""
    rng = random.Random(f"{seed}:{subject}:{name}")
    field = name.split("_")[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for member in FIELDS[field]:
            if member.endswith(".json"):
                data = f'{{"participant": "{subject}", "record": "{name}"}}\n'.encode()
            else:
                size = rng.randrange(2048, 8192)
                data = bytes(rng.randrange(256) for _ in range(size))
            info = zipfile.ZipInfo(member, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()


def generate(path: Path, n_subjects: int = 12, seed: int = 42,
             store_url: str | None = None, alias: str = "ukb") -> list[str]:
    """Create the superdataset at ``path``; publish to ``store_url`` if given."""
    import datalad.api as dl

    logging.getLogger("datalad").setLevel(logging.WARNING)
    quiet = {"result_renderer": "disabled", "return_type": "list"}
    ids = subject_ids(n_subjects, seed)
    dl.create(path=str(path), **quiet)
    (path / "README.md").write_text(
        "Synthetic UK-Biobank-shaped data (fairbig ukb-mini example); not real data.\n")
    for index, subject in enumerate(ids):
        sub = path / subject
        dl.create(path=str(sub), **quiet)
        for name in record_names(index):
            (sub / name).write_bytes(make_record(name, subject, seed))
        dl.save(dataset=str(sub), message=f"records of {subject}", **quiet)
    dl.save(dataset=str(path), message=f"{n_subjects} participants (seed {seed})", **quiet)
    if store_url:
        dl.create_sibling_ria(url=store_url, name="input-store", dataset=str(path),
                              recursive=True, alias=alias, new_store_ok=True, **quiet)
        dl.push(dataset=str(path), to="input-store", recursive=True, **quiet)
    return ids


def corrupt_record(path: Path, subject: str, record: str, store: bool = True) -> None:
    """Replace a record by garbage (for failure tests) and publish the change."""
    replace_record(path, subject, record, b"this is not a zip archive\n", "corrupt", store)


def restore_record(path: Path, subject: str, record: str, data: bytes,
                   store: bool = True) -> None:
    replace_record(path, subject, record, data, "restore", store)


def replace_record(path: Path, subject: str, record: str, data: bytes, verb: str,
                   store: bool = True) -> None:
    import datalad.api as dl

    quiet = {"result_renderer": "disabled", "return_type": "list"}
    target = path / subject / record
    dl.unlock(path=str(target), dataset=str(path / subject), **quiet)
    target.write_bytes(data)
    dl.save(dataset=str(path), path=[str(target)], recursive=True,
            message=f"{verb} {subject}/{record}", **quiet)
    if store:
        dl.push(dataset=str(path), to="input-store", recursive=True, **quiet)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="where to create the input dataset")
    ap.add_argument("--subjects", type=int, default=12)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--store", help="RIA URL to publish to, e.g. ria+file:///tmp/input-store")
    args = ap.parse_args(argv)
    if args.path.exists():
        print(f"generate_input: {args.path} exists (remove it or choose another path)",
              file=sys.stderr)
        return 1
    ids = generate(args.path, args.subjects, args.seed, args.store)
    print(f"{len(ids)} participants in {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
