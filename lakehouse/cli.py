"""The `tidewater` command: demo, run, generate, tables, sql, lineage."""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from lakehouse.cli_options import ENV_OPT, FORMAT_OPT, ROOT_OPT  # noqa: F401 (shared with plugin commands)
from lakehouse.console import configure_logging
from lakehouse.private_files import owner_only


def one_line_errors(fn):
    """Errors become `error: ...` plus a hint on stderr, not a Python or Java stack trace."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:  # noqa: BLE001 - the last line of defence for a terminal user
            from lakehouse import audit
            from lakehouse.errors import AccessDenied, describe
            from lakehouse.job_runner import report_error
            audit.note(outcome="denied" if isinstance(err, AccessDenied) else "failed", error=describe(err)[0])
            sys.exit(report_error(err))
    return wrapper


def report_options(fn):
    """--format, --root, --env and one-line errors: what every command that prints rows takes."""
    return FORMAT_OPT(ROOT_OPT(ENV_OPT(one_line_errors(fn))))


def session(env, root):
    from lakehouse.config import load_config
    from lakehouse.session import build_session
    cfg = load_config(env, root)
    return cfg, build_session(cfg)


def with_reader(cfg, read):
    """`read(reader)` with delta-rs, no JVM; where a table needs Spark, a one-line note, then Spark."""
    from lakehouse import delta_reader
    try:
        return read(delta_reader)
    except delta_reader.NeedsSpark as err:
        click.echo(f"note: {err}; reading with Spark for this command", err=True)
        from lakehouse.spark_reader import SparkReader
        return read(SparkReader(cfg))


def print_rows(rows: list[dict], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("(no rows)")
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in rows[0]:
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*("NULL" if v is None else str(v) for v in r.values()))
    Console(width=max(120, Console().width), highlight=False).print(table)


class AuditedGroup(click.Group):
    """Every command leaves a row in meta.audit_log: who ran which command, what it touched, how it ended.

    `tidewater run JOB` is recorded by the job itself (with the versions it read and wrote).
    """

    def invoke(self, ctx: click.Context):
        words, args, group = [], [*ctx.protected_args, *ctx.args], self
        while args and isinstance(group, click.Group) and args[0] in group.commands:
            words.append(args[0])
            group = group.commands[args.pop(0)]
        if not words or words[0] == "run" or {"-h", "--help"} & set(args):
            return super().invoke(ctx)
        from lakehouse import audit
        audit.begin_command()
        outcome = "ok"
        try:
            return super().invoke(ctx)
        except SystemExit as done:
            outcome = "ok" if done.code in (0, None) else "failed"
            raise
        except BaseException:
            outcome = "failed"
            raise
        finally:
            _record_command(ctx, " ".join(words), outcome)


def _record_command(ctx: click.Context, action: str, outcome: str) -> None:
    from lakehouse import audit
    from lakehouse.config import load_config
    from lakehouse.identity import identify

    notes = audit.take_notes()
    try:
        cfg = load_config(ctx.meta.get("tidewater.env"), ctx.meta.get("tidewater.root"))
    except Exception:  # noqa: BLE001 - a command that failed on its config has nowhere to record it
        return
    if not cfg.root.exists():  # no lakehouse here (yet): a command that made none leaves none behind
        return
    audit.record(cfg, [audit.entry(identify(cfg), "cli", action, **{"outcome": outcome, **notes})])


@click.group(cls=AuditedGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tidewater")
def cli():
    """Tidewater: a lakehouse ML platform on Spark and Delta.

    Start with `tidewater demo`; every command has --help.
    """


@cli.command()
@click.option("--rows", type=int, default=None,
              help="Transactions from the start date on (default from config); the warm-up history adds its own.")
@click.option("--days", type=int, default=None, help="Daily arrival batches from the start date on.")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def demo(rows, days, root, env):
    """Generate data and run every pipeline stage that is installed, then summarize."""
    from lakehouse.demo import run_demo
    run_demo(env=env, root=root, rows=rows, days=days)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                               "help_option_names": []})
@click.argument("job", required=False)
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
@one_line_errors
def run(job, job_args):
    """Run one job: tidewater run JOB [--env ENV] [--root DIR] [job options].

    `tidewater run JOB --help` lists the job's options; `tidewater run` lists the jobs.
    """
    from lakehouse.job_runner import installed_jobs, main as job_main
    if not job or job in ("-h", "--help"):
        click.echo(click.get_current_context().get_help())
        click.echo("\nJobs:")
        for name, ep in sorted(installed_jobs().items()):
            click.echo(f"  {name:<20} {ep.load().summary}")
        return
    sys.exit(job_main(job, list(job_args), resident=True))


@cli.command()
@report_options
def jobs(fmt, root, env):
    """List every job with the tables it reads and writes (from the jobs' own declarations)."""
    from lakehouse.config import load_config
    from lakehouse.job_runner import job_catalog
    catalog = job_catalog(load_config(env, root))
    if fmt == "json":
        click.echo(json.dumps(catalog, indent=2))
        return
    for entry in catalog:
        click.echo(f"{entry['job']}: {entry['summary']}")
        click.echo(f"  reads:  {', '.join(entry['inputs']) or '-'}")
        for out, built_from in entry["outputs"].items():
            click.echo(f"  writes: {out}  <- {', '.join(built_from) or '-'}")


@cli.command()
@click.option("--out", type=click.Path(), default=None, help="Landing folder (default: <root>/landing).")
@click.option("--rows", type=int, default=None,
              help="About how many transactions from --start-date on (the warm-up adds its own at the same rate).")
@click.option("--days", type=int, default=None, help="Number of daily arrival batches from --start-date on.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same files).")
@click.option("--start-date", default=None, help="First day, YYYY-MM-DD.")
@click.option("--defect-rate", type=float, default=None, help="Share of transactions with a planted defect.")
@click.option("--fraud-rate", type=float, default=None, help="Base share of fraudulent transactions.")
@click.option("--drift-from-day", type=int, default=None, help="From this day index, shift country and amount.")
@click.option("--no-drift", is_flag=True, help="Plant no drift (overrides --drift-from-day and the config).")
@click.option("--warmup-days", type=int, default=None,
              help="Days of history before --start-date, at the same daily rate (default from config).")
@click.option("--to-kafka", is_flag=True,
              help="Publish the sources the env reads from Kafka (conf/kafka.yaml: transactions) to their topics, "
                   "batch by batch in event order, instead of leaving them as landing files.")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def generate(out, rows, days, seed, start_date, defect_rate, fraud_rate, drift_from_day, no_drift, warmup_days,
             to_kafka, root, env):
    """Write synthetic arrival batches (JSON lines + CSV) and a manifest of what was planted."""
    from lakehouse import kafka_topic
    from lakehouse.config import load_config
    from lakehouse.errors import ConfigError
    from lakehouse.generator import generate as gen
    from lakehouse.console import progress
    cfg = load_config(env, root)
    g = cfg.generator
    opts = dict(seed=seed, rows=rows, days=days, start_date=start_date, defect_rate=defect_rate,
                fraud_rate=fraud_rate, drift_from_day=drift_from_day, warmup_days=warmup_days)
    settings = g.model_copy(update={k: v for k, v in opts.items() if v is not None}).model_dump()
    if no_drift:
        settings["drift_from_day"] = None
    if to_kafka and not kafka_topic.kafka_sources(cfg):
        raise ConfigError(f"the {cfg.env} env reads every source from landing files, none from Kafka",
                          hint="pass --env kafka (conf/kafka.yaml), or set sources.<name>.kind: kafka")
    target = out or cfg.landing_dir
    man = gen(target, progress=progress, **settings)
    click.echo(f"wrote {man.transactions_written} transactions in {len(man.batches)} batches to {target}")
    if to_kafka:
        from pathlib import Path

        sent = kafka_topic.publish_batches(cfg, [Path(target) / b for b in man.batches], progress)
        topics = ", ".join(kafka_topic.topic_of(n, s) for n, s in kafka_topic.kafka_sources(cfg).items())
        click.echo(f"published {sent} messages to Kafka ({cfg.services.kafka_bootstrap}, topic {topics})")
    click.echo(f"planted defects: {json.dumps(man.defects)}; fraud: {man.fraud_transactions}")
    click.echo(f"manifest: {target}/_manifest.json")


@cli.command()
@report_options
def tables(fmt, root, env):
    """List the lakehouse tables: name, version, rows, path (read from the Delta logs, no JVM).

    A restricted role sees the tables it may read.
    """
    from lakehouse.config import load_config
    from lakehouse.identity import identify
    cfg = load_config(env, root)
    who = identify(cfg)
    rows = [t for t in with_reader(cfg, lambda reader: reader.table_inventory(cfg)) if who.grants.reads(t["name"])]
    print_rows(rows, fmt)


@cli.command()
@click.argument("query")
@FORMAT_OPT
@click.option("--limit", type=int, default=1000, show_default=True, help="At most this many rows.")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def sql(query, fmt, limit, root, env):
    """Run a Spark SQL query over the lakehouse (VERSION AS OF / TIMESTAMP AS OF work).

    As a restricted role (TIDEWATER_USER=analyst), granted tables only, PII columns masked.
    """
    from lakehouse import catalog
    from lakehouse.config import load_config
    catalog.authorize(load_config(env, root), query)  # a denial comes before Spark starts
    cfg, spark = session(env, root)
    rows = [r.asDict(recursive=True) for r in catalog.sql(spark, cfg, query).limit(limit).collect()]
    print_rows(rows, fmt)


@cli.command()
@click.argument("table", required=False)
@click.option("--version", "version", type=int, default=None, help="Table version (default: latest).")
@click.option("--txn", "txn_id", default=None,
              help="A transaction id: its prediction, model version, training set, silver, bronze and landing file.")
@report_options
def lineage(table, version, txn_id, fmt, root, env):
    """Show the upstream chain of a table version, or of one transaction's prediction (--txn). No JVM."""
    from lakehouse.config import load_config
    from lakehouse.errors import TableNotFound
    from lakehouse.lineage_graph import chain_lines, upstream_chain
    cfg = load_config(env, root)
    if txn_id:
        from lakehouse.txn_lineage import lineage_text, transaction_lineage
        story = with_reader(cfg, lambda reader: transaction_lineage(cfg, txn_id, reader))
        click.echo(json.dumps(story, indent=2, default=str) if fmt == "json" else "\n".join(lineage_text(story)))
        return
    if not table:
        raise click.UsageError("name a TABLE, or a transaction with --txn TXN_ID")

    def table_chain(reader) -> dict:
        latest = reader.table_version(cfg, table)
        if latest is None:
            raise TableNotFound(f"{table} has not been written yet", hint="run `tidewater demo` first")
        return upstream_chain(reader.read_rows(cfg, "meta.lineage"), table, latest if version is None else version)

    chain = with_reader(cfg, table_chain)
    click.echo(json.dumps(chain, indent=2, default=str) if fmt == "json" else "\n".join(chain_lines(chain)))


@cli.command()
@click.option("--user", default=None, help="Only this identity's rows.")
@click.option("--since", default=None, help="Only rows since: an ISO time (2026-12-05T10:00) or an age (30m, 2h, 7d).")
@click.option("--limit", type=int, default=200, show_default=True, help="At most this many rows, newest first.")
@report_options
def audit(user, since, limit, fmt, root, env):
    """Who did what, to which tables and models, and how it ended (meta.audit_log, no JVM)."""
    from lakehouse import audit as audit_log
    from lakehouse.config import load_config
    cfg = load_config(env, root)
    rows = audit_log.read(cfg, user=user, since=audit_log.since(since) if since else None, limit=limit)
    if fmt == "table":
        rows = [{"at": f"{r['at']:%Y-%m-%d %H:%M:%S}", "actor": r["actor"], "role": r["role"], "surface": r["surface"],
                 "action": r["action"], "outcome": r["outcome"], "tables": ", ".join(r["tables"] or []),
                 "detail": r["error"] or r["detail"]} for r in rows]
    print_rows(rows, fmt)


def _add_plugin_commands() -> None:
    """Commands other packages contribute (entry-point group `tidewater.commands`)."""
    from importlib.metadata import entry_points
    for ep in entry_points(group="tidewater.commands"):
        cli.add_command(ep.load(), name=ep.name)


def prepared() -> click.Group:
    """The full `tidewater` group, logging as a terminal user gets it (main's set-up, also for tests)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    owner_only()
    configure_logging()
    _add_plugin_commands()  # idempotent: a name added again replaces itself
    return cli


def main() -> None:
    prepared()(prog_name="tidewater")


if __name__ == "__main__":
    main()
