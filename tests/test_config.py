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
    for part in ("unknown setting 'bogus'", "stores.input 'http://x' is not a RIA URL",
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
