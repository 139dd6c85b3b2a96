"""A registered model resolved from an alias, copied under the storage root for Spark tasks to load."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import TidewaterError
from lakehouse.model_store import model_name, tracking_uri


class ModelNotFound(TidewaterError):
    pass


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    version: int
    alias: str
    mlflow_run_id: str
    path: str  # a local copy of the model directory
    numeric: tuple[str, ...]  # inputs the signature types as numbers
    categorical: tuple[str, ...]  # inputs the signature types as strings
    training_set: str | None
    training_set_version: int | None

    @property
    def inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def iso_date(text):
    import datetime as dt

    import click

    if isinstance(text, dt.date):
        return text
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a date (YYYY-MM-DD)") from None


def model_and_date_options(alias_help: str, dates_help: str) -> list:
    """The options score_batch and detect_drift share: which alias, which event dates."""
    from lakehouse.job_runner import option

    return [option("--alias", help=alias_help),
            option("--since", type=iso_date, help=f"first event date {dates_help} (YYYY-MM-DD)"),
            option("--until", type=iso_date, help=f"last event date {dates_help} (YYYY-MM-DD)")]


def resolve(cfg: Config, alias: str | None = None) -> ResolvedModel:
    """name@alias -> version, run, inputs and the training data version it was trained on."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    warnings.filterwarnings("ignore", message=".*noload.*loader strategy")  # MLflow's SQL store, not ours
    alias = alias or cfg.scoring.alias
    name = model_name(cfg)
    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, uri)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        raise ModelNotFound(f"no model {name}@{alias} in the registry ({uri})",
                            hint="run `tidewater run train` first (it registers a champion)") from None
    path = Path(cfg.root) / "_models" / name / str(mv.version)
    if not (path / "MLmodel").exists():
        path.mkdir(parents=True, exist_ok=True)
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(path))
    from mlflow.models import Model

    schema = Model.load(str(path)).get_input_schema()
    numeric = tuple(s.name for s in schema.inputs if s.type.name in ("double", "float", "long", "integer"))
    categorical = tuple(s.name for s in schema.inputs if s.name not in numeric)
    tags = client.get_run(mv.run_id).data.tags
    version = tags.get("tidewater.training_set_version")
    return ResolvedModel(name, int(mv.version), alias, mv.run_id, str(path), numeric, categorical,
                         tags.get("tidewater.training_set"), int(version) if version is not None else None)
