"""``fairbig.yaml``: typed, validated up front, comments kept on rewrite.

Each setting is declared once, below, with its default and its help text
(``field(metadata={"help": …})``, the pattern of Snakemake's executor plugins);
:func:`default_text` writes the commented file ``fairbig init`` starts from out of
those declarations, so a new setting is documented where it is defined.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import textwrap
import types
import typing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .backends import NAMES as BACKEND_NAMES
from .contract import WORKDIR_FALLBACK
from .errors import ConfigError, FairbigError
from .ids import path_problem
from .jobtable import PLACEHOLDERS
from .secondary import SECONDARY_PLACEHOLDER
from .stores import LOCAL_SCHEME, local_root

CONFIG_NAME = "fairbig.yaml"
LAYOUTS = ("auto", "ukb", "bids")
RESULTS_LAYOUTS = ("flat", "bids")
JOB_UNITS = ("subject", "session")
COMMAND_PLACEHOLDERS = PLACEHOLDERS  # filled per job by fairbig (jobtable.py)
DATALAD_PLACEHOLDERS = ("inputs", "outputs")  # datalad run fills these itself


def setting(default: Any, help: str) -> Any:
    """A field with its default and the comment written above it in ``fairbig.yaml``;
    a list default or a section (a dataclass) becomes a fresh copy per instance."""
    meta = {"help": help}
    if isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class StoresConfig:
    input: str = setting("", "Where jobs clone this analysis dataset from.")
    output: str = setting("", "Where results go: job branches and encrypted annexed content.")


@dataclass
class EncryptionConfig:
    keys: list[str] = setting([], "GPG key fingerprint(s) of the lab. Jobs encrypt with the"
                              " public key only; reading results needs the secret key. File"
                              " names and history stay readable.")
    mode: str = setting("sharedpubkey", "git-annex encryption scheme: only sharedpubkey"
                        " (jobs need no secret key) is supported.")


INPUT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")  # {input_dir:NAME}


@dataclass
class SecondaryInput:
    """A further input dataset (e.g. fMRIPrep derivatives beside the raw BIDS data): the
    jobs stay those of the primary one (``inputs.path``); each job also gets this
    dataset's folder of its subject (and session, where it has one)."""

    name: str = setting("", "Its name in the command's {input_dir:NAME}.")
    path: str = setting("", "The dataset (a subdataset of this dataset), e.g."
                        " inputs/fmriprep.")


@dataclass
class InputsConfig:
    path: str = setting("inputs/data", "The input dataset (a subdataset of this dataset).")
    layout: str = setting("auto", "auto (detected) | ukb (one subdataset per subject) |"
                          " bids (sub-*/[ses-*/] folders or subject subdatasets)")
    by: str = setting("subject", "One job per subject, or per subject and session"
                      f" ({' | '.join(JOB_UNITS)}).")
    only: list[str] = setting([], "Plan only these subject or job IDs ([] = all)."
                              " `fairbig plan --by/--only/--exclude` set by, only and"
                              " exclude, `fairbig plan --all` clears only and exclude;"
                              " a plain `fairbig plan` plans what they select.")
    exclude: list[str] = setting([], "Leave out these subject or job IDs.")
    required_files: list[str] = setting([], "BIDS: plan a job only if its subject/session"
                                        " folder has a file matching each of these patterns"
                                        " (relative to the folder, e.g. 'anat/*_T1w.nii*');"
                                        " the others are listed as skipped.")
    ignore_columns: list[str] = setting([], "BIDS: columns of participants.tsv left out of"
                                        " its rows' input state, so adding one (e.g."
                                        " handedness) keeps done jobs done; a removed"
                                        " column cannot be ignored, and participant_id not.")
    bids_emptyroom: bool = setting(False, "BIDS: plan sub-emptyroom (MEG empty-room noise"
                                   " recordings) as a subject; left out by default.")
    secondary: list[SecondaryInput] = setting([], "BIDS: further input datasets, each"
                                              " {name: NAME, path: PATH} (e.g. fMRIPrep"
                                              " output for XCP-D); a job gets each one's"
                                              " sub-XX folder (of its session: sub-XX/ses-YY"
                                              " and what is not in another session), in"
                                              " the command as {input_dir:NAME}; a subject"
                                              " one of them lacks is skipped.")


@dataclass
class JobConfig:
    workdir: str = setting("", "Node-local directory for the ephemeral clones"
                           f" (\"\" = $TMPDIR, else {WORKDIR_FALLBACK}: not /tmp, which"
                           " containers replace).")
    env_setup: list[str] = setting([], "Shell lines run first in every job, e.g."
                                   " \"module load datalad\".")
    push_lock_timeout: int = setting(3600, "Seconds a job waits for the output store's push"
                                     " lock before it fails (it logs who holds the lock"
                                     " after a short wait).")


@dataclass
class LocalConfig:
    jobs: int = setting(0, "Jobs at once (0 = one per core).")


@dataclass
class SlurmConfig:
    partition: str = setting("", "Partition (#SBATCH --partition; \"\" = the cluster's"
                             " default).")
    account: str = setting("", "Account charged (#SBATCH --account; \"\" = your default).")
    qos: str = setting("", "Quality of service (#SBATCH --qos; \"\" = the default).")
    time: str = setting("01:00:00", "Time limit of each job, e.g. 01:00:00 or 1-00:00.")
    mem: str = setting("4G", "Memory of each job, e.g. 4G.")
    cpus: int = setting(1, "CPUs of each job (#SBATCH --cpus-per-task).")
    throttle: int = setting(0, "Array concurrency limit (%N), 0 = none.")
    extra: list[str] = setting([], "Extra header lines, each \"#SBATCH --option=value\".")


@dataclass
class HTCondorConfig:
    request_cpus: int = setting(1, "CPUs of each job.")
    request_memory: str = setting("4GB", "Memory of each job, e.g. 4GB.")
    request_disk: str = setting("4GB", "Scratch disk of each job, e.g. 4GB.")
    maxjobs: int = setting(0, "DAGMan limit of jobs in the queue at once (0 = none).")
    maxidle: int = setting(0, "DAGMan limit of idle jobs (0 = none).")
    retry: int = setting(0, "Times DAGMan retries a failed job (0 = none).")
    extra: list[str] = setting([], "Extra submit lines, each \"key = value\".")


RUNTIMES = ("bwrap", "apptainer", "singularity", "podman", "docker")
GPU_RUNTIMES = ("apptainer", "singularity", "podman", "docker")


@dataclass
class RuntimeArgsConfig:
    bwrap: list[str] = field(default_factory=list, metadata={
        "help": "Extra bwrap options, one word each (e.g. --cap-drop ALL)."})
    apptainer: list[str] = field(default_factory=list, metadata={
        "help": "Extra 'apptainer exec' options, one word each (e.g. --writable-tmpfs)."})
    singularity: list[str] = field(default_factory=list, metadata={
        "help": "Extra 'singularity exec' options, one word each."})
    podman: list[str] = field(default_factory=list, metadata={
        "help": "Extra 'podman run' options, one word each (e.g. --memory=8g)."})
    docker: list[str] = field(default_factory=list, metadata={
        "help": "Extra 'docker run' options, one word each."})


@dataclass
class RuntimeConfig:
    """How the container runs. Node-specific, so never part of a run record: jobs,
    `fairbig check` and `fairbig rerun` hand these to containers/fairbig-container as
    FAIRBIG_CONTAINER_* variables (fairbig/sandbox.py)."""

    name: str = field(default="auto", metadata={
        "help": "auto (apptainer, singularity, bwrap, podman: the first found on the"
                " node) or one of bwrap, apptainer, singularity, podman, docker."})
    binds: list[str] = field(default_factory=list, metadata={
        "help": "Host paths made visible inside, each HOST[:CONTAINER][:ro|rw] (absolute"
                " paths, read-only unless :rw), e.g. /opt/fs/license.txt:/license.txt."})
    env: list[str] = field(default_factory=list, metadata={
        "help": "Variables passed in besides PATH, HOME=/tmp, LANG=C and FAIRBIG_PIPELINE_*:"
                " NAME (its value on the node) or NAME=VALUE."})
    gpus: int = field(default=0, metadata={
        "help": "GPUs per job (0 = none): asks the scheduler for them (--gres=gpu:N,"
                " request_gpus) and gives them to the container (--nv, --device ...)."})
    gpu_vendor: str = field(default="nvidia", metadata={"help": "nvidia or amd."})
    args: RuntimeArgsConfig = field(default_factory=RuntimeArgsConfig, metadata={
        "help": "Extra options per runtime, for what fairbig does not model."})


@dataclass
class BackendConfig:
    name: str = setting("local", f"Where jobs run: {' | '.join(BACKEND_NAMES)}.")
    local: LocalConfig = setting(LocalConfig, "Jobs as processes on this machine.")
    slurm: SlurmConfig = setting(SlurmConfig, "SLURM: one job array per submission.")
    htcondor: HTCondorConfig = setting(HTCondorConfig, "HTCondor: one DAG per submission.")


@dataclass
class Config:
    stores: StoresConfig = setting(StoresConfig, "The RIA stores, each a ria+file:///path"
                                   " URL on a file system every job node shares.")
    encryption: EncryptionConfig = setting(EncryptionConfig, "How results are encrypted in"
                                           " the output store.")
    inputs: InputsConfig = setting(InputsConfig, "What is processed: the input dataset and"
                                   " the IDs a plain `fairbig plan` plans.")
    container: str = setting("", "Container to run the pipeline in (datalad-container name,"
                             " with its dataset).")
    command: str = setting("", "The pipeline call, run inside the container from the dataset"
                           " root. Placeholders: "
                           + " ".join(f"{{{p}}}" for p in COMMAND_PLACEHOLDERS)
                           + ", and datalad's "
                           + " ".join(f"{{{p}}}" for p in DATALAD_PLACEHOLDERS) + ".")
    results: str = setting("results", "Results go below this folder, one folder per job.")
    results_layout: str = setting("flat", "flat: each job writes <results>/<job ID>/ |"
                                  " bids: a BIDS-derivatives dataset, each job writes"
                                  " <results>/sub-XX/[ses-YY/] and fairbig writes"
                                  " <results>/dataset_description.json (BIDS inputs only).")
    job: JobConfig = setting(JobConfig, "How every job runs, whatever the backend.")
    runtime: RuntimeConfig = setting(RuntimeConfig, "How the container runs on the nodes:"
                                     " runtime, binds, environment, GPUs.")
    backend: BackendConfig = setting(BackendConfig, "Where jobs run, and each backend's"
                                     " settings.")


_FPR_RE = re.compile(r"^[0-9A-Fa-f]{16}([0-9A-Fa-f]{24})?$")
_SLURM_TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
_SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]?i?B?$", re.IGNORECASE)
_SAFE_WORD_RE = re.compile(r"^[A-Za-z0-9._,=:@+-]*$")
_PLACEHOLDERS = {*COMMAND_PLACEHOLDERS, *DATALAD_PLACEHOLDERS}


def _convert(tp: Any, value: Any, where: str, problems: list[str]) -> Any:
    """Build ``tp`` from plain YAML data, recording problems instead of raising."""
    if dataclasses.is_dataclass(tp):
        if value is None:
            return tp()
        if not isinstance(value, dict):
            problems.append(f"{where or 'the file'} must be a mapping")
            return tp()
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        for key in value:
            if key not in names:
                problems.append(f"unknown setting '{where}{'.' if where else ''}{key}'"
                                f" (known: {', '.join(sorted(names))})")
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in value:
                sub = f"{where}.{f.name}" if where else f.name
                kwargs[f.name] = _convert(hints[f.name], value[f.name], sub, problems)
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if value is None:
            return []
        if not isinstance(value, list):
            problems.append(f"{where} must be a list")
            return []
        return [_convert(item_tp, v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(tp, types.UnionType):
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{where} must be a whole number, not {value!r}")
            return 0
        return value
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            problems.append(f"{where} must be a string, not {value!r}")
            return ""
        return str(value)
    return value


def validate(cfg: Config) -> list[str]:
    """Every problem with ``cfg``; empty when it is usable."""
    p: list[str] = []
    for name in ("input", "output"):
        url = getattr(cfg.stores, name)
        if not url:
            p.append(f"stores.{name} is missing (a {LOCAL_SCHEME}/absolute/path URL)")
        elif local_root(url) is None:
            p.append(f"stores.{name} '{url}' is not a {LOCAL_SCHEME}/absolute/path URL"
                     " (fairbig reads and writes stores directly: ria+ssh and ria+http stores"
                     " are not supported)")
    if cfg.encryption.mode != "sharedpubkey":
        p.append(f"encryption.mode '{cfg.encryption.mode}' is not supported"
                 " (only 'sharedpubkey' keeps results unreadable without the lab's key)")
    if not cfg.encryption.keys:
        p.append("encryption.keys is empty (give the lab's GPG key fingerprint)")
    p += [f"encryption.keys: '{k}' is not a GPG key ID or fingerprint"
          for k in cfg.encryption.keys if not _FPR_RE.match(k)]
    for name, val in (("inputs.path", cfg.inputs.path), ("results", cfg.results)):
        if problem := path_problem(val):
            p.append(f"{name} '{val}' {problem}")
    if cfg.inputs.layout not in LAYOUTS:
        p.append(f"inputs.layout '{cfg.inputs.layout}' must be one of {', '.join(LAYOUTS)}")
    if cfg.results_layout not in RESULTS_LAYOUTS:
        p.append(f"results_layout '{cfg.results_layout}' must be one of"
                 f" {', '.join(RESULTS_LAYOUTS)}")
    if cfg.results_layout == "bids" and cfg.inputs.layout == "ukb":
        p.append("results_layout 'bids' needs BIDS inputs (sub-XX subjects);"
                 " inputs.layout is ukb: set results_layout to flat")
    if cfg.inputs.by not in JOB_UNITS:
        p.append(f"inputs.by '{cfg.inputs.by}' must be one of {', '.join(JOB_UNITS)}")
    if not isinstance(cfg.inputs.bids_emptyroom, bool):
        p.append(f"inputs.bids_emptyroom {cfg.inputs.bids_emptyroom!r} must be true or false")
    p += [f"inputs.required_files: {pat!r} must be a pattern relative to the job's folder"
          for pat in cfg.inputs.required_files if not pat or pat.startswith("/")]
    p += [f"inputs.ignore_columns: {col!r} must be a column name of participants.tsv"
          " (not participant_id, its key)"
          for col in cfg.inputs.ignore_columns
          if not isinstance(col, str) or not col or "\t" in col or col == "participant_id"]
    if not cfg.container or path_problem(cfg.container):
        p.append(f"container '{cfg.container}' must name a container, e.g. containers/ukb-mini")
    p += _secondary_problems(cfg.inputs)
    p += _command_problems(cfg.command, [s.name for s in cfg.inputs.secondary])
    if cfg.backend.name not in BACKEND_NAMES:
        p.append(f"backend.name '{cfg.backend.name}' must be one of {', '.join(BACKEND_NAMES)}")
    if cfg.backend.local.jobs < 0:
        p.append("backend.local.jobs must be 0 (one per core) or more")
    wd = cfg.job.workdir
    if wd and (not wd.startswith("/") or not wd.isprintable()):
        p.append(f"job.workdir {wd!r} must be an absolute path on one line (or \"\" for"
                 f" $TMPDIR, else {WORKDIR_FALLBACK}); it is used as written, variables are"
                 " not expanded")
    if cfg.job.push_lock_timeout < 1:
        p.append(f"job.push_lock_timeout {cfg.job.push_lock_timeout} must be 1 second or more")
    p += _runtime_problems(cfg.runtime)
    p += _slurm_problems(cfg.backend.slurm)
    p += _htcondor_problems(cfg.backend.htcondor)
    return p


def _secondary_problems(inputs: InputsConfig) -> list[str]:
    """Names reach the command as {input_dir:NAME}, paths are subdatasets of their own."""
    p, seen = [], {inputs.path}
    for i, s in enumerate(inputs.secondary):
        where = f"inputs.secondary[{i}]"
        if not INPUT_NAME_RE.match(s.name):
            p.append(f"{where}.name {s.name!r} must be a letter, then letters, digits, _ or -")
        if problem := path_problem(s.path):
            p.append(f"{where}.path {s.path!r} {problem}")
        elif s.path in seen:
            p.append(f"{where}.path {s.path!r} is another input's path too")
        seen.add(s.path)
    names = [s.name for s in inputs.secondary]
    p += [f"inputs.secondary: name {n!r} is given twice" for n in sorted(set(names))
          if names.count(n) > 1]
    if inputs.secondary and inputs.layout == "ukb":
        p.append("inputs.secondary needs a BIDS primary dataset (inputs.layout bids or auto)")
    return p


def _command_problems(command: str, inputs: list[str] | None = None) -> list[str]:
    if not command.strip():
        return ["command is missing (the pipeline call, e.g. 'sh code/run.sh {input_dir} "
                "{output_dir}')"]
    names = set(re.findall(r"{([^{}]*)}", command.replace("{{", "").replace("}}", "")))
    known = _PLACEHOLDERS | {f"{SECONDARY_PLACEHOLDER}:{n}" for n in inputs or ()}
    unknown = sorted(names - known)
    if unknown:
        return [f"command uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}"
                f" (known: {', '.join(sorted(known))})"]
    return []


def _runtime_problems(r: RuntimeConfig) -> list[str]:
    from .sandbox import bind_problem, env_problem

    p = []
    if r.name != "auto" and r.name not in RUNTIMES:
        p.append(f"runtime.name '{r.name}' must be auto or one of {', '.join(RUNTIMES)}")
    p += [f"runtime.binds[{i}] {b!r} {problem}" for i, b in enumerate(r.binds)
          if (problem := bind_problem(b))]
    p += [f"runtime.env[{i}] {e!r} {problem}" for i, e in enumerate(r.env)
          if (problem := env_problem(e))]
    if r.gpus < 0:
        p.append("runtime.gpus must be 0 (none) or more")
    if r.gpu_vendor not in ("nvidia", "amd"):
        p.append(f"runtime.gpu_vendor '{r.gpu_vendor}' must be nvidia or amd")
    if r.gpus and r.name == "bwrap":
        p.append(f"runtime.gpus {r.gpus} needs a runtime that passes GPUs in"
                 f" ({', '.join(GPU_RUNTIMES)}); runtime.name is bwrap")
    for name in RUNTIMES:
        p += [f"runtime.args.{name}[{i}] {w!r} must be one line"
              for i, w in enumerate(getattr(r.args, name)) if not w.isprintable()]
    return p


def _slurm_problems(s: SlurmConfig) -> list[str]:
    p = []
    for name in ("partition", "account", "qos"):
        if not _SAFE_WORD_RE.match(getattr(s, name)):
            p.append(f"backend.slurm.{name} '{getattr(s, name)}' has characters SLURM does not"
                     " accept")
    if not _SLURM_TIME_RE.match(s.time):
        p.append(f"backend.slurm.time '{s.time}' is not a SLURM time (e.g. 01:00:00 or 1-00:00)")
    if not _SIZE_RE.match(s.mem):
        p.append(f"backend.slurm.mem '{s.mem}' is not a size (e.g. 4G)")
    if s.cpus < 1:
        p.append("backend.slurm.cpus must be at least 1")
    if s.throttle < 0:
        p.append("backend.slurm.throttle must be 0 (no limit) or more")
    p += [f"backend.slurm.extra[{i}] must be a single '#SBATCH --option' line"
          for i, line in enumerate(s.extra) if not _header_line_ok(line, "#SBATCH ")]
    return p


def _htcondor_problems(h: HTCondorConfig) -> list[str]:
    p = []
    for name in ("request_memory", "request_disk"):
        if not _SIZE_RE.match(getattr(h, name)):
            p.append(f"backend.htcondor.{name} '{getattr(h, name)}' is not a size (e.g. 4GB)")
    for name in ("request_cpus", "maxjobs", "maxidle", "retry"):
        if getattr(h, name) < 0:
            p.append(f"backend.htcondor.{name} must not be negative")
    p += [f"backend.htcondor.extra[{i}] must be one 'key = value' submit line"
          for i, line in enumerate(h.extra) if not _header_line_ok(line, "")
          or "=" not in line]
    return p


def _header_line_ok(line: str, prefix: str) -> bool:
    """A site line must stay one line and not smuggle shell into a header."""
    return (line.startswith(prefix) and "\n" not in line and "\r" not in line
            and not any(c in line for c in "`$;|&<>\\"))


def from_data(data: Any, source: str = CONFIG_NAME) -> Config:
    problems: list[str] = []
    cfg = _convert(Config, data, "", problems)
    problems += validate(cfg)
    if problems:
        raise ConfigError(problems, source)
    return cfg


def from_partial(text: str) -> Config:
    """Settings of a possibly incomplete file (for ``init --config``); types checked only."""
    problems: list[str] = []
    try:
        data = _yaml().load(text)
    except Exception as exc:
        raise FairbigError(f"the given configuration is not valid YAML: {yaml_problem(exc)}",
                           "fix its syntax") from exc
    cfg = _convert(Config, data, "", problems)
    if problems:
        raise ConfigError(problems, "the given configuration")
    return cfg


def _yaml() -> YAML:
    y = YAML()
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def load(path: Path) -> Config:
    if not path.exists():
        raise FairbigError(f"no {CONFIG_NAME} at {path}",
                           "run the command inside an analysis dataset made by 'fairbig init'")
    try:
        data = _yaml().load(path.read_text())
    except Exception as exc:  # ruamel raises many types; all mean "not YAML"
        raise FairbigError(f"{path} is not valid YAML: {yaml_problem(exc)}",
                           "fix the syntax (indentation, quotes)") from exc
    return from_data(data, str(path))


def yaml_problem(exc: Exception) -> str:
    """The parser's complaint with the line it is about: ruamel's own message spans
    several lines (a quoted copy of the text with a caret), which a one-line error
    cannot show."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if not problem or mark is None:
        text = str(exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and cmark is not None and cmark.line != mark.line:
        return f"{where} ({context} started at line {cmark.line + 1})"
    return where


_HEADER = """\
# fairbig configuration of this analysis dataset.
# Edit, then run `fairbig check`. Reference: README.md, "Configuration".
"""
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _plain_ok(text: str) -> bool:
    """Written unquoted only when every YAML reader (1.1 ones too, which read
    ``01:00:00`` as a number and ``no`` as false) gets the same string back."""
    return (re.fullmatch(r"[A-Za-z0-9_./][A-Za-z0-9_./+-]*", text) is not None
            and text.lower() not in _YAML11_WORDS
            and YAML(typ="safe", pure=True).load(text) == text)


def _inline(value: Any) -> str:
    """``value`` as the YAML of one line: a scalar or a flow list/mapping."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_inline(str(k))}: {_inline(v)}" for k, v in value.items()) + "}"
    text = str(value)
    return text if _plain_ok(text) else json.dumps(text)


def _section_lines(cls: type, indent: str) -> list[str]:
    lines: list[str] = []
    for f in dataclasses.fields(cls):
        if not indent and lines:
            lines.append("")  # top-level settings are separated by a blank line
        help_text = f.metadata.get("help", "")
        lines += textwrap.wrap(help_text, 88 - len(indent), initial_indent=indent + "# ",
                               subsequent_indent=indent + "# ", break_on_hyphens=False,
                               break_long_words=False)
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        if dataclasses.is_dataclass(default):
            lines.append(f"{indent}{f.name}:")
            lines += _section_lines(type(default), indent + "  ")
        else:
            lines.append(f"{indent}{f.name}: {_inline(default)}")
    return lines


@cache
def default_text() -> str:
    """The commented ``fairbig.yaml`` of the defaults, written from the dataclasses above:
    every setting at its default with its help text as the comment above it."""
    return _HEADER + "\n" + "\n".join(_section_lines(Config, "")) + "\n"


def _set_path(doc: CommentedMap, dotted: str, value: Any) -> None:
    node = doc
    *parents, last = dotted.split(".")
    for part in parents:
        if part not in node:  # a partial file (init --config) may lack the section
            node[part] = CommentedMap()
        node = node[part]
    if last not in node and node and (prev := list(node)[-1]) in node.ca.items:
        # a key added to a file written before it existed goes last in its section;
        # the comment that follows the section (the next section's) moves along
        node[last] = value
        node.ca.items[last] = node.ca.items.pop(prev)
        return
    node[last] = value


def flow_list(values: list[str]) -> CommentedSeq:
    """A list written as ``[a, b, …]``: replacing it keeps the comments around it (a
    block list carries the next setting's comment and loses it when emptied)."""
    seq = CommentedSeq(values)
    seq.fa.set_flow_style()
    return seq


def render(updates: dict[str, Any], base_text: str = "") -> str:
    """YAML text of ``base_text`` (default: :func:`default_text`) with dotted-key
    ``updates`` applied, comments kept."""
    y = _yaml()
    doc = y.load(base_text or default_text())
    for key, value in updates.items():
        _set_path(doc, key, value)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def update_file(path: Path, updates: dict[str, Any]) -> Config:
    """Rewrite ``path`` with ``updates`` (comments kept); validate before writing."""
    text = render(updates, path.read_text())
    cfg = from_data(_yaml().load(text), str(path))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return cfg

