"""`tidewater drift report`: an HTML page from gold.drift_metrics (added to the CLI by entry point)."""

from __future__ import annotations

import click

from lakehouse.cli import ENV_OPT, ROOT_OPT, one_line_errors, session


@click.group()
def drift():
    """Drift results: reports over gold.drift_metrics."""


@drift.command()
@click.option("--out", type=click.Path(), default=None, help="HTML file (default: <root>/reports/drift.html).")
@click.option("--features", "top", default=4, show_default=True, help="How many drifted features to plot.")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def report(out, top, root, env):
    """Write an HTML drift report: metrics over time, and reference vs current distributions."""
    from monitoring.report import write_report

    cfg, spark = session(env, root)
    path = write_report(spark, cfg, out, top)
    click.echo(f"wrote {path}")
