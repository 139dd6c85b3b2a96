"""The registry contract: what a registered model version tells scoring and monitoring.

Training writes these tags and aliases (and nothing else they rely on); scoring and monitoring read
a model only through `resolve`. Renaming a key here renames it for both sides.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from lakehouse.config import Config
from lakehouse.errors import TidewaterError
from lakehouse.model_store import is_absent, model_name, unavailable

CHAMPION, CHALLENGER = "champion", "challenger"
SHADOW, CANARY = "shadow", "canary"  # a live rollout: scores beside the champion, or decides for a share

# Run tags: the data and code behind a model version.
TRAINING_SET = "tidewater.training_set"
TRAINING_SET_VERSION = "tidewater.training_set_version"
TRAINING_SET_BUILT_BY = "tidewater.training_set_built_by"
INPUT_PREFIX = "tidewater.input."  # + table name: the feature and label versions behind the training set
CODE_VERSION = "tidewater.code_version"
LINEAGE_RUN_ID = "tidewater.lineage_run_id"
ENGINE = "tidewater.engine"
RANK_DIGESTS = "tidewater.rank_digests"
DEVICE = "tidewater.device"
WORLD_SIZE = "tidewater.world_size"
VALIDATION_FROM = "validation_from"  # run param: the first event time of the validation slice
HOLDOUT_FROM = "holdout_from"  # run param: the first event time of the held-out slice
HOLDOUT_ROWS = "holdout_rows"  # run param: how many rows the held-out slice had

# Model version tags: the registry's decision about it.
DECISION = "tidewater.decision"  # promoted | shadow | canary (a live rollout started) | rejected
DECISION_REASON = "tidewater.decision_reason"
COMPARED_WITH = "tidewater.compared_with"  # the champion version it was compared with, or "none"
HOLDOUT_PREFIX = "tidewater.holdout."  # + metric name
THRESHOLD = "tidewater.threshold"  # the version's decision threshold: flag when score >= it
THRESHOLD_RULE = "tidewater.threshold_rule"  # how validation chose it
LIVE_SINCE = "tidewater.live_since"  # when its shadow or canary rollout began (UTC, ISO)
FAIRNESS = "tidewater.fairness"  # passed | failed: the fairness gate on its held-out slice

# Run artifacts validation writes for each version: what it is, what it was built from, how fair it is.
MODEL_CARD_JSON = "governance/model_card.json"
MODEL_CARD_HTML = "governance/model_card.html"
ML_BOM = "governance/ml_bom.cdx.json"  # CycloneDX 1.6 ML-BOM
FAIRNESS_REPORT = "governance/fairness.json"
ENVIRONMENT_REQUIREMENTS = "environment/requirements.txt"  # every package of the training environment
ENVIRONMENT_VERSIONS = "environment/versions.json"  # python, platform, torch, horovod, ...

SCORE_NAME = "score"  # the pyfunc's output: the fraud probability


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
    threshold: float  # its own decision threshold, chosen at validation
    live_since: dt.datetime | None = None  # a shadow or canary: when its rollout began (naive UTC)

    @property
    def inputs(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def signature_columns(schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) input names of a model signature's input schema."""
    numeric = tuple(s.name for s in schema.inputs if s.type.name in ("double", "float", "long", "integer"))
    return numeric, tuple(s.name for s in schema.inputs if s.name not in numeric)


COMPLETE = ".complete"  # written last into a model's cache folder: a folder without it is not used


def cached_model(name: str, version: int, cache: Path) -> Path:
    """The model version's artifacts on local disk, downloaded once.

    A download goes to a scratch folder that is marked complete and then renamed into place, so a
    killed or failed download never leaves a folder that looks like a model; one left by an older
    download without the mark is fetched again.
    """
    import shutil
    import uuid

    import mlflow

    path = cache / str(version)
    if (path / COMPLETE).exists():
        return path
    scratch = cache / f".{version}.{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(scratch))
        (scratch / COMPLETE).touch()
        shutil.rmtree(path, ignore_errors=True)
        try:
            scratch.rename(path)
        except OSError:  # another process put a complete copy there first
            if not (path / COMPLETE).exists():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def resolve(cfg: Config, alias: str | None = None) -> ResolvedModel:
    """name@alias -> version, run, inputs and the training data version it was trained on.

    The model directory is copied under the storage root once, so Spark tasks load it from there.
    """
    from mlflow.models import Model

    from registry.client import registry_client

    alias = alias or cfg.scoring.alias
    name = model_name(cfg)
    client = registry_client(cfg)
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except Exception as err:
        if not is_absent(err):
            raise unavailable(cfg, f"{name}@{alias}", err) from err
        raise ModelNotFound(f"no model {name}@{alias} in the registry ({client.tracking_uri})",
                            hint="run `tidewater run train` first (it registers a champion)") from None
    if THRESHOLD not in mv.tags:
        raise ModelNotFound(f"{name} v{mv.version} (@{alias}) has no decision threshold (tag {THRESHOLD})",
                            hint=f"validate it first: tidewater run validate_model --version {mv.version}")
    path = cached_model(name, int(mv.version), Path(cfg.root) / "_models" / name)
    numeric, categorical = signature_columns(Model.load(str(path)).get_input_schema())
    tags = client.get_run(mv.run_id).data.tags
    version = tags.get(TRAINING_SET_VERSION)
    return ResolvedModel(name, int(mv.version), alias, mv.run_id, str(path), numeric, categorical,
                         tags.get(TRAINING_SET), int(version) if version is not None else None,
                         float(mv.tags[THRESHOLD]),
                         dt.datetime.fromisoformat(mv.tags[LIVE_SINCE]) if LIVE_SINCE in mv.tags else None)
