"""Champion vs challenger: compare on the held-out, time-later slice; move `champion` only on a win.

Every decision is kept twice: as tags on the challenger's model version (for MLflow users) and as
a row in meta.model_decisions (for SQL and BI).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import types as T

from lakehouse.config import Config
from registry.metrics import model_metrics

DECISIONS_TABLE = "meta.model_decisions"
CHAMPION, CHALLENGER = "champion", "challenger"

DECISION_SCHEMA = T.StructType([
    T.StructField("decided_at", T.TimestampType(), False),
    T.StructField("model_name", T.StringType(), False),
    T.StructField("challenger_version", T.LongType(), False),
    T.StructField("champion_version", T.LongType(), True),
    T.StructField("metric", T.StringType(), False),
    T.StructField("challenger_value", T.DoubleType(), True),
    T.StructField("champion_value", T.DoubleType(), True),
    T.StructField("margin", T.DoubleType(), False),
    T.StructField("promoted", T.BooleanType(), False),
    T.StructField("reason", T.StringType(), False),
    T.StructField("holdout_rows", T.LongType(), False),
    T.StructField("holdout_positives", T.LongType(), False),
    T.StructField("training_set", T.StringType(), True),
    T.StructField("training_set_version", T.LongType(), True),
    T.StructField("mlflow_run_id", T.StringType(), True),
    T.StructField("lineage_run_id", T.StringType(), True),
])


@dataclass
class Decision:
    decided_at: dt.datetime
    model_name: str
    challenger_version: int
    champion_version: int | None
    metric: str
    challenger_value: float | None
    champion_value: float | None
    margin: float
    promoted: bool
    reason: str
    holdout_rows: int
    holdout_positives: int
    training_set: str | None = None
    training_set_version: int | None = None
    mlflow_run_id: str | None = None
    lineage_run_id: str | None = None


def alias_version(client, name: str, alias: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        return int(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def signature_input(model, pdf: pd.DataFrame) -> pd.DataFrame:
    """The columns the model's signature names, numerics as float64 and strings as str (nulls kept)."""
    out = {}
    for spec in model.metadata.get_input_schema().inputs:
        col = pdf[spec.name]
        if spec.type.name in ("double", "float", "long", "integer"):
            out[spec.name] = pd.to_numeric(col, errors="coerce").astype("float64")
        else:
            out[spec.name] = col.astype(object).where(col.notna(), None)
    return pd.DataFrame(out, index=pdf.index)


def holdout_metrics(model_uri: str, holdout: pd.DataFrame, cfg: Config) -> dict[str, float]:
    """Score the held-out rows with the model as logged (pyfunc, its own preprocessing)."""
    import mlflow.pyfunc

    tc = cfg.training
    model = mlflow.pyfunc.load_model(model_uri)
    scores = model.predict(signature_input(model, holdout))
    return model_metrics(holdout[tc.label].to_numpy(), pd.Series(scores).to_numpy(),
                         tc.promotion.precision_target, tc.promotion.threshold)


def decide(challenger: float, champion: float | None, margin: float, metric: str) -> tuple[bool, str]:
    if champion is None:
        return True, "first model: no champion yet"
    if challenger != challenger:  # NaN: the held-out slice has no fraud to rank
        return False, f"{metric} undefined on the held-out slice (no positive labels)"
    if champion != champion or challenger > champion + margin:
        return True, f"{metric} {challenger:.4f} beats champion's {champion:.4f} by more than {margin}"
    return False, f"{metric} {challenger:.4f} does not beat champion's {champion:.4f} by more than {margin}"


def validate_challenger(spark: SparkSession, cfg: Config, client, version: int, holdout: pd.DataFrame,
                        **context) -> Decision:
    """Give `version` the challenger alias, compare with the champion, promote on a win, record it."""
    tc = cfg.training
    name, promo = tc.model_name, tc.promotion
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    champion = alias_version(client, name, CHAMPION)
    ours = holdout_metrics(f"models:/{name}/{version}", holdout, cfg)
    theirs = holdout_metrics(f"models:/{name}/{champion}", holdout, cfg) if champion is not None else None
    promoted, reason = decide(ours[promo.metric], theirs[promo.metric] if theirs else None, promo.margin,
                              promo.metric)
    decision = Decision(
        decided_at=dt.datetime.now(dt.timezone.utc), model_name=name, challenger_version=int(version),
        champion_version=champion, metric=promo.metric, challenger_value=ours[promo.metric],
        champion_value=theirs[promo.metric] if theirs else None, margin=promo.margin, promoted=promoted,
        reason=reason, holdout_rows=int(ours["labels"]), holdout_positives=int(ours["positives"]), **context)
    for key, value in {"decision": "promoted" if promoted else "rejected", "decision_reason": reason,
                       "compared_with": "none" if champion is None else str(champion),
                       **{f"holdout.{k}": f"{v:.6f}" for k, v in ours.items()}}.items():
        client.set_model_version_tag(name, str(version), f"tidewater.{key}", value)
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, str(version))
    record(spark, cfg, decision)
    return decision


def record(spark: SparkSession, cfg: Config, decision: Decision) -> None:
    from lakehouse.catalog import register_table

    ref = cfg.table(DECISIONS_TABLE)
    row = asdict(decision)
    spark.createDataFrame([tuple(row[f.name] for f in DECISION_SCHEMA.fields)], DECISION_SCHEMA) \
        .write.format("delta").mode("append").save(ref.path)
    register_table(spark, ref)
