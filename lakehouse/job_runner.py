"""Jobs as data: a JobSpec names a library function; one runner gives every job the same CLI.

`spark-submit jobs/<name>.py ...` and `tidewater run <name> ...` both end in `main(spec, argv)`.
Other packages add jobs through the `tidewater.jobs` entry-point group in setup.py, so this
floor package never imports the layers above it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from lakehouse.console import configure_logging, progress  # noqa: F401 (re-exported for jobs)
from lakehouse.errors import JobNotFound, TidewaterError, describe


@dataclass(frozen=True)
class JobSpec:
    name: str
    summary: str
    run: Callable[[Any, Any, argparse.Namespace], Any]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", "--conf-env", dest="env",
                        help="configuration env: conf/<env>.yaml over conf/base.yaml (default: local, or $TIDEWATER_ENV)")
    parser.add_argument("--root", help="storage root for tables, checkpoints and catalog (default from config, or $TIDEWATER_ROOT)")
    parser.add_argument("--conf-dir", help="configuration folder (default: the project's conf/)")


def job_parser(spec: JobSpec) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=spec.name, description=spec.summary)
    add_common_arguments(parser)
    if spec.add_arguments:
        spec.add_arguments(parser)
    return parser


def installed_jobs() -> dict[str, JobSpec]:
    return {ep.name: ep for ep in entry_points(group="tidewater.jobs")}


def find_job(name: str) -> JobSpec:
    jobs = installed_jobs()
    if name not in jobs:
        raise JobNotFound(f"no job named {name!r}", hint=f"installed jobs: {', '.join(sorted(jobs))}")
    return jobs[name].load()


def summarize(spec: JobSpec, run: Any, seconds: float) -> str:
    changed = getattr(run, "changed_outputs", lambda: {})()
    wrote = ", ".join(f"{t}@v{v}" for t, v in changed.items()) or "no table changed"
    return f"{spec.name}: done in {seconds:.1f}s; {wrote}"


def execute(spec: JobSpec, args: argparse.Namespace) -> Any:
    """Load the config, build the session, run the job; errors propagate to the caller."""
    from lakehouse.config import load_config
    from lakehouse.session import build_session

    cfg = load_config(args.env, args.root, args.conf_dir)
    spark = build_session(cfg)
    started = time.time()
    run = spec.run(spark, cfg, args)
    progress(summarize(spec, run, time.time() - started))
    return run


def main(spec: JobSpec, argv: list[str] | None = None) -> int:
    """Entry point for jobs/<name>.py: parse, run, and turn errors into one line plus a hint."""
    args = job_parser(spec).parse_args(argv)
    configure_logging()
    try:
        execute(spec, args)
    except Exception as err:  # ours and Spark's alike: one line, not a Java stack trace
        return report_error(err)
    return 0


def report_error(err: BaseException) -> int:
    if os.environ.get("TIDEWATER_DEBUG"):
        traceback.print_exception(err)
    message, hint = describe(err)
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)
    return 2 if isinstance(err, TidewaterError) else 1
