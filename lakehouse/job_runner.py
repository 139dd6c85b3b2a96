"""Jobs as declarations: name, summary, the tables read and written, options, one function.

The runner owns what every job would otherwise repeat: the session, the skip rule ("no input
changed since my last successful run", `--force` to run anyway), lineage rows per output table,
progress and one-line errors. `spark-submit jobs/<name>.py ...`, `tidewater run <name> ...`, the
demo and the tests all end in `JobSpec.__call__` or `main(name, argv)`. Jobs register in one
place, the `tidewater.jobs` entry-point group in setup.py, so this floor package never imports
the layers above it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping, Sequence

import click

from lakehouse.cli_options import Option, common_job_params
from lakehouse.console import progress
from lakehouse.private_files import owner_only
from lakehouse.errors import JobNotFound, TidewaterError, describe

Tables = Sequence[str] | Callable[[Any], Sequence[str]]
Outputs = Mapping[str, Sequence[str]] | Callable[[Any], Mapping[str, Sequence[str]]]


@dataclass(frozen=True)
class JobSpec:
    """A job: what it reads (`inputs`), what it writes and from which inputs (`outputs`), how to run it.

    `outputs` maps each table written to the inputs it is built from: lineage records exactly that.
    Either may be a function of the config where the tables come from configuration. Names are
    configured tables (`layer.name`) or assets outside Delta: `model:<name>` (a registered model
    version), `online:<view>` (the online store), `landing:<source>` (arrival files).
    """

    name: str
    summary: str
    run: Callable[[Any, argparse.Namespace], Any]
    inputs: Tables = ()
    outputs: Outputs = field(default_factory=dict)
    options: Sequence[Option] = ()
    skip_unchanged: bool = True  # skip when every input is at the version the last success read
    rerun_options: tuple[str, ...] = ()  # options that ask for a specific run: never skipped
    plan: Callable[[Any, argparse.Namespace], dict[str, int | None]] | None = None
    hand_over: Callable[[Any, argparse.Namespace], Any] | None = None  # runs it elsewhere when it returns
    up_to_date: str = "its outputs are up to date"  # what a skip tells the user
    busy: str = "running"  # what a second run of the job, stopped while this one holds its lock, is told

    def input_tables(self, cfg) -> list[str]:
        return list(self.inputs(cfg) if callable(self.inputs) else self.inputs)

    def output_tables(self, cfg) -> dict[str, list[str]]:
        declared = self.outputs(cfg) if callable(self.outputs) else self.outputs
        return {out: list(ins) for out, ins in declared.items()}

    def __call__(self, spark, cfg, args: argparse.Namespace | None = None, **options) -> Any:
        """Run the job in this session (the demo and tests): options as keywords, defaults for the rest."""
        values = job_defaults(self)
        values.update({k: v for k, v in vars(args or argparse.Namespace()).items() if v is not None})
        values.update(options)
        return run_job(self, spark, cfg, argparse.Namespace(**values))


def job(name: str, summary: str, inputs: Tables = (), outputs: Outputs | None = None,
        options: Sequence[Option] = (), **behaviour) -> Callable[[Callable], JobSpec]:
    """Declare the function below as a job: `@job(name=..., inputs=..., outputs=...)`."""
    def declare(fn: Callable) -> JobSpec:
        return JobSpec(name=name, summary=summary, run=fn, inputs=inputs, outputs=outputs or {},
                       options=tuple(options), **behaviour)
    return declare


def job_command(spec: JobSpec, action: Callable[[argparse.Namespace], Any] = lambda args: args) -> click.Command:
    """The job's command line: the shared options, its declared ones, and --force where it may skip."""
    params = [*common_job_params(), *(click.Option(list(o.flags), **o.kwargs) for o in spec.options)]
    if spec.skip_unchanged:
        params.append(click.Option(["--force"], is_flag=True,
                                   help="Run even if no input changed since the last successful run."))
    return click.Command(spec.name, params=params, help=spec.summary,
                         callback=lambda **values: action(argparse.Namespace(**values)),
                         context_settings={"help_option_names": ["-h", "--help"]})


def job_defaults(spec: JobSpec) -> dict[str, Any]:
    """Every option's default, as if the job had been run with none."""
    ctx = job_command(spec).make_context(spec.name, [], resilient_parsing=True)
    return dict(ctx.params)


def installed_jobs() -> dict[str, Any]:
    """name -> entry point of every registered job (load() gives its JobSpec)."""
    return {ep.name: ep for ep in entry_points(group="tidewater.jobs")}


def find_job(name: str) -> JobSpec:
    jobs = installed_jobs()
    if name not in jobs:
        raise JobNotFound(f"no job named {name!r}", hint=f"installed jobs: {', '.join(sorted(jobs))}")
    return jobs[name].load()


def job_catalog(cfg) -> list[dict]:
    """Every job with its declared inputs and outputs (what `tidewater jobs` prints)."""
    out = []
    for name, ep in sorted(installed_jobs().items()):
        spec = ep.load()
        out.append({"job": name, "summary": spec.summary, "inputs": spec.input_tables(cfg),
                    "outputs": spec.output_tables(cfg), "skips_when_unchanged": spec.skip_unchanged})
    return out


def summarize(spec: JobSpec, run: Any, seconds: float) -> str:
    changed = getattr(run, "changed_outputs", lambda: {})()
    wrote = ", ".join(f"{t}@v{v}" for t, v in changed.items()) or "no table changed"
    return f"{spec.name}: done in {seconds:.1f}s; {wrote}"


def should_skip(spec: JobSpec, run, args: argparse.Namespace) -> bool:
    """The skip rule: the last successful run read exactly the versions this run would read."""
    from lakehouse.lineage import last_successful_inputs

    if not spec.skip_unchanged or getattr(args, "force", False):
        return False
    if any(getattr(args, name, None) is not None for name in spec.rerun_options):
        return False
    last = last_successful_inputs(run.spark, run.cfg, spec.name)
    if last is None:
        return False
    existing = {name: version for name, version in run.planned.items() if version is not None}
    return {name: version for name, version in last.items() if version is not None} == existing


def run_job(spec: JobSpec, spark, cfg, args: argparse.Namespace) -> Any:
    """Plan the input versions, skip or run the job inside a lineage record, report progress."""
    from lakehouse.lineage import JobRun, track_run
    from lakehouse.locks import exclusive

    started = time.time()
    run = JobRun(spark, cfg, spec.name, declared_inputs=spec.input_tables(cfg),
                 declared_outputs=spec.output_tables(cfg))
    run.planned = spec.plan(run, args) if spec.plan else run.current_versions(run.declared_inputs)
    if should_skip(spec, run, args):
        run.skipped = True
        progress(f"{spec.name}: no input changed since the last successful run; {spec.up_to_date} "
                 "(--force runs anyway)")
        audit_run(run, "ok", detail="skipped: no input changed")
        return run
    if spec.hand_over is not None:
        elsewhere = spec.hand_over(run, args)
        if elsewhere is not None:
            return elsewhere  # the run records itself where it ran
    # One run of a job at a time (two cron entries, a person beside the scheduler): the second stops
    # with a one-line error before it reads or writes anything. Jobs that write the same tables are
    # kept apart by retries on Delta's conflicts (lakehouse.retry) instead.
    try:
        with exclusive(cfg, spec.name, doing=spec.busy), track_run(run):
            spec.run(run, args)
    except Exception as err:
        audit_run(run, "failed", error=describe(err)[0])
        raise
    audit_run(run, "ok")
    if cfg.spark.catalog == "hive":
        from lakehouse.catalog import register_written

        register_written(spark, cfg, [*run.declared_outputs, "meta.lineage"])
    progress(summarize(spec, run, time.time() - started))
    return run


def audit_run(run, outcome: str, **fields) -> None:
    """The run's row in meta.audit_log: who ran the job, the versions it read and wrote."""
    from lakehouse import audit
    from lakehouse.identity import identify

    tables = [f"{t}@{v}" for t, v in run.inputs.items() if v is not None]
    tables += [f"{t}@{after}" for t, (_, after) in run.outputs.items() if after is not None and ":" not in t]
    models = [f"{t.split(':', 1)[1]} v{after}" for t, (_, after) in run.outputs.items()
              if t.startswith("model:") and after is not None]
    audit.record(run.cfg, [audit.entry(identify(run.cfg), "job", run.job, outcome, tables=tables, models=models,
                                       run_id=run.run_id, **fields)], spark=run.spark)


def execute(spec: JobSpec, args: argparse.Namespace) -> Any:
    """Load the config, build the session, run the job; errors propagate to the caller."""
    from lakehouse.config import load_config
    from lakehouse.session import build_session

    cfg = load_config(args.env, args.root, args.conf_dir)
    return run_job(spec, build_session(cfg), cfg, args)


def main(name: str, argv: list[str] | None = None, *, resident: bool = False, spark=None) -> int:
    """Entry point for jobs/<name>.py and `tidewater run`: parse, run, errors as one line plus a hint.

    `resident`: hand the job to the resident driver where one is up for its root and env
    (`tidewater run`; a spark-submit is a driver already). `spark`: run it in this session (that driver)."""
    from lakehouse.config import load_config
    from lakehouse.console import configure_logging

    owner_only()
    configure_logging()
    try:
        spec = find_job(name)
    except TidewaterError as err:
        return report_error(err)

    def run(args: argparse.Namespace) -> int:
        try:
            if resident:
                from lakehouse.resident_driver import runs_alone, submit

                if runs_alone(spec, args) is None:
                    code = submit(name, list(argv or []), load_config(args.env, args.root, args.conf_dir))
                    if code is not None:
                        return code
            if spark is None:
                execute(spec, args)
            else:
                run_job(spec, spark, load_config(args.env, args.root, args.conf_dir), args)
        except Exception as err:  # ours and Spark's alike: one line, not a Java stack trace
            return report_error(err)
        return 0

    try:
        return job_command(spec, run).main(args=argv, prog_name=name, standalone_mode=False) or 0
    except click.ClickException as err:  # a usage error: click's own message and hint
        err.show()
        return err.exit_code


def report_error(err: BaseException) -> int:
    if os.environ.get("TIDEWATER_DEBUG"):
        traceback.print_exception(err)
    message, hint = describe(err)
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 2 if isinstance(err, TidewaterError) else 1
