"""HTCondor: one DAG per submission, submitted and watched with ``htcondor2``.

DAGMan gives us what a cluster admin expects on an HTCondor pool: throttles
(``maxjobs``/``maxidle``) and retries enforced by the pool, one handle to
remove everything. Nodes share one submit description; the job ID is a DAG
variable, so nothing job-specific is spliced into a file that runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from ..config import Config
from ..errors import FairbigError
from ..jobstate import Claim, Submission, now
from ..render import render
from .base import Backend, BackendView, SubmitRequest

IDLE, RUNNING, REMOVED, COMPLETED, HELD = 1, 2, 3, 4, 5
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
        self.cfg = config.backend.htcondor
        self.gpus = config.runtime.gpus

    def submit(self, req: SubmitRequest) -> list[Submission]:
        sub_file = req.run_dir / "job.sub"
        (batch,) = req.batches
        sub_file.write_text(render("htcondor.sub.j2", cfg=self.cfg, gpus=self.gpus,
                                   script=str(req.script), run_dir=str(req.run_dir),
                                   token=batch.token,
                                   output=OUTPUT.format(job_id="$(jobid)"),
                                   home=os.environ.get("HOME", "/tmp")))
        dag = req.run_dir / "fairbig.dag"
        dag.write_text(dag_text(req.job_ids, sub_file.name, self.cfg.retry))
        if req.dry_run:
            return []
        htcondor2 = _bindings()
        options = {"DagmanPath": shutil.which("condor_dagman") or "/usr/bin/condor_dagman"}
        if self.cfg.maxjobs:
            options["maxjobs"] = str(self.cfg.maxjobs)
        if self.cfg.maxidle:
            options["maxidle"] = str(self.cfg.maxidle)
        if os.environ.get("CONDOR_CONFIG"):
            options["AddToEnv"] = f"CONDOR_CONFIG={os.environ['CONDOR_CONFIG']}"
        try:
            submit = htcondor2.Submit.from_dag(str(dag), options)
            # DAGMan resolves the nodes' relative submit file from its working dir
            submit["initialdir"] = str(req.run_dir)
            # the token finds the DAG again if this submit dies before recording it
            submit[f"My.{TOKEN_ATTR}"] = f'"{batch.token}"'
            result = htcondor2.Schedd().submit(submit)
        except Exception as exc:  # the bindings raise HTCondorException and friends
            raise FairbigError(f"submitting the DAG failed: {exc}",
                               "check that the schedd is reachable (condor_q)") from exc
        cluster = result.cluster()
        subs = [Submission(jid, self.name, f"{cluster}:{jid}", now(), token=batch.token)
                for jid in req.job_ids]
        req.record(subs)
        return subs

    def recover(self, claims: Sequence[Claim]) -> dict[str, str] | None:
        tokens = sorted({c.token for c in claims})
        try:
            ads = _bindings().Schedd().query(
                constraint=" || ".join(f'{TOKEN_ATTR} == "{t}"' for t in tokens),
                projection=["ClusterId", TOKEN_ATTR])
        except Exception:  # FairbigError or the bindings' HTCondorException
            return None
        dags = {ad[TOKEN_ATTR]: ad["ClusterId"] for ad in ads}
        return {c.job_id: f"{dags[c.token]}:{c.job_id}" for c in claims if c.token in dags}

    def poll(self, subs: Sequence[Submission]) -> dict[str, BackendView]:
        if not subs:
            return {}
        htcondor2 = _bindings()
        schedd = htcondor2.Schedd()
        dags = sorted({s.backend_id.split(":")[0] for s in subs})
        constraint = " || ".join(f"DAGManJobId == {d} || ClusterId == {d}" for d in dags)
        ads = schedd.query(constraint=constraint,
                           projection=["ClusterId", "DAGManJobId", "DAGNodeName", "JobStatus",
                                       "HoldReason"])
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
        for dag in sorted({s.backend_id.split(":")[0] for s in subs}):
            schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {dag}")
