import dataclasses
import typing
from pathlib import Path

import pytest

from fairbig import config as c
from fairbig.errors import ConfigError

FPR = "C920D3743AA4E88DF7F4DDC20C7B3A10CECB38A4"
GOOD = {"stores.input": "ria+file:///in", "stores.output": "ria+file:///out",
        "encryption.keys": [FPR], "container": "containers/ukb-mini",
        "command": "sh code/p.sh {input_dir} {output_dir}"}


def test_render_keeps_comments_and_validates():
    text = c.render(GOOD)
    assert "# Where results go" in text
    cfg = c.from_data(c._yaml().load(text))
    assert cfg.stores.output == "ria+file:///out"
    assert cfg.backend.slurm.time == "01:00:00"


def test_all_problems_reported_at_once():
    with pytest.raises(ConfigError) as exc:
        c.from_data({"stores": {"input": "http://x"}, "bogus": 1,
                     "backend": {"name": "pbs", "slurm": {"cpus": "two",
                                                          "extra": ["#SBATCH --x; rm -rf /"]}},
                     "command": "run {nope}"})
    msg = str(exc.value)
    for part in ("unknown setting 'bogus'",
                 "stores.input 'http://x' is not a ria+file:///absolute/path URL",
                 "backend.slurm.cpus must be a whole number", "backend.name 'pbs'",
                 "backend.slurm.extra[0]", "unknown placeholder(s) {nope}",
                 "stores.output is missing", "encryption.keys is empty"):
        assert part in msg
    assert "\n" not in msg


def test_update_file_roundtrip(tmp_path: Path):
    path = tmp_path / "fairbig.yaml"
    path.write_text(c.render(GOOD))
    c.update_file(path, {"backend.slurm.partition": "short"})
    text = path.read_text()
    assert "partition: \"short\"" in text and "# Array concurrency limit" in text
    with pytest.raises(ConfigError):
        c.update_file(path, {"backend.slurm.mem": "lots"})
    assert "partition: \"short\"" in path.read_text()  # nothing half-written


def test_load_reports_bad_yaml(tmp_path: Path):
    path = tmp_path / "fairbig.yaml"
    path.write_text("stores: [unclosed\n")
    with pytest.raises(Exception, match="is not valid YAML"):
        c.load(path)


def test_default_file_loads_back_to_the_defaults():
    assert c.from_partial(c.default_text()) == c.Config()
    assert c.render({}) == c.default_text()


def settings(cls: type, prefix: str = "") -> dict[str, str]:
    """``dotted.name -> help`` of every setting of ``cls``, sections included."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        out[prefix + f.name] = f.metadata.get("help", "")
        if dataclasses.is_dataclass(hints[f.name]):
            out |= settings(hints[f.name], f"{prefix}{f.name}.")
    return out


def documented(text: str) -> dict[str, str]:
    """``dotted.name -> the comment right above it`` for every key of a YAML text
    written one key per line (read as text, not through the generator's code)."""
    out, path, comment = {}, [], []
    for line in text.splitlines():
        body = line.lstrip()
        depth = (len(line) - len(body)) // 2
        if body.startswith("#"):
            comment.append(body[1:].strip())
        elif body:
            key = body.split(":", 1)[0]
            path[depth:] = [key]
            out[".".join(path)] = " ".join(comment)
            comment = []
        else:
            comment = []
    return out


def test_default_file_documents_every_setting():
    expected = settings(c.Config)
    assert len(expected) >= 40 and all(expected.values()), \
        [name for name, help_text in expected.items() if not help_text]
    assert documented(c.default_text()) == expected


@pytest.mark.parametrize("url", ["ria+ssh://host/srv/store", "ria+http://host/store",
                                 "ria+https://host/store", "ria+file://relative/store",
                                 "/srv/store"])
def test_stores_fairbig_cannot_use_are_refused_in_one_line(url: str):
    data = c._yaml().load(c.render(GOOD | {"stores.input": url}))
    with pytest.raises(ConfigError) as exc:
        c.from_data(data)
    assert exc.value.problems == [
        f"stores.input '{url}' is not a ria+file:///absolute/path URL (fairbig reads and writes"
        " stores directly: ria+ssh and ria+http stores are not supported)"]
