"""MLflow from the config: an embedded SQLite store under the storage root unless a URI is configured."""

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
    return (cfg.training.experiment if cfg.training and cfg.training.experiment else cfg.project)


def connect(cfg: Config):
    """Point MLflow at the configured store; return a client and the project's experiment id."""
    import logging

    import mlflow
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # We log a PythonModel object on purpose (code_paths ships its module); MLflow warns on every log.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    logging.getLogger("petastorm").setLevel(logging.ERROR)
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    name = experiment_name(cfg)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location(cfg))
    return client, exp_id
