"""HTCondor: one DAG per submission, submitted and watched with ``htcondor2``.

DAGMan gives us what a cluster admin expects on an HTCondor pool: throttles
(``maxjobs``/``maxidle``) and retries enforced by the pool, one handle to
remove everything. Nodes share one submit description; the job ID is a DAG
variable, so nothing job-specific is spliced into a file that runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..config import Config
from ..errors import FairbigError
from ..jobstate import Claim, Submission
from ..render import render
from .base import Backend, BackendView, Batch, SubmitRequest

IDLE, RUNNING, HELD = 1, 2, 5  # JobStatus values fairbig tells apart
SUBMIT_FILE = "job.sub"         # in the run directory, named by every node of the DAG
DAG_FILE = "fairbig.dag"
POLL_PROJECTION = ["ClusterId", "DAGManJobId", "DAGNodeName", "JobStatus", "HoldReason"]
OUTPUT = "condor-{job_id}.out"  # in the run directory: a node's stdout and stderr
TOKEN_ATTR = "FairbigAttempt"   # the DAG job's attribute holding the attempt token


def dag_text(job_ids: Sequence[str], submit_file: str, retry: int) -> str:
    lines = []
    for jid in job_ids:
        lines.append(f"JOB {jid} {submit_file}")
        lines.append(f'VARS {jid} jobid="{jid}"')
        if retry:
            lines.append(f"RETRY {jid} {retry}")
    return "\n".join(lines) + "\n"


def dags_of(subs: Sequence[Submission]) -> list[str]:
    """The DAG clusters the submissions' nodes (``CLUSTER:JOB``) belong to."""
    return sorted({s.backend_id.split(":")[0] for s in subs})


def poll_constraint(subs: Sequence[Submission]) -> str:
    """The DAGs themselves and every node they submitted."""
    return " || ".join(f"DAGManJobId == {d} || ClusterId == {d}" for d in dags_of(subs))


def parse_poll(ads: Iterable[Mapping], subs: Sequence[Submission]) -> dict[str, BackendView]:
    """Views by job ID from the schedd's ads of the DAGs and their nodes: a node's own
    status, or queued while its DAG lives and has not submitted it yet. Finished nodes
    leave the queue (absent: their records say how they ended), held ones are finished."""
    ads = list(ads)
    live_dags = {str(ad["ClusterId"]) for ad in ads if "DAGNodeName" not in ad}
    nodes = {(str(ad.get("DAGManJobId")), ad["DAGNodeName"]): ad for ad in ads
             if "DAGNodeName" in ad}
    out: dict[str, BackendView] = {}
    for s in subs:
        dag, _, jid = s.backend_id.partition(":")
        ad = nodes.get((dag, jid))
        if ad is not None:
            status = ad["JobStatus"]
            if status == RUNNING:
                out[jid] = BackendView("running")
            elif status == HELD:
                out[jid] = BackendView("finished", f"HELD: {ad.get('HoldReason', '')}")
            elif status == IDLE:
                out[jid] = BackendView("queued")
        elif dag in live_dags:
            out[jid] = BackendView("queued")  # DAGMan has not submitted the node yet
    return out


def find_constraint(claims: Sequence[Claim]) -> str:
    return " || ".join(f'{TOKEN_ATTR} == "{t}"' for t in sorted({c.token for c in claims}))


def parse_find(ads: Iterable[Mapping], claims: Sequence[Claim]) -> dict[str, str]:
    """Backend IDs of claimed jobs whose DAG the schedd holds, found by its token."""
    dags = {ad[TOKEN_ATTR]: ad["ClusterId"] for ad in ads}
    return {c.job_id: f"{dags[c.token]}:{c.job_id}" for c in claims if c.token in dags}


def _bindings():
    given = os.environ.get("CONDOR_CONFIG")
    if given and given != "ONLY_ENV" and not Path(given).exists():
        # the bindings would print a page and exit the process on import
        raise FairbigError(f"CONDOR_CONFIG points at {given}, which does not exist",
                           "set CONDOR_CONFIG to your pool's client configuration")
    try:
        import htcondor2
    except ImportError as exc:
        raise FairbigError("the HTCondor Python bindings are not installed",
                           "pip install 'fairbig[htcondor]'") from exc
    if not os.environ.get("CONDOR_CONFIG") and not Path("/etc/condor/condor_config").exists():
        raise FairbigError("no HTCondor configuration found",
                           "set CONDOR_CONFIG to your pool's client configuration")
    return htcondor2


class HTCondorBackend(Backend):
    name = "htcondor"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.cfg = config.backend.htcondor
        self.gpus = config.runtime.gpus

    def files(self, req: SubmitRequest) -> dict[str, str]:
        """``job.sub``, the one submit description of every node, and ``fairbig.dag``."""
        (batch,) = req.batches
        return {SUBMIT_FILE: render("htcondor.sub.j2", cfg=self.cfg, gpus=self.gpus,
                                    script=str(req.script),
                                    run_dir=str(req.run_dir), token=batch.token,
                                    output=OUTPUT.format(job_id="$(jobid)"),
                                    home=os.environ.get("HOME", "/tmp")),
                DAG_FILE: dag_text(req.job_ids, SUBMIT_FILE, self.cfg.retry)}

    def at_once(self) -> int | None:
        return self.cfg.maxjobs or None

    def dag_options(self) -> dict[str, str]:
        """``Submit.from_dag``'s options: DAGMan's path, the throttles, our client config."""
        options = {"DagmanPath": shutil.which("condor_dagman") or "/usr/bin/condor_dagman"}
        if self.cfg.maxjobs:
            options["maxjobs"] = str(self.cfg.maxjobs)
        if self.cfg.maxidle:
            options["maxidle"] = str(self.cfg.maxidle)
        if os.environ.get("CONDOR_CONFIG"):
            options["AddToEnv"] = f"CONDOR_CONFIG={os.environ['CONDOR_CONFIG']}"
        return options

    def hand_over(self, req: SubmitRequest, batch: Batch) -> str:
        """Submit the DAG through the bindings; its cluster is the handle."""
        htcondor2 = _bindings()
        try:
            submit = htcondor2.Submit.from_dag(str(req.run_dir / DAG_FILE), self.dag_options())
            # DAGMan resolves the nodes' relative submit file from its working dir
            submit["initialdir"] = str(req.run_dir)
            # the token finds the DAG again if this submit dies before recording it
            submit[f"My.{TOKEN_ATTR}"] = f'"{batch.token}"'
            result = htcondor2.Schedd().submit(submit)
        except Exception as exc:  # the bindings raise HTCondorException and friends
            raise FairbigError(f"submitting the DAG failed: {exc}",
                               "check that the schedd is reachable (condor_q)") from exc
        return str(result.cluster())

    def backend_id(self, handle: str, index: int, job_id: str) -> str:
        return f"{handle}:{job_id}"

    def recover(self, claims: Sequence[Claim]) -> dict[str, str] | None:
        try:
            ads = _bindings().Schedd().query(constraint=find_constraint(claims),
                                             projection=["ClusterId", TOKEN_ATTR])
        except Exception:  # FairbigError or the bindings' HTCondorException
            return None
        return parse_find(ads, claims)

    def poll(self, subs: Sequence[Submission]) -> dict[str, BackendView]:
        if not subs:
            return {}
        ads = _bindings().Schedd().query(constraint=poll_constraint(subs),
                                         projection=POLL_PROJECTION)
        return parse_poll(ads, subs)

    def check(self) -> str:
        htcondor2 = _bindings()
        try:
            schedd = htcondor2.Schedd()
            schedd.query(constraint="false", projection=["ClusterId"])
        except Exception as exc:  # the bindings raise HTCondorException and friends
            said = " ".join(str(exc).split()) or type(exc).__name__
            raise FairbigError(f"the HTCondor schedd does not answer: {said}",
                               "check that CONDOR_CONFIG points at your pool's client "
                               "configuration and that 'condor_q' works") from exc
        return (f"schedd answers (htcondor2 {htcondor2.version().split()[1]}, "
                f"CONDOR_CONFIG={os.environ.get('CONDOR_CONFIG', '/etc/condor/condor_config')})")

    def output_file(self, run_dir: Path, sub: Submission) -> Path:
        return run_dir / OUTPUT.format(job_id=sub.job_id)

    def cancel(self, subs: Sequence[Submission]) -> None:
        if not subs:
            return
        htcondor2 = _bindings()
        schedd = htcondor2.Schedd()
        for dag in dags_of(subs):
            schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {dag}")
