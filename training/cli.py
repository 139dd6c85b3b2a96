"""`tidewater mlflow-ui` and `tidewater models [list|history|decided|card]` (added to the CLI by entry point)."""

from __future__ import annotations

import json
import os
import sys

import click

from lakehouse.cli import ENV_OPT, ROOT_OPT, one_line_errors, print_rows, report_options, with_reader


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


@click.group("models", invoke_without_command=True)
@ROOT_OPT
@ENV_OPT
@click.pass_context
@one_line_errors
def models(ctx, root, env):
    """The registered fraud model: versions and aliases (the default), alias history, who decided a transaction."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(versions, root=root, env=env)


@models.command("list")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def versions(root, env):
    """List the versions, their aliases, decision thresholds and registry decisions (JSON lines)."""
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
                               "threshold": mv.tags.get(contract.THRESHOLD),
                               "holdout_auc_pr": mv.tags.get(contract.HOLDOUT_PREFIX + "auc_pr")}))


@models.command("history")
@report_options
def history(fmt, root, env):
    """Every alias move (challenge, promote, shadow/canary start and stop, rollback): when, from and to which version, why, by whom. No JVM."""
    from lakehouse.config import load_config
    from registry.history import deployment_history

    cfg = load_config(env, root)
    rows = with_reader(cfg, lambda reader: deployment_history(cfg, reader))
    print_rows([{k: r[k] for k in ("deployed_at", "alias", "action", "from_version", "to_version", "actor", "reason")}
                for r in rows] if fmt != "json" else rows, fmt)


@models.command("decided")
@click.argument("txn_id")
@report_options
def decided(txn_id, fmt, root, env):
    """Which model version and route decided TXN_ID (and which only scored it), and why it was serving. No JVM."""
    from lakehouse.config import load_config
    from registry.history import who_decided

    cfg = load_config(env, root)
    print_rows(with_reader(cfg, lambda reader: who_decided(cfg, txn_id, reader)), fmt)


@models.command("card")
@click.argument("version", type=int)
@click.option("--format", "fmt", type=click.Choice(["json", "html"]), default="json", show_default=True,
              help="the card as JSON or as one HTML page")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="write it to FILE instead of printing it")
@ROOT_OPT
@ENV_OPT
@one_line_errors
def card(version, fmt, out, root, env):
    """The model card of VERSION as validation logged it to the version's MLflow run: intended use, data, metrics, fairness."""
    import tempfile
    from pathlib import Path

    from lakehouse.config import load_config
    from lakehouse.model_store import is_absent, unavailable
    from registry import contract
    from registry.client import registry_client

    cfg = load_config(env, root)
    client = registry_client(cfg)
    name = cfg.training.model_name
    path = contract.MODEL_CARD_HTML if fmt == "html" else contract.MODEL_CARD_JSON
    try:
        run_id = client.get_model_version(name, str(version)).run_id
        logged = {a.path for a in client.list_artifacts(run_id, "governance")}
    except Exception as err:
        if is_absent(err):
            raise contract.ModelNotFound(f"no version {version} of {name} in the registry",
                                         hint="`tidewater models list` shows the versions") from None
        raise unavailable(cfg, f"{name} v{version}", err) from err
    if path not in logged:
        raise contract.ModelNotFound(f"{name} v{version} has no model card ({path})",
                                     hint=f"validate it first: tidewater run validate_model --version {version}")
    with tempfile.TemporaryDirectory() as tmp:
        text = Path(client.download_artifacts(run_id, path, tmp)).read_text()
    if out:
        Path(out).write_text(text)
        click.echo(f"{name} v{version}: model card written to {out}", err=True)
    else:
        click.echo(text, nl=False)
