"""The names fairbig's Python, the job body (templates/*.j2) and workflows/Snakefile
share, each defined once here; the templates get them rendered (render.py), the
Snakefile imports them. The job-ID rule lives in ids.py, the plan's columns in
jobtable.py (HEADER, LIST_SEP).

Standard library only: ``python -m fairbig.jobstep`` imports this in every job.
"""

from __future__ import annotations

import os
import re

# -- paths in the analysis dataset, relative to its root, as git names them --------------
FAIRBIG_DIR = ".fairbig"
PLAN_FILE = f"{FAIRBIG_DIR}/plan.tsv"           # the job table, committed
MERGED_FILE = f"{FAIRBIG_DIR}/merged.tsv"       # job -> input state merged, committed
PUBKEY_FILE = f"{FAIRBIG_DIR}/lab-pubkey.asc"   # the lab's public key(s), committed
WORK_DIR = f"{FAIRBIG_DIR}/work"                # local only (.gitignore), never committed
BIDS_FILTER_DIR = f"{FAIRBIG_DIR}/bids-filters"  # BIDS filter files of a plan, committed
# a BIDS App's scratch output_dir in a job's clone (below WORK_DIR: ignored, never saved)
APP_SCRATCH = f"{WORK_DIR}/bids-app"
# ... and in it (Analysis.work):
STATE = "state"    # a job's <job>.json record, its claim, its cancel mark
LOGS = "logs"      # one <job>.log per job, every backend
RUNS = "runs"      # one directory per submission (and per Snakemake start)
SCHEDULER_SAID = "scheduler-said.json"  # what schedulers said of attempts that ended
PILOT = "pilot.json"  # the jobs `fairbig submit --pilot` ran, which `fairbig estimate` reads
CANCEL_MARK = ".cancel"  # <state>/<job>.cancel: cancel was asked; the job records it

# -- sibling and remote names -------------------------------------------------------------
INPUT = "input"                # the sibling in the input store (jobs clone from it)
OUTPUT = "output"              # the sibling in the output store (jobs push to it)
STORAGE_SUFFIX = "-storage"    # its special remote, e.g. output-storage
OUTPUT_STORAGE = OUTPUT + STORAGE_SUFFIX
INPUT_STORAGE = INPUT + STORAGE_SUFFIX

# -- on the node: a job's work dir is JOB_WORKDIR + job ID + a random suffix ----------------
# set to 1 in a job's environment: its result replaces one for the same input state
# (a forced run, e.g. Snakemake -R); without it the first result for an input state stays
REPLACE_ENV = "FAIRBIG_REPLACE"
JOB_WORKDIR = "fairbig-job-"
# ... made in job.workdir, else in $TMPDIR, else here (and `fairbig rerun`'s clones too).
# Not /tmp: container runtimes and container datasets' own runners (bwrap --tmpfs /tmp,
# apptainer --contain) give the container a private /tmp, which hides a work dir below
# it, so every job failed with "Can't chdir"; /tmp is also often a small RAM tmpfs.
WORKDIR_FALLBACK = "/var/tmp"


def work_base(configured: str = "") -> str:
    """The directory ephemeral clones go to on this machine (see WORKDIR_FALLBACK)."""
    return configured or os.environ.get("TMPDIR") or WORKDIR_FALLBACK


# -- the call format of fairbig's own container dataset: {cmd} arrives as ONE word, which
# the wrapper runs with sh -c; a dataset's own call format (ReproNim's scripts/
# singularity_cmd) splices {cmd} as words, as `datalad containers-run CMD...` typed by a
# user does, so a job hands it the command line unquoted.
CALL_FMT = "sh {img_dspath}/fairbig-container {img} {cmd}"

# -- what a job leaves in the output store --------------------------------------------------
JOB_BRANCH = "job-"                            # + job ID: the job's branch
JOB_REF_PREFIX = "refs/heads/" + JOB_BRANCH
# The subject of a job's run commit, which the store's view parses back.
JOB_MESSAGE = "fairbig job {job_id} (input {input_state})"
JOB_MESSAGE_RE = re.compile(
    re.escape(JOB_MESSAGE).replace(re.escape("{job_id}"), r"(\S+)")
    .replace(re.escape("{input_state}"), r"([0-9a-f]+)"))


def job_message(job_id: str, input_state: str) -> str:
    """The subject of the run commit of ``job_id`` on ``input_state``."""
    return JOB_MESSAGE.format(job_id=job_id, input_state=input_state)


def job_message_printf() -> str:
    """:data:`JOB_MESSAGE` as a printf format of (job ID, input state), for the job body."""
    return JOB_MESSAGE.replace("%", "%%").format(job_id="%s", input_state="%s")
