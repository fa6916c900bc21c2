"""The ``fairbig`` command line: thin wrappers around the modules that do the work."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import click

from . import __version__, dl, ui
from .backends import NAMES as BACKEND_NAMES
from .contract import OUTPUT_STORAGE, WORK_DIR
from .dataset import Analysis
from .errors import FairbigError
from .ids import require_planned
from .states import PROBLEMS_EXIT, STATES


def _venv_on_path() -> None:
    """Jobs and datalad need the git-annex that ships with fairbig's venv."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def example(text: str) -> str:
    return f"\n\n\b\nExample:\n  {text}"


json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def analysis_of(ctx: click.Context) -> Analysis:
    return Analysis.find(ctx.obj.get("dir"))


def _remember(key: str) -> Callable[[click.Context, click.Parameter, object], None]:
    """Store a global option in the shared context object; given again after the
    subcommand (``fairbig -C A status -C B``), the later value wins."""
    def callback(ctx: click.Context, _: click.Parameter, value: object) -> None:
        obj = ctx.ensure_object(dict)
        if value or key not in obj:
            obj[key] = value
    return callback


def global_options() -> list[click.Parameter]:
    """``-C`` and ``--debug``: accepted before and after the subcommand alike."""
    return [click.Option(["-C", "directory"], type=click.Path(path_type=Path), default=None,
                         expose_value=False, callback=_remember("dir"),
                         help="analysis dataset (default: the current directory)"),
            # read by main() from the argument list, before click parses anything
            click.Option(["--debug"], is_flag=True, expose_value=False,
                         help="show tracebacks of errors")]


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             help="Reproducible per-subject processing of huge DataLad datasets."
             + example("fairbig init analysis --input ria+file:///data/store#~ukb ..."),
             params=global_options())
@click.version_option(__version__)
@click.pass_context
def cli(ctx: click.Context) -> None:
    ctx.ensure_object(dict)


@cli.command(help="Create the analysis dataset, the input store and the encrypted output store."
             + example("fairbig init analysis --input ria+file:///data/in#~ukb "
                       "--container img.tar --command 'sh code/run.sh {input_dir} "
                       "{output_dir}' --input-store /data/in --output-store /data/out "
                       "--encrypt-to 0xFPR"))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--input", "source", required=True, multiple=True,
              help="input DataLad dataset (path or URL); repeat as NAME=URL for further ones"
              " (e.g. fMRIPrep output), installed as inputs/NAME, {input_dir:NAME} in the"
              " command")
@click.option("--container", required=True,
              help="image file (SIF, OCI/Docker archive, rootfs tar) or a DataLad container "
              "dataset (path or URL)")
@click.option("--container-name", default="",
              help="name to register the image under, or the container to use of a dataset")
@click.option("--config", "config_file", type=click.Path(path_type=Path, exists=True),
              help="take settings from this fairbig.yaml; flags given here win")
@click.option("--command", default=None,
              help="pipeline call; placeholders {subject} {session} {job} {input_dir} "
              "{output_dir}")
@click.option("--input-store", default=None, help="RIA store jobs clone from")
@click.option("--output-store", default=None, help="RIA store results go to (encrypted)")
@click.option("--encrypt-to", "keys", multiple=True,
              help="lab GPG key fingerprint (repeat for several)")
@click.option("--code", multiple=True, type=click.Path(path_type=Path, exists=True),
              help="file or folder to copy into code/ (repeatable)")
@click.option("--layout", type=click.Choice(["auto", "ukb", "bids"]), default=None)
@click.option("--by", type=click.Choice(["subject", "session"]), default=None)
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default=None)
@json_option
def init(target: Path, source: tuple[str, ...], container: str, container_name: str,
         config_file: Path | None, command: str | None, input_store: str | None,
         output_store: str | None, keys: tuple[str, ...], code: tuple[Path, ...],
         layout: str | None, by: str | None, backend: str | None, as_json: bool) -> None:
    from . import config as cfgmod
    from .commands.init import InitOptions, split_inputs
    from .commands.init import init as do_init

    base = config_file.read_text() if config_file else ""
    given = cfgmod.from_partial(base) if base else cfgmod.Config()
    values = {
        "--command": command or given.command,
        "--input-store": input_store or given.stores.input,
        "--output-store": output_store or given.stores.output,
        "--encrypt-to": list(keys) or given.encryption.keys,
    }
    missing = [flag for flag, v in values.items() if not v]
    if missing:
        raise FairbigError(f"missing {', '.join(missing)}",
                           "give them as options or in the file passed with --config")
    primary, secondary = split_inputs(source)
    res = do_init(InitOptions(
        target, primary, container, values["--command"], values["--input-store"],
        values["--output-store"], values["--encrypt-to"], container_name, list(code),
        layout or given.inputs.layout, by or given.inputs.by, backend or given.backend.name,
        base, secondary), step=ui.step)
    if as_json:
        ui.emit_json(asdict(res))
        return
    ui.say(f"analysis dataset: {res.path} (id {res.dataset_id})")
    ui.say(f"input store:      {res.input_store}")
    ui.say(f"output store:     {res.output_store} (annexed content encrypted to "
           f"{', '.join(k[-16:] for k in res.keys)})")
    ui.say(f"container:        {res.container}")
    ui.say(res.plaintext_note)
    ui.say("next: fairbig -C " + str(res.path) + " check")


@cli.command(help="Verify tools, the scheduler, stores, container and encryption key before "
             "submitting; with --job-test also submit one test job through the configured "
             "backend that runs a job's steps on a compute node (clone, key, get one input, "
             "container, a write to the output store that is removed again)."
             + example("fairbig check --job-test"))
@click.option("--job-test", is_flag=True, help="also run one real test job on the cluster")
@click.option("--timeout", type=click.FloatRange(1), default=900, show_default=True,
              help="seconds to wait for the test job (it is cancelled after)")
@json_option
@click.pass_context
def check(ctx: click.Context, job_test: bool, timeout: float, as_json: bool) -> None:
    from .commands.check import run_checks

    a = analysis_of(ctx)
    results = []
    for r in run_checks(a):
        results.append(r)
        if not as_json:
            ui.say(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
    if job_test and all(r.ok for r in results):
        from .jobtest import job_test as run_job_test

        if not as_json:
            ui.step(f"submitting a test job to {a.config.backend.name} (waits up to "
                    f"{timeout:.0f} s)")
        for r in run_job_test(a, timeout):
            results.append(r)
            if not as_json:
                ui.say(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
    if as_json:
        ui.emit_json([asdict(r) for r in results])
    if not all(r.ok for r in results):
        ctx.exit(1)


@cli.command(help="Split the analysis into jobs, from git trees only (no content fetched)."
             " The selection (--by, --only, --exclude) is kept in fairbig.yaml (inputs.by,"
             " inputs.only, inputs.exclude), so a plain 'fairbig plan' plans the same jobs"
             " again. IDs the input dataset does not have are refused, and so is a plan that"
             " would drop jobs whose results are in the output store or hold no jobs,"
             " unless --allow-shrink is given. Nothing is written when a plan is refused."
             + example("fairbig plan --by session --exclude 1234567    |    "
                       "fairbig plan --update --dry-run"))
@click.option("--by", type=click.Choice(["subject", "session"]), default=None,
              help="one job per subject or per session (kept; default from fairbig.yaml)")
@click.option("--only", multiple=True,
              help="only these subject/job IDs, or @FILE of IDs (kept; replaces the kept list)")
@click.option("--exclude", multiple=True,
              help="leave out these IDs, or @FILE of IDs (kept; replaces the kept list)")
@click.option("--all", "everything", is_flag=True,
              help="forget the kept --only/--exclude lists: plan every subject")
@click.option("--allow-shrink", is_flag=True,
              help="commit a plan that drops jobs with results, or has no jobs at all")
@click.option("--update", is_flag=True,
              help="plan from the newest state of the input dataset's origin (recorded with"
              " the plan, in one commit)")
@click.option("--columns-changed", type=click.Choice(["rerun"]), default=None,
              help="participants.tsv's columns changed: accept that the jobs with results"
              " change (else refused; or ignore added columns with inputs.ignore_columns)")
@click.option("--dry-run", is_flag=True, help="show what would be planned, write nothing")
@json_option
@click.pass_context
def plan(ctx: click.Context, by: str | None, only: tuple[str, ...], exclude: tuple[str, ...],
         everything: bool, allow_shrink: bool, update: bool, columns_changed: str | None,
         dry_run: bool, as_json: bool) -> None:
    from .commands import plan as planning

    if everything and only:
        raise FairbigError("--all and --only contradict each other", "give one of them")
    a = analysis_of(ctx)
    if update:
        ui.step("fetching the input dataset's origin")
    req = planning.PlanRequest(
        by, tuple(planning.read_ids(only)) if only else None,
        tuple(planning.read_ids(exclude)) if exclude else None, everything, update, dry_run,
        allow_shrink, columns_changed)
    out = planning.plan(a, req)
    if as_json:
        ui.emit_json(asdict(out))
        return
    sel = planning.Selection(**out.selection)
    ui.say(f"{out.jobs} jobs ({out.layout} layout): {len(out.new)} new, "
           f"{len(out.changed)} changed, {len(out.done)} already done")
    ui.say(f"  selection: {sel.describe()} (kept in fairbig.yaml; change with --by/--only/"
           "--exclude, --all for every subject)")
    if out.input_updated:
        ui.say(f"  input dataset {'would move' if dry_run else 'updated'} to "
               f"{out.input_commit[:12]}")
    for c in out.columns:
        ui.say(f"  {c['table']}'s columns changed: {c['changed']} job(s) changed by it")
    for label, ids in (("new", out.new), ("changed", out.changed), ("dropped", out.dropped),
                       ("kept IDs not in the input dataset", out.stale_ids)):
        if ids:
            shown = " ".join(ids[:planning.SHOWN])
            ui.say(f"  {label}: {shown}{' …' if len(ids) > planning.SHOWN else ''}")
    if out.sessionless:
        shown = " ".join(out.sessionless[:planning.SHOWN])
        ui.say(f"  {'mixed dataset: ' if out.mixed else ''}{len(out.sessionless)} subject(s)"
               f" without sessions planned as subject jobs: {shown}"
               f"{' …' if len(out.sessionless) > planning.SHOWN else ''}")
    for reason, ids in planning.group_skipped(out.skipped).items():
        shown = " ".join(ids[:planning.SHOWN])
        ui.say(f"  skipped {len(ids)}, {reason}: {shown}"
               f"{' …' if len(ids) > planning.SHOWN else ''}")
    if not dry_run:
        ui.say(f"plan {'committed' if out.committed else 'unchanged'} at {out.commit[:12]}")
    else:
        ui.say("dry run: nothing written")


@cli.command(help="Submit planned jobs (local backend by default: runs them here). "
             "With --pilot N, first only N jobs spread over the input (subjects with and "
             "without extra sessions or records), whose measured usage 'fairbig estimate' "
             "scales to the whole computation; a later plain submit runs the rest."
             + example("fairbig submit --pilot 3 && fairbig estimate && fairbig submit"
                       "\n  fairbig submit --backend slurm --failed"))
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default=None)
@click.option("--failed", is_flag=True, help="resubmit failed, cancelled and lost jobs only")
@click.option("--only", multiple=True, help="only these IDs (or @FILE of IDs)")
@click.option("--pilot", type=click.IntRange(1), default=None,
              help="run only N jobs chosen across the input, as a pilot run")
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="local backend: jobs at once (default: cores)")
@click.option("--dry-run", is_flag=True, help="write the job files, submit nothing")
@json_option
@click.pass_context
def submit(ctx: click.Context, backend: str | None, failed: bool, only: tuple[str, ...],
           pilot: int | None, jobs: int | None, dry_run: bool, as_json: bool) -> None:
    from .commands import plan as planning
    from .commands import submit as sub

    a = analysis_of(ctx)
    if jobs:
        a.config.backend.local.jobs = jobs
    out = sub.submit(a, backend, failed, planning.read_ids(only), dry_run, pilot=pilot or 0)
    finished_pilot = out.pilot and out.backend == "local" and not dry_run and out.submitted
    if as_json:
        ui.emit_json(asdict(out) | ({"estimate": _estimate(a, out.backend).to_json()}
                                    if finished_pilot else {}))
    elif not out.submitted:
        busy = (f": {len(out.active)} job(s) already queued or running (see 'fairbig status')"
                if out.active else "")
        ui.say("nothing to submit" + busy
               + ("" if failed or busy else " (use --failed to resubmit failures)"))
    else:
        verb = "would submit" if dry_run else "submitted"
        ui.say(f"{verb} {len(out.submitted)} job(s) to {out.backend}; files in {out.run_dir}")
        if out.backend_ids and out.backend != "local":
            ui.say(f"{out.backend} IDs: {' '.join(out.backend_ids)}")
        if out.pilot:
            ui.say(f"pilot: {' '.join(out.submitted)}" + (
                "" if finished_pilot else " ('fairbig estimate' once they finished)"))
        if finished_pilot:
            for line in _estimate(a, out.backend).lines():
                ui.say(line)
        elif hint := sub.suggest_limits(a):
            ui.say(hint)
    if out.backend == "local" and not dry_run and out.submitted:
        report = sub.current_status(a)
        bad = [j.job_id for j in report.jobs if j.job_id in set(out.submitted)
               and j.state not in ("done", "merged")]
        if bad:
            # after --json on stdout, the note goes to stderr: stdout stays one document
            (ui.step if as_json else ui.say)(
                f"{len(bad)} job(s) did not finish: {' '.join(bad[:10])} (see 'fairbig status')")
            ctx.exit(1)




def _estimate(a: Analysis, backend: str | None):
    from .commands.estimate import current_estimate
    from .commands.status import current_status
    from .commands.submit import backend_for

    b = backend_for(a, backend)
    return current_estimate(a, current_status(a, b), b)


@cli.command(help="Estimate the whole computation from the pilot run's finished jobs "
             "('fairbig submit --pilot N'): CPU-hours, wall time per job and in all at the "
             "configured jobs at once (local jobs, slurm throttle, htcondor maxjobs), peak "
             "memory and the time/mem to request, the results' size in the store and the "
             "push-lock load, each as mean (smallest to largest pilot job)."
             + example("fairbig estimate --backend slurm --json"))
@click.option("--backend", type=click.Choice(BACKEND_NAMES), default=None,
              help="estimate for this backend's limit of jobs at once")
@json_option
@click.pass_context
def estimate(ctx: click.Context, backend: str | None, as_json: bool) -> None:
    est = _estimate(analysis_of(ctx), backend)
    if as_json:
        ui.emit_json(est.to_json())
    else:
        for line in est.lines():
            ui.say(line)


@cli.command(help="Exact per-state counts of all planned jobs; failed and lost jobs grouped "
             "by cause, one line each with the step, the first error line and the log. "
             f"Exits {PROBLEMS_EXIT} while any job is failed or lost (0 otherwise), so scripts "
             "and workflow managers can react."
             + example("fairbig status --state failed --tail 20    |    fairbig status --watch"))
@click.option("--all", "show_all", is_flag=True, help="list every job, not only problems")
@click.option("--state", "states", multiple=True, type=click.Choice(STATES),
              help="list only jobs in this state (repeatable)")
@click.option("--tail", type=click.IntRange(0), default=None,
              help="show the last N lines of each listed failure's output "
              "(--json: default 12)")
@click.option("--watch", is_flag=True, help="refresh until nothing is queued or running")
@click.option("--interval", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="seconds between refreshes of --watch")
@json_option
@click.pass_context
def status(ctx: click.Context, show_all: bool, states: tuple[str, ...], tail: int | None,
           watch: bool, interval: float, as_json: bool) -> None:
    from .commands.status import show

    rep = show(analysis_of(ctx), set(states), show_all, tail, watch, interval, as_json)
    if rep.problems:
        ctx.exit(PROBLEMS_EXIT)


@cli.command(help="Cancel queued or running jobs (all if none named)."
             + example("fairbig cancel 1234567"))
@click.argument("job_ids", nargs=-1)
@json_option
@click.pass_context
def cancel(ctx: click.Context, job_ids: tuple[str, ...], as_json: bool) -> None:
    from .commands.cancel import cancel as do_cancel
    from .commands.plan import current_jobs

    a = analysis_of(ctx)
    require_planned(job_ids, {j.job_id for j in current_jobs(a)})
    stopped = do_cancel(a, set(job_ids))
    if as_json:
        ui.emit_json({"cancelled": stopped})
    else:
        ui.say(f"cancelled {len(stopped)} job(s)" + (f": {' '.join(stopped[:10])}"
                                                     if stopped else ""))


@cli.command(help="Merge every finished job branch into the output store's main, verified."
             + example("fairbig merge --dry-run --json"))
@click.option("--dry-run", is_flag=True, help="check everything, write nothing")
@click.option("--keep-branches", is_flag=True, help="keep merged job branches in the store")
@click.option("--shared", multiple=True,
              help="path pattern several jobs may write if identical (repeatable)")
@json_option
@click.pass_context
def merge(ctx: click.Context, dry_run: bool, keep_branches: bool, shared: tuple[str, ...],
          as_json: bool) -> None:
    from .commands.merge import MergeRefused
    from .commands.merge import merge as do_merge

    try:
        out = do_merge(analysis_of(ctx), dry_run, keep_branches, shared)
    except MergeRefused as exc:
        if as_json:
            ui.emit_json(asdict(exc.outcome) | {"error": str(exc)})
        else:
            for line in exc.details:
                click.echo(f"  {line}", err=True)
        raise
    if as_json:
        ui.emit_json(asdict(out))
        return
    verb = "would merge" if dry_run else "merged"
    ui.say(f"{verb} {len(out.merged)} job(s); {len(out.identical)} already in main; "
           f"{len(out.outdated)} outdated and {len(out.unplanned)} unplanned branch(es) left")
    if not dry_run and out.merged:
        ui.say(f"main is now {out.commit[:12]}; {out.deleted_branches} branch(es) deleted; "
               f"times: {', '.join(f'{k} {v:.2f}s' for k, v in out.seconds.items())}")


@cli.command(help="Recompute jobs from their run records in a fresh clone; compare outputs."
             + example("fairbig rerun 1234567    |    fairbig rerun --sample 5 --seed 1"))
@click.argument("job_ids", nargs=-1)
@click.option("--sample", type=click.IntRange(1), default=None,
              help="rerun N randomly chosen finished jobs")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for --sample")
@click.option("--keep", is_flag=True, help="keep the temporary clone(s) for inspection")
@json_option
@click.pass_context
def rerun(ctx: click.Context, job_ids: tuple[str, ...], sample: int | None, seed: int,
          keep: bool, as_json: bool) -> None:
    from .commands import rerun as rr
    from .commands.status import current_status

    a = analysis_of(ctx)
    ids = list(job_ids)
    if sample:
        finished = [j.job_id for j in current_status(a).jobs if j.state in ("done", "merged")]
        ids = rr.sample(finished, sample, seed)
        ui.step(f"sample of {len(ids)} job(s) with seed {seed}: {' '.join(ids)}")
    if not ids:
        raise FairbigError("no job given", "name a job ID or use --sample N")
    results = []
    for jid in ids:
        ui.step(f"rerunning {jid}")
        results.append(rr.rerun_job(a, jid, keep))
    if as_json:
        ui.emit_json({"seed": seed if sample else None, "jobs": [
            {"job_id": r.job_id, "commit": r.commit, "ok": r.ok, "files": r.files,
             "counts": r.counts(), "clone": r.clone} for r in results]})
    else:
        for r in results:
            ui.table(f"rerun of {r.job_id} ({r.commit[:12]}): "
                     f"{'IDENTICAL' if r.ok else 'NOT REPRODUCED'}", ["file", "verdict"],
                     sorted(r.files.items()))
            if r.clone:
                ui.say(f"clone kept at {r.clone}")
    if not all(r.ok for r in results):
        ctx.exit(1)


@cli.command(help="Fetch and decrypt stored results with the lab key and check each against "
             "its annex key; name damaged or missing files per job. Needs the lab's secret "
             "key. --repair runs the damaged jobs again here (local backend), merges their "
             "new results and verifies them again."
             + example("fairbig verify --sample 20    |    fairbig verify --repair 1234567"))
@click.argument("job_ids", nargs=-1)
@click.option("--sample", type=click.IntRange(1), default=None,
              help="verify N randomly chosen jobs with results")
@click.option("--seed", type=int, default=0, show_default=True, help="seed for --sample")
@click.option("--repair", is_flag=True,
              help="run damaged jobs again, merge and verify their new results")
@json_option
@click.pass_context
def verify(ctx: click.Context, job_ids: tuple[str, ...], sample: int | None, seed: int,
           repair: bool, as_json: bool) -> None:
    from .commands import verify as vf
    from .commands.rerun import sample as pick

    a = analysis_of(ctx)
    ids = list(job_ids) or vf.with_results(a)
    if sample:
        ids = pick(ids, sample, seed)
        ui.step(f"sample of {len(ids)} job(s) with seed {seed}: {' '.join(ids)}")
    if not ids:
        raise FairbigError("no job has a result in the output store yet",
                           "run jobs and merge them first ('fairbig status')")
    rep = vf.verify(a, ids)
    after = vf.repair(a, rep) if repair and not rep.ok else None
    if as_json:
        ui.emit_json({"checked": rep.to_json(), "repaired": rep.bad_jobs if after else [],
                      "after": after.to_json() if after else None,
                      "ok": rep.ok or after is not None})
    else:
        for p in rep.problems:
            ui.say(p.line())
        bad = rep.bad_jobs
        ui.say(f"verified {rep.files} file(s) of {len(rep.jobs)} job(s) in {rep.seconds:.1f} s: "
               + ("every file matches its key" if rep.ok else
                  f"{sum(p.problem == vf.CORRUPT for p in rep.problems)} corrupt, "
                  f"{sum(p.problem == vf.MISSING for p in rep.problems)} missing, "
                  f"in {len(bad)} job(s)"))
        if after:
            ui.say(f"repaired {' '.join(bad)}: ran again, merged, {after.files} file(s) "
                   "verified")
        elif bad:
            ui.say(f"repair: fairbig verify --repair {' '.join(bad)}  (runs them again here, "
                   "merges, verifies), or restore a good copy from a clone that holds it: "
                   f"git annex drop --from {OUTPUT_STORAGE} --force --key KEY; "
                   f"git annex copy --to {OUTPUT_STORAGE} --key KEY")
    if not rep.ok and after is None:
        ctx.exit(1)


@cli.command(help="Compare two computations by git trees and annex keys (no content fetched)."
             + example("fairbig compare /data/out-a@main 'ria+file:///data/out-b#<id>'"))
@click.argument("a")
@click.argument("b")
@click.option("--all", "show_all", is_flag=True, help="list identical files too")
@json_option
@click.pass_context
def compare(ctx: click.Context, a: str, b: str, show_all: bool, as_json: bool) -> None:
    from .commands.compare import STATUSES, compare_sides

    comp = compare_sides(a, b)
    data = comp.to_json(all_files=show_all)
    if as_json:
        ui.emit_json(data)
    else:
        ui.table("compare", ["level", *STATUSES],
                 [[lvl, *(counts.get(k, "-") for k in STATUSES)]
                  for lvl, counts in data["summary"].items()])
        rows = sorted(comp.files.items()) if show_all else list(comp.problems())
        if rows:
            ui.table("files", ["file", "status"], rows)
    if not comp.identical:
        ctx.exit(1)


@cli.command(help="Publish the dataset and render the job body for an outside driver (e.g. "
             "Snakemake); print its path. One run directory per commit, reused by every call."
             + example("bash \"$(fairbig script)\" 1234567"))
@json_option
@click.pass_context
def script(ctx: click.Context, as_json: bool) -> None:
    from .commands.script import prepare

    path = prepare(analysis_of(ctx))
    if as_json:
        ui.emit_json({"script": str(path)})
    else:
        ui.say(str(path))


@cli.command(help="Print the path of the Snakemake workflow shipped with fairbig (for "
             "'module fairbig: snakefile: ...' in your Snakefile)."
             + example("snakemake -s \"$(fairbig snakefile)\" --config analysis=/data/ana -c4"))
@json_option
def snakefile(as_json: bool) -> None:
    from . import snakefile as shipped

    path = shipped()
    if as_json:
        ui.emit_json({"snakefile": str(path), "profiles": str(path.parent / "profiles")})
    else:
        ui.say(str(path))


@cli.command(help="Copy one result file of a job out of the output store, decrypted with "
             "the lab's secret key (from your GnuPG keyring)."
             + example("fairbig fetch 1234567 summary.json --to out/1234567/summary.json"))
@click.argument("job")
@click.argument("path")
@click.option("--to", "dest", required=True, type=click.Path(path_type=Path),
              help="file to write (replaced atomically)")
@json_option
@click.pass_context
def fetch(ctx: click.Context, job: str, path: str, dest: Path, as_json: bool) -> None:
    from .commands.fetch import fetch as fetch_result

    out = fetch_result(analysis_of(ctx), job, path, dest)
    if as_json:
        ui.emit_json({"job_id": job, "path": path, "file": str(out)})
    else:
        ui.say(str(out))


@cli.command(help="Remove ephemeral clones left on this host by jobs that were killed."
             + example("fairbig cleanup --dry-run"))
@click.option("--dry-run", is_flag=True, help="only list them")
@json_option
@click.pass_context
def cleanup(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    from .commands.cleanup import leftovers, remove_tree

    found = leftovers(analysis_of(ctx))
    if not dry_run:
        for _, path in found:
            remove_tree(path)
    if as_json:
        ui.emit_json({"removed": [] if dry_run else [p for _, p in found],
                      "found": [{"job_id": j, "path": p} for j, p in found]})
    else:
        verb = "would remove" if dry_run else "removed"
        ui.say(f"{verb} {len(found)} leftover clone(s)")
        for jid, path in found:
            ui.say(f"  {jid}: {path}")


@cli.group(help="Describe the computation in a standard format for use outside DataLad."
           + example("fairbig export ro-crate crate/ --license CC-BY-4.0"))
def export() -> None:
    pass


@export.command("ro-crate",
                help="Write a Process Run Crate (RO-Crate) of the merged computation to DIR "
                f"(default {WORK_DIR}/ro-crate): datasets, container, pipeline, encryption "
                "and one action per merged job, linking to the DataLad dataset; no result "
                "content, nothing decrypted."
                + example("fairbig export ro-crate /data/share/crate --json"))
@click.argument("out_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--license", "license_id", default="",
              help="licence of the crate's metadata: an SPDX ID or a URL (default: none "
              "stated)")
@json_option
@click.pass_context
def ro_crate(ctx: click.Context, out_dir: Path | None, license_id: str,
             as_json: bool) -> None:
    from .commands.export import export_ro_crate

    a = analysis_of(ctx)
    out = export_ro_crate(a, out_dir or a.work / "ro-crate", license_id)
    if as_json:
        ui.emit_json(asdict(out))
        return
    ui.say(f"RO-Crate of {out.jobs} merged job(s) at {out.commit[:12]}: {out.crate} "
           f"({out.metadata_bytes:,} bytes, {out.seconds:.1f} s)")
    ui.say("entities: " + ", ".join(f"{k} {v}" for k, v in out.entities.items()))


@cli.command(help="Write the computation as one self-contained HTML page (no network needed "
             "to open it): jobs by state over time, duration and peak memory per step, "
             "failures by cause, hosts, merges and provenance. Default: "
             ".fairbig/work/report.html."
             + example("fairbig report -o ~/public_html/ukb.html"))
@click.option("-o", "--output", "target", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="the HTML file to write")
@json_option
@click.pass_context
def report(ctx: click.Context, target: Path | None, as_json: bool) -> None:
    from .commands.report import write_report

    a = analysis_of(ctx)
    out = write_report(a, (target or a.work / "report.html").absolute())
    if as_json:
        ui.emit_json(asdict(out))
        return
    ui.say(f"report of {out.jobs} job(s): {out.path} ({out.bytes:,} bytes, "
           f"{out.seconds:.1f} s)")


def _add_global_options(group: click.Group) -> None:
    """Every command (and subcommand) takes ``-C`` and ``--debug`` after its name too."""
    for command in group.commands.values():
        command.params += global_options()
        if isinstance(command, click.Group):
            _add_global_options(command)


_add_global_options(cli)


def one_line(text: str) -> str:
    """A user error stays one line: control characters in a quoted value (a newline in
    a setting or a subject ID) are shown escaped, never printed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    _venv_on_path()
    dl.quiet()
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        rc = cli.main(args=argv, prog_name="fairbig", standalone_mode=False)
        if isinstance(rc, int) and rc:
            return rc  # ctx.exit(N) arrives here as a return value
    except FairbigError as exc:
        if debug:
            raise
        click.echo(f"fairbig: error: {one_line(str(exc))}", err=True)
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("fairbig: interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("fairbig: interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        click.echo(f"fairbig: error: internal error: {type(exc).__name__}: "
                   f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
                   "(run again with --debug for the traceback and report it)", err=True)
        return 1
    return 0


def _entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    _entry()
