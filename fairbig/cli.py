"""The ``fairbig`` command line: thin wrappers around the modules that do the work."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

import click

from . import __version__, dl, ui
from .dataset import Analysis
from .errors import FairbigError


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


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             help="Reproducible per-subject processing of huge DataLad datasets."
             + example("fairbig init analysis --input ria+file:///data/store#~ukb ..."))
@click.version_option(__version__)
@click.option("-C", "directory", type=click.Path(path_type=Path), default=None,
              help="analysis dataset (default: the current directory)")
@click.option("--debug", is_flag=True, help="show tracebacks of errors")
@click.pass_context
def cli(ctx: click.Context, directory: Path | None, debug: bool) -> None:
    ctx.ensure_object(dict)
    ctx.obj["dir"] = directory
    ctx.obj["debug"] = debug


@cli.command(help="Create the analysis dataset, the input store and the encrypted output store."
             + example("fairbig init analysis --input ria+file:///data/in#~ukb "
                       "--container img.tar --command 'sh code/run.sh {input_dir} "
                       "{output_dir}' --input-store /data/in --output-store /data/out "
                       "--encrypt-to 0xFPR"))
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--input", "source", required=True, help="input DataLad dataset (path or URL)")
@click.option("--container", required=True, type=click.Path(path_type=Path),
              help="container image (rootfs tarball)")
@click.option("--container-name", default="", help="name to register it under")
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
@click.option("--backend", type=click.Choice(["local", "slurm", "htcondor"]), default=None)
@json_option
def init(target: Path, source: str, container: Path, container_name: str,
         config_file: Path | None, command: str | None, input_store: str | None,
         output_store: str | None, keys: tuple[str, ...], code: tuple[Path, ...],
         layout: str | None, by: str | None, backend: str | None, as_json: bool) -> None:
    from . import config as cfgmod
    from .init import InitOptions
    from .init import init as do_init

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
    res = do_init(InitOptions(
        target, source, str(container), values["--command"], values["--input-store"],
        values["--output-store"], values["--encrypt-to"], container_name, list(code),
        layout or given.inputs.layout, by or given.inputs.by, backend or given.backend.name,
        base), step=ui.step)
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


@cli.command(help="Verify tools, stores, container and encryption key before submitting."
             + example("fairbig check --json"))
@json_option
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    from .check import run_checks

    results = list(run_checks(analysis_of(ctx)))
    if as_json:
        ui.emit_json([asdict(r) for r in results])
    else:
        for r in results:
            ui.say(f"{'ok  ' if r.ok else 'FAIL'} {r.name}: {r.detail}")
    if not all(r.ok for r in results):
        ctx.exit(1)


ids_option = click.option("--only", multiple=True, help="only these IDs (or @FILE of IDs)")


@cli.command(help="Split the analysis into jobs, from git trees only (no content fetched)."
             + example("fairbig plan --by session --exclude 1234567"))
@click.option("--by", type=click.Choice(["subject", "session"]), default=None,
              help="one job per subject (default from fairbig.yaml) or per session")
@ids_option
@click.option("--exclude", multiple=True, help="leave out these IDs (or @FILE of IDs)")
@click.option("--update", is_flag=True, help="first update the input dataset from its origin")
@click.option("--dry-run", is_flag=True, help="show what would be planned, write nothing")
@json_option
@click.pass_context
def plan(ctx: click.Context, by: str | None, only: tuple[str, ...], exclude: tuple[str, ...],
         update: bool, dry_run: bool, as_json: bool) -> None:
    from . import planning

    a = analysis_of(ctx)
    if update:
        ui.step("updating the input dataset")
        planning.update_inputs(a)
    out = planning.plan(a, by, planning.read_ids(only), planning.read_ids(exclude), dry_run)
    if as_json:
        ui.emit_json(asdict(out))
        return
    ui.say(f"{out.jobs} jobs ({out.layout} layout): {len(out.new)} new, "
           f"{len(out.changed)} changed, {len(out.done)} already done")
    for label, ids in (("new", out.new), ("changed", out.changed)):
        if ids:
            ui.say(f"  {label}: {' '.join(ids[:10])}{' …' if len(ids) > 10 else ''}")
    if out.skipped:
        ui.say(f"  skipped (subject tree unreadable): {' '.join(out.skipped[:10])}")
    if not dry_run:
        ui.say(f"plan {'committed' if out.committed else 'unchanged'} at {out.commit[:12]}")


@cli.command(help="Submit planned jobs (local backend by default: runs them here)."
             + example("fairbig submit --backend slurm --failed"))
@click.option("--backend", type=click.Choice(["local", "slurm", "htcondor"]), default=None)
@click.option("--failed", is_flag=True, help="resubmit failed, cancelled and lost jobs only")
@ids_option
@click.option("-j", "--jobs", type=click.IntRange(1), default=None,
              help="local backend: jobs at once (default: cores)")
@click.option("--dry-run", is_flag=True, help="write the job files, submit nothing")
@json_option
@click.pass_context
def submit(ctx: click.Context, backend: str | None, failed: bool, only: tuple[str, ...],
           jobs: int | None, dry_run: bool, as_json: bool) -> None:
    from . import planning
    from . import submit as sub

    a = analysis_of(ctx)
    if jobs:
        a.config.backend.local.jobs = jobs
    out = sub.submit(a, backend, failed, planning.read_ids(only), dry_run)
    if as_json:
        ui.emit_json(asdict(out))
    elif not out.submitted:
        ui.say("nothing to submit" + ("" if failed else " (use --failed to resubmit failures)"))
    else:
        verb = "would submit" if dry_run else "submitted"
        ui.say(f"{verb} {len(out.submitted)} job(s) to {out.backend}; files in {out.run_dir}")
        if out.backend_ids and out.backend != "local":
            ui.say(f"{out.backend} IDs: {' '.join(out.backend_ids)}")
    if out.backend == "local" and not dry_run and out.submitted:
        report = sub.current_status(a)
        bad = [j.job_id for j in report.jobs if j.job_id in set(out.submitted)
               and j.state not in ("done", "merged")]
        if bad:
            ui.say(f"{len(bad)} job(s) did not finish: {' '.join(bad[:10])}"
                   " (see 'fairbig status')")
            ctx.exit(1)


@cli.command(help="Exact per-state counts of all planned jobs, failures with their log tail."
             + example("fairbig status --json"))
@click.option("--all", "show_all", is_flag=True, help="list every job, not only problems")
@json_option
@click.pass_context
def status(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    from .submit import current_status

    rep = current_status(analysis_of(ctx))
    if as_json:
        ui.emit_json(rep.to_json())
        return
    ui.table("fairbig status", list(rep.counts), [list(rep.counts.values())])
    rows = [j for j in rep.jobs if show_all or j.state in ("failed", "lost", "cancelled")]
    if rows:
        ui.table("jobs", ["job", "state", "step", "detail"],
                 [[j.job_id, j.state, j.step, j.detail] for j in rows])
    for jid, lines in rep.failures.items():
        ui.say(f"--- {jid}: last lines of its log")
        for line in lines:
            ui.say(f"    {line}")


@cli.command(help="Cancel queued or running jobs (all if none named)."
             + example("fairbig cancel 1234567"))
@click.argument("job_ids", nargs=-1)
@json_option
@click.pass_context
def cancel(ctx: click.Context, job_ids: tuple[str, ...], as_json: bool) -> None:
    from .submit import cancel as do_cancel

    stopped = do_cancel(analysis_of(ctx), set(job_ids))
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
    from .merge import MergeRefused
    from .merge import merge as do_merge

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
    from . import rerun as rr
    from .submit import current_status

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


@cli.command(help="Compare two computations by git trees and annex keys (no content fetched)."
             + example("fairbig compare /data/out-a@main 'ria+file:///data/out-b#<id>'"))
@click.argument("a")
@click.argument("b")
@click.option("--all", "show_all", is_flag=True, help="list identical files too")
@json_option
@click.pass_context
def compare(ctx: click.Context, a: str, b: str, show_all: bool, as_json: bool) -> None:
    from .compare import STATUSES, compare_sides

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
    from .driver import prepare

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
    from .fetch import fetch as fetch_result

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
    from .submit import leftovers, remove_tree

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
