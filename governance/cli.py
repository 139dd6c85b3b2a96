"""`tidewater erase`, `tidewater retention apply` and `tidewater pii scan` (added to the CLI by entry point)."""

from __future__ import annotations

import dataclasses
import json

import click

from lakehouse.cli import ENV_OPT, FORMAT_OPT, ROOT_OPT, one_line_errors, print_rows


def unrestricted(env, root, action: str):
    """The config, once the acting identity may do this: erasing, vacuuming and reading every raw
    payload need a role granted every table and PII (the engineer role)."""
    from lakehouse.config import load_config
    from lakehouse.errors import AccessDenied
    from lakehouse.identity import identify
    cfg = load_config(env, root)
    who = identify(cfg)
    if who.restricted:
        raise AccessDenied(f"{who.name} (role {who.role}) may not {action}",
                           hint="it needs a role granted every table and PII (engineer); see conf access.roles")
    return cfg


@click.command()
@click.option("--customer", required=True, help="The customer id whose rows to remove (the subject key's value).")
@click.option("--dry-run", is_flag=True, help="Count the rows per table; change nothing.")
@FORMAT_OPT
@ROOT_OPT
@ENV_OPT
@one_line_errors
def erase(customer, dry_run, fmt, root, env):
    """Remove a customer's rows from every table and the online store, and their files from disk.

    Tables are found by their schemas (the subject key, a linked key, or raw lines naming either);
    each erased table is vacuumed with no retention, and each is recorded in meta.erasures.
    """
    from lakehouse.session import build_session
    from governance.erase import erase_subject, previous_erasures, subject_token
    cfg = unrestricted(env, root, "erase customer data")
    spark = build_session(cfg)
    done = erase_subject(spark, cfg, customer, dry_run=dry_run)
    if not done:
        before = previous_erasures(spark, cfg, subject_token(cfg, customer))
        when = f" (erased on {min(r['erased_at'] for r in before):%Y-%m-%d %H:%M} UTC)" if before else ""
        click.echo(f"customer {customer} is in no table and no online view{when}: nothing to erase")
        return
    if dry_run:
        print_rows([{"table": e.table, "rows": e.rows_removed, "version": e.version_before} for e in done], fmt)
        click.echo(f"dry run: {sum(e.rows_removed for e in done)} rows of customer {customer} in {len(done)} "
                   f"tables/views; nothing changed", err=True)
        return
    print_rows([{"table": e.table, "rows_removed": e.rows_removed, "version_before": e.version_before,
                 "version_after": e.version_after, "files_vacuumed": e.files_vacuumed} for e in done], fmt)
    click.echo(f"erased {sum(e.rows_removed for e in done)} rows of customer {customer} from {len(done)} "
               f"tables/views; recorded in {cfg.governance.erasures_table}", err=True)


@click.group()
def retention():
    """Keep each layer's old files and log for its window (governance.retention), no longer."""


@retention.command(name="apply")
@click.option("--dry-run", is_flag=True, help="Count the files each table would lose; change nothing.")
@FORMAT_OPT
@ROOT_OPT
@ENV_OPT
@one_line_errors
def apply_cmd(dry_run, fmt, root, env):
    """Set each table's retention properties to its layer's window and VACUUM the files past it."""
    from lakehouse.session import build_session
    from governance.retention import apply_retention
    cfg = unrestricted(env, root, "vacuum tables")
    spark = build_session(cfg)
    results = apply_retention(spark, cfg, dry_run=dry_run)
    print_rows([dataclasses.asdict(r) for r in results], fmt)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{len(results)} tables: {verb} {sum(r.files_removed for r in results)} files past their window",
               err=True)


@click.group()
def pii():
    """Find clear personal data in the lakehouse."""


@pii.command()
@FORMAT_OPT
@ROOT_OPT
@ENV_OPT
@one_line_errors
def scan(fmt, root, env):
    """Count clear card numbers, emails, IP addresses and person names per table and column (no values shown).

    Reads the first governance.scan_rows rows of every string column of every table (delta-rs, no JVM).
    """
    from governance.pii_scan import NAME_KIND, NAME_METHOD, scan as scan_tables
    cfg = unrestricted(env, root, "read every table's raw values")
    findings, scanned = scan_tables(cfg)
    rows = [dataclasses.asdict(f) for f in findings]
    if fmt == "json":
        click.echo(json.dumps({"findings": rows, "rows_scanned": scanned, NAME_KIND: NAME_METHOD}, indent=2))
    else:
        print_rows(rows, fmt)
    clean = sorted(set(scanned) - {f.table for f in findings})
    click.echo(f"{len(scanned)} tables scanned, {len({f.table for f in findings})} hold clear PII; "
               f"none found in: {', '.join(clean) or '-'}", err=True)
    click.echo(f"note: person names are found {NAME_METHOD}", err=True)
