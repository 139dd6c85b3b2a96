"""Validation and promotion: compare a registered version with the champion on its held-out slice.

The held-out slice is the latest share of the training set version the model was trained on (the
same time split as training), so the comparison can be rerun at any time: `train` runs it for the
version it registers, and the `validate_model` job runs it alone. `champion` moves only on a win.
Every decision is kept twice: as tags on the model version (for MLflow users) and as a row in
meta.model_decisions (for SQL and BI).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from lakehouse.config import Config
from lakehouse.cli_options import option
from lakehouse.job_runner import job
from lakehouse.model_store import alias_version, model_asset
from lakehouse.schemas import row_values, spark_schema
from registry import contract
from registry.inputs import signature_input
from registry.metrics import model_metrics

DECISIONS_TABLE = "meta.model_decisions"


@dataclass
class Decision:
    """A row of meta.model_decisions: one challenger against the champion, and what happened."""

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
    run_id: str | None = None  # the job run (meta.lineage) that decided


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


def validate_version(spark, cfg: Config, client, version: int, holdout: pd.DataFrame, **context) -> Decision:
    """Give `version` the challenger alias, compare with the champion, promote on a win, record it."""
    tc = cfg.training
    name, promo = tc.model_name, tc.promotion
    client.set_registered_model_alias(name, contract.CHALLENGER, str(version))
    champion = alias_version(cfg, contract.CHAMPION)
    ours = holdout_metrics(f"models:/{name}/{version}", holdout, cfg)
    theirs = holdout_metrics(f"models:/{name}/{champion}", holdout, cfg) if champion is not None else None
    promoted, reason = decide(ours[promo.metric], theirs[promo.metric] if theirs else None, promo.margin,
                              promo.metric)
    decision = Decision(
        decided_at=dt.datetime.now(dt.timezone.utc), model_name=name, challenger_version=int(version),
        champion_version=champion, metric=promo.metric, challenger_value=ours[promo.metric],
        champion_value=theirs[promo.metric] if theirs else None, margin=promo.margin, promoted=promoted,
        reason=reason, holdout_rows=int(ours["labels"]), holdout_positives=int(ours["positives"]), **context)
    for key, value in {contract.DECISION: "promoted" if promoted else "rejected", contract.DECISION_REASON: reason,
                       contract.COMPARED_WITH: "none" if champion is None else str(champion),
                       **{contract.HOLDOUT_PREFIX + k: f"{v:.6f}" for k, v in ours.items()}}.items():
        client.set_model_version_tag(name, str(version), key, value)
    if promoted:
        client.set_registered_model_alias(name, contract.CHAMPION, str(version))
    record(spark, cfg, decision)
    return decision


def record(spark, cfg: Config, decision: Decision) -> None:
    from lakehouse.catalog import register_table

    ref = cfg.table(DECISIONS_TABLE)
    spark.createDataFrame([row_values(decision)], spark_schema(Decision)).write.format("delta").mode("append") \
        .save(ref.path)
    register_table(spark, ref)


def _plan(run, args) -> dict[str, int | None]:
    """Pin the reads: the version to validate (--version, else the challenger) and the training-set
    version its tags name, so its held-out slice is rebuilt from the rows it was trained on."""
    from registry.client import registry_client

    cfg = run.cfg
    version = args.model_version or alias_version(cfg, contract.CHALLENGER)
    if version is None:
        raise contract.ModelNotFound(f"no {cfg.training.model_name}@{contract.CHALLENGER} to validate",
                                     hint="run `tidewater run train` first, or pass --version")
    client = registry_client(cfg)
    tags = client.get_run(client.get_model_version(cfg.training.model_name, str(version)).run_id).data.tags
    return {tags[contract.TRAINING_SET]: int(tags[contract.TRAINING_SET_VERSION]), model_asset(cfg): version}


@job(name="validate_model",
     summary="Compare a registered model version (default: the challenger) with the champion on its held-out "
             "slice; promote it to champion on a win.",
     inputs=lambda cfg: [cfg.training_set_table, model_asset(cfg)],
     outputs=lambda cfg: {DECISIONS_TABLE: [cfg.training_set_table, model_asset(cfg)],
                          model_asset(cfg): [cfg.training_set_table, model_asset(cfg)]},
     options=[option("--version", "model_version", type=int, help="model version (default: the challenger alias)")],
     plan=_plan,
     skip_unchanged=False)  # a decision is asked for, not derived from changed inputs
def validate_model(run, args) -> None:
    """Rebuild the version's held-out slice (its training-set version, from its logged `holdout_from`) and decide.

    The model asset's output is the champion before and after: it changes only on a promotion.
    """
    from lakehouse.console import progress
    from registry.client import registry_client
    from training.data import TrainingDataError, boundary_seconds, labelled, since

    cfg, tc = run.cfg, run.cfg.training
    asset = model_asset(cfg)
    version = run.uses(asset)
    champion = alias_version(cfg, contract.CHAMPION)
    if version == champion:
        progress(f"{run.job}: {tc.model_name} v{version} is the champion already; nothing to compare")
        return
    client = registry_client(cfg)
    mlflow_run = client.get_run(client.get_model_version(tc.model_name, str(version)).run_id)
    table, params = mlflow_run.data.tags[contract.TRAINING_SET], mlflow_run.data.params
    rows = labelled(run.read(table), tc)
    holdout = since(rows, tc, boundary_seconds(params[contract.HOLDOUT_FROM])).toPandas()
    if len(holdout) != int(params[contract.HOLDOUT_ROWS]):
        raise TrainingDataError(f"{table}@v{run.inputs[table]} gives {len(holdout)} held-out rows, but "
                                f"{tc.model_name} v{version} was trained with {params[contract.HOLDOUT_ROWS]}",
                                hint="validate under the training configuration (label, timestamp) the model was trained with")
    run.writing(DECISIONS_TABLE)
    decision = validate_version(run.spark, cfg, client, version, holdout, training_set=table,
                                training_set_version=run.inputs[table], mlflow_run_id=mlflow_run.info.run_id,
                                run_id=run.run_id)
    run.wrote(DECISIONS_TABLE)
    run.wrote_asset(asset, version if decision.promoted else champion, champion)
    run.count("promoted", int(decision.promoted))
    progress(f"{run.job}: {tc.model_name} v{version}: {'now champion' if decision.promoted else 'not promoted'} "
             f"({decision.reason})")
