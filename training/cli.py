"""`tidewater mlflow-ui` and `tidewater models` (added to the CLI by entry point)."""

from __future__ import annotations

import json
import os
import sys

import click

from lakehouse.cli import ENV_OPT, ROOT_OPT, one_line_errors


@click.command("mlflow-ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5000, show_default=True, help="Port to listen on.")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def mlflow_ui(host, port, root, env):
    """Start the MLflow UI on this project's tracking store (runs until Ctrl-C)."""
    from lakehouse.config import load_config
    from lakehouse.model_store import artifact_location, tracking_uri

    cfg = load_config(env, root)
    uri = tracking_uri(cfg)
    click.echo(f"MLflow UI for {uri} on http://{host}:{port} (Ctrl-C stops it)", err=True)
    os.execv(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                              "--default-artifact-root", artifact_location(cfg), "--host", host, "--port", str(port)])


@click.command("models")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def models(root, env):
    """List the registered fraud model's versions, aliases and registry decisions (JSON lines)."""
    from lakehouse.config import load_config
    from registry import contract
    from registry.client import registry_client

    cfg = load_config(env, root)
    client = registry_client(cfg)
    name = cfg.training.model_name
    aliases: dict[int, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(int(version), []).append(alias)
    for mv in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda m: int(m.version)):
        click.echo(json.dumps({"model": name, "version": int(mv.version), "aliases": sorted(aliases.get(int(mv.version), [])),
                               "mlflow_run_id": mv.run_id, "decision": mv.tags.get(contract.DECISION),
                               "reason": mv.tags.get(contract.DECISION_REASON),
                               "holdout_auc_pr": mv.tags.get(contract.HOLDOUT_PREFIX + "auc_pr")}))
