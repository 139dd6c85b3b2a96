"""MLflow from the config, set up in one place: the store lakehouse.model_store names, quiet logs."""

from __future__ import annotations

import logging
import os

from lakehouse.config import Config
from lakehouse.model_store import ENV_URI, artifact_location, experiment_name, quiet_mlflow_store, tracking_uri

REGISTRY_ENV_URI = "MLFLOW_REGISTRY_URI"


def registry_client(cfg: Config):
    """Point MLflow (tracking and registry) at the configured store and return a client for it."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    quiet_mlflow_store()
    from mlflow import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # We log a PythonModel object on purpose (code_paths ships its module); MLflow warns on every log.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    logging.getLogger("petastorm").setLevel(logging.ERROR)
    uri = tracking_uri(cfg)
    _point_mlflow_at(uri)
    return MlflowClient(uri, uri)


def _point_mlflow_at(uri: str) -> None:
    """This process's MLflow at `uri`, leaving $MLFLOW_TRACKING_URI and $MLFLOW_REGISTRY_URI as the user set them.

    mlflow.set_tracking_uri also exports the URI to those variables, and tracking_uri reads the first as
    the user's choice: left there, the first config's store would be every later config's in this process.
    """
    import mlflow

    saved = {name: os.environ.get(name) for name in (ENV_URI, REGISTRY_ENV_URI)}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def connect(cfg: Config):
    """A client, and the project's experiment id (created on first use) for runs to log into."""
    client = registry_client(cfg)
    name = experiment_name(cfg)
    exp = client.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp else client.create_experiment(name, artifact_location=artifact_location(cfg))
    return client, exp_id
