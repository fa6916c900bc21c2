"""``fairbig.yaml``: typed, validated up front, comments kept on rewrite."""

from __future__ import annotations

import dataclasses
import io
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .backends import NAMES as BACKEND_NAMES
from .errors import ConfigError, FairbigError
from .ids import path_problem

CONFIG_NAME = "fairbig.yaml"


@dataclass
class StoresConfig:
    input: str = ""
    output: str = ""


@dataclass
class EncryptionConfig:
    keys: list[str] = field(default_factory=list)
    mode: str = "sharedpubkey"


@dataclass
class InputsConfig:
    path: str = "inputs/data"
    layout: str = "auto"
    by: str = "subject"
    only: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


@dataclass
class JobConfig:
    workdir: str = ""
    env_setup: list[str] = field(default_factory=list)
    push_lock_timeout: int = 3600


@dataclass
class LocalConfig:
    jobs: int = 0


@dataclass
class SlurmConfig:
    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = "01:00:00"
    mem: str = "4G"
    cpus: int = 1
    throttle: int = 0
    extra: list[str] = field(default_factory=list)


@dataclass
class HTCondorConfig:
    request_cpus: int = 1
    request_memory: str = "4GB"
    request_disk: str = "4GB"
    maxjobs: int = 0
    maxidle: int = 0
    retry: int = 0
    extra: list[str] = field(default_factory=list)


@dataclass
class BackendConfig:
    name: str = "local"
    local: LocalConfig = field(default_factory=LocalConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    htcondor: HTCondorConfig = field(default_factory=HTCondorConfig)


@dataclass
class Config:
    stores: StoresConfig = field(default_factory=StoresConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    inputs: InputsConfig = field(default_factory=InputsConfig)
    container: str = ""
    command: str = ""
    results: str = "results"
    job: JobConfig = field(default_factory=JobConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)


_FPR_RE = re.compile(r"^[0-9A-Fa-f]{16}([0-9A-Fa-f]{24})?$")
_SLURM_TIME_RE = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$")
_SIZE_RE = re.compile(r"^\d+(\.\d+)?\s*[KMGT]?i?B?$", re.IGNORECASE)
_SAFE_WORD_RE = re.compile(r"^[A-Za-z0-9._,=:@+-]*$")
_PLACEHOLDERS = {"job", "subject", "session", "input_dir", "output_dir", "inputs", "outputs"}


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
            p.append(f"stores.{name} is missing (a ria+file:// or ria+ssh:// URL)")
        elif not url.startswith(("ria+file://", "ria+ssh://", "ria+http://", "ria+https://")):
            p.append(f"stores.{name} '{url}' is not a RIA URL (expected ria+file:///path)")
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
    if cfg.inputs.layout not in ("auto", "ukb", "bids"):
        p.append(f"inputs.layout '{cfg.inputs.layout}' must be auto, ukb or bids")
    if cfg.inputs.by not in ("subject", "session"):
        p.append(f"inputs.by '{cfg.inputs.by}' must be subject or session")
    if not cfg.container or path_problem(cfg.container):
        p.append(f"container '{cfg.container}' must name a container, e.g. containers/ukb-mini")
    p += _command_problems(cfg.command)
    if cfg.backend.name not in BACKEND_NAMES:
        p.append(f"backend.name '{cfg.backend.name}' must be one of {', '.join(BACKEND_NAMES)}")
    if cfg.backend.local.jobs < 0:
        p.append("backend.local.jobs must be 0 (one per core) or more")
    wd = cfg.job.workdir
    if wd and (not wd.startswith("/") or not wd.isprintable()):
        p.append(f"job.workdir {wd!r} must be an absolute path on one line (or \"\" for"
                 " $TMPDIR); it is used as written, variables are not expanded")
    if cfg.job.push_lock_timeout < 1:
        p.append(f"job.push_lock_timeout {cfg.job.push_lock_timeout} must be 1 second or more")
    p += _slurm_problems(cfg.backend.slurm)
    p += _htcondor_problems(cfg.backend.htcondor)
    return p


def _command_problems(command: str) -> list[str]:
    if not command.strip():
        return ["command is missing (the pipeline call, e.g. 'sh code/run.sh {input_dir} "
                "{output_dir}')"]
    names = set(re.findall(r"{([^{}]*)}", command.replace("{{", "").replace("}}", "")))
    unknown = sorted(names - _PLACEHOLDERS)
    if unknown:
        return [f"command uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}"
                f" (known: {', '.join(sorted(_PLACEHOLDERS))})"]
    return []


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


DEFAULT_TEXT = """\
# fairbig configuration of this analysis dataset.
# Edit, then run `fairbig check`. Reference: README.md, "Configuration".

stores:
  # Where jobs clone this analysis dataset from (a RIA store).
  input: ""
  # Where results go: job branches and encrypted annexed content.
  output: ""

encryption:
  # GPG key fingerprint(s) of the lab. Jobs encrypt with the public key only;
  # reading results needs the secret key. File names and history stay readable.
  keys: []
  mode: sharedpubkey

inputs:
  # The input dataset (a subdataset of this dataset).
  path: inputs/data
  # auto | ukb (one subdataset per subject) | bids (sub-*/[ses-*/] folders)
  layout: auto
  # One job per subject, or per subject and session.
  by: subject
  # Plan only these subject or job IDs ([] = all), and leave out these.
  # `fairbig plan --by/--only/--exclude` set them, `fairbig plan --all` clears
  # only and exclude; a plain `fairbig plan` plans what they select.
  only: []
  exclude: []

# Container to run the pipeline in (datalad-container name, with its dataset).
container: ""

# The pipeline call, run inside the container from the dataset root.
# Placeholders: {job} {subject} {session} {input_dir} {output_dir}, and
# datalad's {inputs} {outputs}.
command: ""

# Results go below this folder, one folder per job.
results: results

job:
  # Node-local directory for the ephemeral clones ("" = $TMPDIR or /tmp).
  workdir: ""
  # Shell lines run first in every job, e.g. "module load datalad".
  env_setup: []
  # Seconds a job waits for the output store's push lock before it fails
  # (it logs who holds the lock after a short wait).
  push_lock_timeout: 3600

backend:
  # local | slurm | htcondor
  name: local
  local:
    # Jobs at once (0 = one per core).
    jobs: 0
  slurm:
    partition: ""
    account: ""
    qos: ""
    time: "01:00:00"
    mem: 4G
    cpus: 1
    # Array concurrency limit (%N), 0 = none.
    throttle: 0
    # Extra header lines, each "#SBATCH --option=value".
    extra: []
  htcondor:
    request_cpus: 1
    request_memory: 4GB
    request_disk: 4GB
    # DAGMan throttles and retries (0 = none).
    maxjobs: 0
    maxidle: 0
    retry: 0
    # Extra submit lines, each "key = value".
    extra: []
"""


def _set_path(doc: CommentedMap, dotted: str, value: Any) -> None:
    node = doc
    *parents, last = dotted.split(".")
    for part in parents:
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


def render(updates: dict[str, Any], base_text: str = DEFAULT_TEXT) -> str:
    """YAML text of ``base_text`` with dotted-key ``updates`` applied, comments kept."""
    y = _yaml()
    doc = y.load(base_text)
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


def as_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
