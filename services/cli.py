"""`tidewater services start|stop|status [NAME ...]` (added to the CLI by entry point)."""

from __future__ import annotations

import json

import click

from lakehouse.cli import ENV_OPT, ROOT_OPT, one_line_errors

CONF_DIR_OPT = click.option("--conf-dir", default=None, help="Configuration folder (default: the project's conf/).")


def _config(env, root, conf_dir):
    from lakehouse.config import load_config

    return load_config(env, root, conf_dir)


@click.group()
def services():
    """Run the platform's servers on this machine: Spark cluster, metastore, SQL server, MLflow, Redis, the scoring API, scheduler."""


@services.command()
@click.argument("names", nargs=-1)
@click.option("--workers", type=int, default=None, help="Spark workers (default: services.spark.workers).")
@ROOT_OPT
@ENV_OPT
@CONF_DIR_OPT
@one_line_errors
def start(names, workers, root, env, conf_dir):
    """Start NAMES (default: all but `driver`, in order); one already running is left as it is, a taken port is an error."""
    from services.control import start_services

    for line in start_services(_config(env, root, conf_dir), list(names), env=env, conf_dir=conf_dir, workers=workers):
        click.echo(line)


@services.command()
@click.argument("names", nargs=-1)
@ROOT_OPT
@ENV_OPT
@CONF_DIR_OPT
@one_line_errors
def stop(names, root, env, conf_dir):
    """Stop NAMES (default: all, in reverse order); nothing of theirs is left running."""
    from services.control import stop_services

    for line in stop_services(_config(env, root, conf_dir), list(names)):
        click.echo(line)


@services.command()
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@ROOT_OPT
@ENV_OPT
@CONF_DIR_OPT
@one_line_errors
def status(names, fmt, root, env, conf_dir):
    """Each service process: running, ready, pid, address, log."""
    from services.control import service_status

    rows = service_status(_config(env, root, conf_dir), list(names))
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    for r in rows:
        state = "ready" if r["ready"] else ("starting" if r["running"] else "stopped")
        click.echo(f"{r['service']:<16} {state:<9} {str(r['pid'] or '-'):<8} {r['address']}")



@services.command("run")
@click.argument("name")
@ROOT_OPT
@ENV_OPT
@CONF_DIR_OPT
@one_line_errors
def run_in_foreground(name, root, env, conf_dir):
    """Run one server in the foreground (a container's or systemd's main process), set up as `start` does."""
    from services.control import foreground

    foreground(_config(env, root, conf_dir), name, env=env, conf_dir=conf_dir)


@services.command("airflow-dag")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="File to write (default: <root>/airflow/dags/tidewater_dags.py).")
@ROOT_OPT
@ENV_OPT
@CONF_DIR_OPT
@one_line_errors
def airflow_dag(out, root, env, conf_dir):
    """Write an Airflow DAG per schedule: spark-submit of each job, ordered by what the jobs read and write."""
    from pathlib import Path

    from services.airflow_dag import dag_source

    cfg = _config(env, root, conf_dir)
    path = Path(out) if out else cfg.root / "airflow" / "dags" / "tidewater_dags.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dag_source(cfg, env or cfg.env, conf_dir))
    click.echo(f"wrote {path} ({len(cfg.services.scheduler.schedules)} DAGs); point Airflow's dags_folder at it")
