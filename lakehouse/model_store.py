"""Where this config's MLflow store lives, and which version an alias names.

Training writes there and scoring reads from there through registry/ (the contract): the registry
is their only meeting point. The alias lookup lives here, on the floor, because the job runner plans
`model:<name>` inputs with it; registry.client sets MLflow up for every other use.
"""

from __future__ import annotations

import os

from lakehouse.config import Config
from lakehouse.errors import TidewaterError

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


class RegistryUnavailable(TidewaterError):
    """The model registry could not be read: nothing that depends on it may act (fail closed)."""


def is_absent(err: Exception) -> bool:
    """True when MLflow says the model or alias does not exist (as opposed to failing to answer)."""
    from mlflow.exceptions import MlflowException

    code = getattr(err, "error_code", None)
    return isinstance(err, MlflowException) and "not found" in str(err) and code in (
        "RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def unavailable(cfg: Config, what: str, err: BaseException) -> RegistryUnavailable:
    """The one-line error for a registry that failed to answer while reading `what`."""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return RegistryUnavailable(f"could not read {what} from the registry at {tracking_uri(cfg)}: {first}",
                               hint="no alias was changed; check the MLflow store (a locked SQLite file, "
                                    "a stopped tracking server) and rerun")


def quiet_mlflow_store() -> None:
    """MLflow's SQL store warns about its own SQLAlchemy usage on first use: not ours to act on."""
    import warnings

    warnings.filterwarnings("ignore", message=".*noload.*loader strategy")


def alias_version(cfg: Config, alias: str) -> int | None:
    """The registered model version behind `alias`, or None (no store, no model, no alias yet).

    Any other failure (a locked or unreachable store) raises RegistryUnavailable: "could not read
    the champion" must never pass for "there is no champion".
    """
    if not (cfg.root / "mlflow").exists() and not os.environ.get(ENV_URI) and not (cfg.training and cfg.training.tracking_uri):
        return None
    from mlflow import MlflowClient

    uri = tracking_uri(cfg)
    quiet_mlflow_store()
    try:
        return int(MlflowClient(uri, uri).get_model_version_by_alias(model_name(cfg), alias).version)
    except Exception as err:
        if is_absent(err):
            return None
        raise unavailable(cfg, f"{model_name(cfg)}@{alias}", err) from err
