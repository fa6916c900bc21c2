"""Generate a small BIDS-shaped DataLad dataset whose every file is annexed.

Synthetic data (a few bytes per "image"), but the metadata a BIDS App reads
by inheritance is where BIDS puts it: top-level sidecars (``T1w.json``,
``acq-mprage_T1w.json``, ``task-rest_bold.json``, ``dwi.json``, ``dwi.bval``/
``dwi.bvec``, ``task-rest_events.tsv``), ``participants.tsv``, each subject's
``sub-XX_sessions.tsv`` and each session's ``sub-XX_ses-YY_scans.tsv``. Sidecars are
annexed like the images (no ``text2git``), so a job that does not fetch one does
not see it.

    python examples/bids-mini/generate_input.py /tmp/bids --store ria+file:///tmp/in
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# subject -> {session: datatypes}; "" is a subject without sessions
DEFAULT: dict[str, dict[str, list[str]]] = {
    "sub-01": {"ses-1": ["anat", "func"], "ses-2": ["anat", "func"]},
    "sub-02": {"ses-1": ["func", "dwi"]},
}
TOP_FILES = {
    "dataset_description.json": '{"Name": "bids-mini", "BIDSVersion": "1.9.0"}\n',
    "README": "Synthetic BIDS-shaped data (fairbig bids-mini example); not real data.\n",
    "CHANGES": "1.0.0 2026-12-03\n  - first release\n",
    "participants.json": '{"age": {"Description": "age in years"}}\n',
    "T1w.json": '{"MagneticFieldStrength": 3}\n',
    "acq-mprage_T1w.json": '{"RepetitionTime": 2.3}\n',
    "task-rest_bold.json": '{"TaskName": "rest", "RepetitionTime": 2.0}\n',
    "task-rest_events.tsv": "onset\tduration\ttrial_type\n0\t10\trest\n",
    "dwi.json": '{"PhaseEncodingDirection": "j-"}\n',
    "dwi.bval": "0 1000 1000\n",
    "dwi.bvec": "0 1 0\n0 0 1\n0 0 0\n",
}
DATA = {  # datatype -> name of the data file after "sub-XX[_ses-YY]_"
    "anat": "acq-mprage_T1w.nii.gz",
    "func": "task-rest_bold.nii.gz",
    "dwi": "dwi.nii.gz",
}
QUIET = {"result_renderer": "disabled", "return_type": "list"}


def participant_row(subject: str, age: int = 30) -> str:
    return f"{subject}\t{age}\n"


def write_subject(root: Path, subject: str, sessions: dict[str, list[str]]) -> None:
    """A subject's files (its folder must not exist or be empty)."""
    sub = root / subject
    sub.mkdir(parents=True, exist_ok=True)
    if any(sessions):
        (sub / f"{subject}_sessions.tsv").write_text(
            "session_id\tacq_time\n" + "".join(f"{s}\t2026-01-0{i + 1}\n"
                                               for i, s in enumerate(sessions)))
    for ses, datatypes in sessions.items():
        folder = sub / ses if ses else sub
        prefix = f"{subject}_{ses}_" if ses else f"{subject}_"
        scans = []
        for dt in datatypes:
            name = f"{dt}/{prefix}{DATA[dt]}"
            (folder / dt).mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(f"image {subject} {ses} {dt}\n")
            scans.append(name)
        (folder / f"{prefix}scans.tsv").write_text(
            "filename\n" + "".join(f"{s}\n" for s in scans))


def generate(path: Path, subjects: dict[str, dict[str, list[str]]] | None = None,
             store_url: str | None = None, alias: str = "bids",
             subdatasets: bool = False) -> list[str]:
    """Create the dataset at ``path`` (one subdataset per subject if ``subdatasets``);
    publish it to ``store_url`` if given. Returns the subject folders."""
    import datalad.api as dl

    logging.getLogger("datalad").setLevel(logging.WARNING)
    subjects = DEFAULT if subjects is None else subjects
    dl.create(path=str(path), **QUIET)
    for name, text in TOP_FILES.items():
        (path / name).write_text(text)
    (path / "participants.tsv").write_text(
        "participant_id\tage\n" + "".join(participant_row(s) for s in sorted(subjects)))
    for subject, sessions in sorted(subjects.items()):
        if subdatasets:
            dl.create(path=str(path / subject), **QUIET)
        write_subject(path, subject, sessions)
        if subdatasets:
            dl.save(dataset=str(path / subject), message=f"{subject}", **QUIET)
    dl.save(dataset=str(path), message=f"{len(subjects)} subjects", recursive=True, **QUIET)
    if store_url:
        dl.create_sibling_ria(url=store_url, name="input-store", dataset=str(path),
                              recursive=True, alias=alias, new_store_ok=True, **QUIET)
        publish(path)
    return sorted(subjects)


def edit(path: Path, files: dict[str, str], message: str, store: bool = True) -> None:
    """Write ``files`` (relative path -> text), save, and push to the input store."""
    import datalad.api as dl

    for rel, text in files.items():
        target = path / rel
        if target.is_symlink():
            dl.unlock(path=str(target), dataset=str(path), **QUIET)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    dl.save(dataset=str(path), message=message, recursive=True, **QUIET)
    if store:
        publish(path)


def publish(path: Path) -> None:
    import datalad.api as dl

    dl.push(dataset=str(path), to="input-store", recursive=True, **QUIET)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path, help="where to create the input dataset")
    ap.add_argument("--store", help="RIA URL to publish to, e.g. ria+file:///tmp/input-store")
    ap.add_argument("--subdatasets", action="store_true", help="one subdataset per subject")
    args = ap.parse_args(argv)
    if args.path.exists():
        print(f"generate_input: {args.path} exists (remove it or choose another path)",
              file=sys.stderr)
        return 1
    subjects = generate(args.path, store_url=args.store, subdatasets=args.subdatasets)
    print(f"{len(subjects)} subjects in {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
