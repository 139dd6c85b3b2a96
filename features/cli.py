"""`tidewater features apply|get` (added to the CLI by entry point)."""

from __future__ import annotations

import json

import click

from lakehouse.cli import ENV_OPT, ROOT_OPT, one_line_errors, session


@click.group()
def features():
    """Feature store: register definitions, read online values."""


@features.command()
@ROOT_OPT
@ENV_OPT
@one_line_errors
def apply(root, env):
    """Register the declared entities and feature views in the Feast registry."""
    from features.store import feature_store, feature_refs
    cfg, _ = session(env, root)
    feature_store(cfg, apply=True)
    click.echo(f"applied {len(cfg.features.views)} feature views ({len(feature_refs(cfg))} features) "
               f"to project {cfg.features.project}")


@features.command()
@click.option("--entity", "entities", multiple=True, required=True, metavar="KEY=VALUE",
              help="Entity to look up, e.g. customer_id=C0000042 (repeat for a batch).")
@click.option("--features", "names", default=None, help="Comma-separated feature names (default: all).")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def get(entities, names, root, env):
    """Print online feature values for one or more entities (JSON)."""
    from lakehouse.config import load_config
    from lakehouse.errors import ConfigError
    from features.store import online_features
    cfg = load_config(env, root)
    pairs = [e.split("=", 1) for e in entities]
    if any(len(p) != 2 for p in pairs) or len({k for k, _ in pairs}) != 1:
        raise ConfigError("--entity takes KEY=VALUE with one key for all entities", hint="--entity customer_id=C0000042")
    key = pairs[0][0]
    values = online_features(cfg, key, [v for _, v in pairs], names.split(",") if names else None)
    click.echo(json.dumps(values, indent=2, default=str))
