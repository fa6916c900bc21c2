"""The store locks merges take, held for real by another process."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from fairbig.errors import FairbigError
from fairbig.stores import exclusive

HOLD = """
import sys, time
from fairbig.stores import exclusive
with exclusive(__import__("pathlib").Path(sys.argv[1]), "busy", "wait"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_exclusive_refuses_a_second_holder_naming_the_first(tmp_path):
    lock = tmp_path / "fairbig-merge.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FairbigError) as err, exclusive(lock, "another merge is on", "wait"):
            pass
        assert str(err.value).startswith(f"another merge is on (pid {holder.pid} on ")
        assert str(err.value).endswith("(wait)")
    finally:
        holder.kill()
        holder.wait()
    t0 = time.monotonic()
    with exclusive(lock, "busy", "wait"):  # free again once the holder is gone
        assert lock.read_text().startswith("pid ")
    assert time.monotonic() - t0 < 5
