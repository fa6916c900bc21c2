"""``fairbig check --job-test``: one real test job through the configured backend.

It runs on a compute node what every job runs (clone from the input store, import
the lab key, get one input, call the container, write to the output store) and
reports each step, so a site's problems (a module that does not load, a store the
nodes cannot reach, no container runtime there) show before thousands of jobs hit
them. What it writes to the output store is removed again. BABS's ``check-setup
--job-test`` is the model.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from . import contract
from .backends import get_backend
from .backends.base import Batch, SubmitRequest
from .commands.check import CheckResult, container_call
from .commands.plan import current_jobs, publish
from .dataset import Analysis
from .errors import FairbigError
from .explain import Attempt, cause_line, read_end
from .jobstate import new_token
from .render import render

TEST_ID = "fairbig-job-test"
STEPS = ("node", "clone", "key", "get", "container", "write")


def render_test(a: Analysis, req: SubmitRequest, header: str, branch: str) -> None:
    jobs = [j for j in current_jobs(a) if j.inputs]
    if not jobs:
        raise FairbigError("no planned job with inputs to test with", "run 'fairbig plan'")
    text = render(
        "job-test.sh.j2", header=header, input_url=a.input_store.clone_url(a.dataset_id),
        output_url=str(a.output_git), storage=contract.OUTPUT_STORAGE,
        output_remote=contract.OUTPUT, pubkey_file=contract.PUBKEY_FILE,
        lock_file=str(a.output_store.lock_file), input_path=jobs[0].inputs[0],
        image=a.container().image_path, container_call=container_call(a, "sh -c 'exit 0'"),
        branch=branch,
        report=str(req.run_dir / "report.tsv"), workdir=a.config.job.workdir,
        workdir_fallback=contract.WORKDIR_FALLBACK,
        bindir=str(Path(sys.executable).parent), env_setup=a.config.job.env_setup)
    req.script.write_text(text)
    req.script.chmod(0o755)


def job_test(a: Analysis, timeout: float) -> Iterator[CheckResult]:
    """Submit the test job, wait for it, yield one result per step it reached."""
    backend = get_backend(a.config.backend.name, a.config)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = a.work / "job-test" / f"{stamp}-{backend.name}"
    run_dir.mkdir(parents=True)
    (run_dir / "jobs.txt").write_text(TEST_ID + "\n")
    req = SubmitRequest([TEST_ID], [Batch(new_token(), [TEST_ID], 0)], run_dir / "job.sh",
                        run_dir, run_dir, run_dir, record=lambda subs: None)
    publish(a)
    render_test(a, req, backend.header(req), f"{TEST_ID}-{stamp}")
    subs = backend.submit(req)
    report = run_dir / "report.tsv"
    deadline = time.monotonic() + timeout
    gone_since = None
    while not ended(report):
        if time.monotonic() > deadline:
            backend.cancel(subs)
            yield CheckResult("job test", False, f"no result within {timeout:.0f} s; cancelled "
                              f"(files in {run_dir})")
            return
        active = backend.poll(subs).get(TEST_ID)
        if active and active.state in ("queued", "running"):
            gone_since = None
        elif gone_since is None:
            gone_since = time.monotonic()
        elif time.monotonic() - gone_since > 5:  # the scheduler is done with it
            break
        time.sleep(1)
    seen = set()
    for line in read_end(report):
        verdict, step, detail = [*line.split("\t"), "", ""][:3]
        if verdict in ("ok", "FAIL"):
            seen.add(step)
            yield CheckResult(f"job test: {step}", verdict == "ok", detail)
    if not ended(report):
        early = backend.output_file(run_dir, subs[0]) if subs else None
        said = read_end(early) if early else []
        cause = cause_line(Attempt(said, [], str(early))) or "no output"
        missing = [s for s in STEPS if s not in seen]
        yield CheckResult(f"job test: {missing[0] if missing else 'end'}", False,
                          f"the test job ended early: {cause} (output: {early})")


def ended(report: Path) -> bool:
    return any(line.startswith("end\t") for line in read_end(report))
