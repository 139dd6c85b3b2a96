"""MLflow from the config: an embedded SQLite store under the storage root unless a URI is configured."""

from __future__ import annotations

from lakehouse.config import Config
from lakehouse.model_store import artifact_location, experiment_name, tracking_uri

__all__ = ["artifact_location", "connect", "experiment_name", "tracking_uri"]


def connect(cfg: Config):
    """Point MLflow at the configured store; return a client and the project's experiment id."""
    import logging
    import os

    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=".*noload.*loader strategy")  # MLflow's SQL store, not ours

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
