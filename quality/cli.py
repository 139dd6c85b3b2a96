"""`tidewater validate` and `tidewater quarantine replay` (added to the CLI by entry point)."""

from __future__ import annotations

import sys

import click

from lakehouse.cli import ENV_OPT, FORMAT_OPT, ROOT_OPT, one_line_errors, print_rows, session


@click.command()
@click.argument("table")
@click.option("--version", "version", type=int, default=None, help="Table version (default: latest).")
@FORMAT_OPT
@ROOT_OPT
@ENV_OPT
@one_line_errors
def validate(table, version, fmt, root, env):
    """Run TABLE's declared checks on one version; exit 1 if a `fail` check fails.

    Results are also appended to gold.quality_results (job `validate`).
    """
    from quality.validate import validate_table
    cfg, spark = session(env, root)
    outcome = validate_table(spark, cfg, table, version)
    print_rows([{"check": r.check.name, "engine": r.check.engine, "policy": r.check.policy,
                 "passed": r.passed, "observed": r.observed, "rows_failing": r.rows_failing}
                for r in outcome.results], fmt)
    failed = ", ".join(r.check.name for r in outcome.failed)
    click.echo(f"{table}@v{outcome.version}: {len(outcome.results)} checks, "
               f"{sum(r.passed for r in outcome.results)} passed, "
               f"{len(outcome.failed)} failed{': ' + failed if failed else ''}", err=True)
    sys.exit(1 if outcome.failed else 0)


@click.group()
def quarantine():
    """Inspect and replay quarantined rows."""


@quarantine.command()
@click.argument("table")
@click.option("--reason", default=None, help="Only rows quarantined for this reason (check name).")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def replay(table, reason, root, env):
    """Send TABLE's quarantined rows (after a fix) back through the gate; passing rows reach silver once."""
    from quality.replay import replay_quarantine
    cfg, spark = session(env, root)
    run = replay_quarantine(spark, cfg, table=table, reason=reason)
    entity = table.split(".", 1)[-1]
    m = run.metrics
    click.echo(f"replayed {m.get(f'{entity}_replayed', 0)} rows: {m.get(f'{entity}_inserted', 0)} reached "
               f"silver.{entity}, {m.get(f'{entity}_quarantined', 0)} still quarantined")


@quarantine.command(name="list")
@click.argument("table")
@FORMAT_OPT
@ROOT_OPT
@ENV_OPT
@one_line_errors
def list_reasons(table, fmt, root, env):
    """Count TABLE's quarantined rows by reason (replayed rows excluded)."""
    from quality.replay import still_quarantined
    cfg, spark = session(env, root)
    rows = still_quarantined(spark, cfg, table.split(".", 1)[-1]).groupBy("reason").count().orderBy("reason")
    print_rows([r.asDict() for r in rows.collect()], fmt)
