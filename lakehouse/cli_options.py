"""The options every command and every job shares, declared once for both (click)."""

from __future__ import annotations

from dataclasses import dataclass

import click

ENV_HELP = "Configuration env (conf/<env>.yaml over conf/base.yaml; default local or $TIDEWATER_ENV)."
ROOT_HELP = "Storage root for tables, checkpoints and catalog (default from config or $TIDEWATER_ROOT)."
CONF_DIR_HELP = "Configuration folder (default: the project's conf/)."

def remembered(ctx: click.Context, param: click.Parameter, value):
    """Keep --env/--root where the command group finds them after the command (its audit row)."""
    ctx.meta[f"tidewater.{param.name}"] = value
    return value


ENV_OPT = click.option("--env", "--conf-env", "env", default=None, help=ENV_HELP, callback=remembered)
ROOT_OPT = click.option("--root", default=None, help=ROOT_HELP, callback=remembered)
FORMAT_OPT = click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
                          show_default=True, help="Output format.")


@dataclass(frozen=True)
class Option:
    """One command-line option of a job, as click takes it (`option("--since", type=..., help=...)`)."""

    flags: tuple[str, ...]
    kwargs: dict


def option(*flags: str, **kwargs) -> Option:
    return Option(flags, kwargs)


def common_job_params() -> list[click.Option]:
    """--env, --root and --conf-dir, which every job takes."""
    return [click.Option(["--env", "--conf-env", "env"], default=None, help=ENV_HELP),
            click.Option(["--root"], default=None, help=ROOT_HELP),
            click.Option(["--conf-dir"], default=None, help=CONF_DIR_HELP)]


def iso_date(text):
    """A YYYY-MM-DD option value as a date."""
    import datetime as dt

    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from None


def model_and_date_options(alias_help: str, dates_help: str) -> list:
    """The options scoring and monitoring jobs share: which registry alias, which event dates."""
    return [option("--alias", help=alias_help),
            option("--since", type=iso_date, help=f"first event date {dates_help} (YYYY-MM-DD)"),
            option("--until", type=iso_date, help=f"last event date {dates_help} (YYYY-MM-DD)")]
