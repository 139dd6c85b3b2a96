"""MLflow from the config, set up in one place: the store lakehouse.model_store names, quiet logs."""

from __future__ import annotations

import logging
import os

from lakehouse.config import Config
from lakehouse.model_store import artifact_location, experiment_name, quiet_mlflow_store, tracking_uri


def registry_client(cfg: Config):
    """Point MLflow (tracking and registry) at the configured store and return a client for it."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet_mlflow_store()
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
    return MlflowClient(uri, uri)


def connect(cfg: Config):
    """A client, and the project's experiment id (created on first use) for runs to log into."""
    client = registry_client(cfg)
    name = experiment_name(cfg)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location(cfg))
    return client, exp_id
