"""Where this config's MLflow store lives, and which version an alias names.

Training writes there and scoring reads from there through registry/ (the contract): the registry
is their only meeting point. The alias lookup lives here, on the floor, because the job runner plans
`model:<name>` inputs with it; registry.client sets MLflow up for every other use.
"""

from __future__ import annotations

import os

from lakehouse.config import Config

ENV_URI = "MLFLOW_TRACKING_URI"


def tracking_uri(cfg: Config) -> str:
    """$MLFLOW_TRACKING_URI, else training.tracking_uri, else sqlite:///<root>/mlflow/mlflow.db."""
    if os.environ.get(ENV_URI):
        return os.environ[ENV_URI]
    if cfg.training and cfg.training.tracking_uri:
        return cfg.training.tracking_uri
    (cfg.root / "mlflow").mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{cfg.root / 'mlflow' / 'mlflow.db'}"


def artifact_location(cfg: Config) -> str:
    # Absolute: Horovod and Spark workers run in other directories (and on other hosts).
    return (cfg.root / "mlflow" / "artifacts").resolve().as_uri()


def experiment_name(cfg: Config) -> str:
    return cfg.training.experiment if cfg.training and cfg.training.experiment else cfg.project


def model_name(cfg: Config) -> str:
    return cfg.training.model_name if cfg.training else "fraud_detector"


def model_asset(cfg: Config) -> str:
    """The registered model as a lineage asset: its versions are registry versions."""
    return f"model:{model_name(cfg)}"


def alias_version(cfg: Config, alias: str) -> int | None:
    """The registered model version behind `alias`, or None (no store, no model, no alias yet)."""
    if not (cfg.root / "mlflow").exists() and not os.environ.get(ENV_URI) and not (cfg.training and cfg.training.tracking_uri):
        return None
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = tracking_uri(cfg)
    try:
        return int(MlflowClient(uri, uri).get_model_version_by_alias(model_name(cfg), alias).version)
    except MlflowException:
        return None
