"""Validation and promotion: a registered version's own threshold, then the champion comparison.

The version's decision threshold is chosen on its validation slice (training.decision_threshold)
and stored on the version; the comparison with the champion runs on the held-out slice, the latest
share of the training set version it was trained on, against promotion.bounds. Both slices are
rebuilt from logged boundaries, so validation can be rerun at any time: `train` runs it for the
version it registers, and the `validate_model` job runs it alone. `champion` moves only on a win,
and nothing moves when the registry cannot be read. Every decision is kept as tags on the version
(for MLflow users) and as a row in meta.model_decisions; every alias move as a row in
meta.model_deployments.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import click
import numpy as np
import pandas as pd

from lakehouse.cli_options import option
from lakehouse.config import Config, PromotionConf
from lakehouse.errors import TidewaterError
from lakehouse.identity import current_user
from lakehouse.job_runner import job
from lakehouse.model_store import alias_version, model_asset, unavailable
from lakehouse.schemas import spark_schema
from lakehouse.tables import append_rows
from registry import contract
from registry.deployments import DECISIONS_TABLE, DEPLOYMENTS_TABLE, deployment, record_deployments
from registry.inputs import signature_input
from registry.metrics import choose_threshold, model_metrics
from registry.rollout import promote, start_rollout
from training.slice_columns import attribute_inputs



class ValidationFailed(TidewaterError):
    """The challenger could not be judged (it cannot be scored, or its slices are unusable): no alias moves."""


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
    bounds: str  # the bars it was held to (promotion.bounds, as JSON)
    promoted: bool  # it became champion now
    reason: str
    holdout_rows: int
    holdout_positives: int
    threshold: float  # the challenger's own decision threshold (chosen on its validation slice)
    threshold_rule: str
    deployed_as: str | None = None  # champion | shadow | canary (deployment.strategy), None when rejected
    training_set: str | None = None
    training_set_version: int | None = None
    mlflow_run_id: str | None = None
    run_id: str | None = None  # the job run (meta.lineage) that decided
    fairness_passed: bool | None = None  # the fairness gate (training.fairness); None before the gate existed
    fairness: str | None = None  # its report as JSON: per slice, each group's rates and the gaps
    actor: str | None = None  # the identity that ran the validation (lakehouse.identity); None before it was kept

    def outcome(self) -> str:
        return {"champion": "now champion", "shadow": "now in shadow", "canary": "now canary"}.get(
            self.deployed_as or "", "stays challenger")


def model_scores(model_uri: str, rows: pd.DataFrame) -> np.ndarray:
    """Score rows with the model as logged (pyfunc, its own preprocessing); every score must be a number."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(model_uri)
    scores = pd.Series(model.predict(signature_input(model, rows))).to_numpy(dtype="float64")
    if len(scores) != len(rows) or not np.isfinite(scores).all():
        raise ValidationFailed(f"{model_uri} gives {int((~np.isfinite(scores)).sum())} non-finite scores "
                               f"for {len(rows)} rows", hint="a model that cannot be scored never takes an alias")
    return scores


def pick_threshold(cfg: Config, labels, scores) -> tuple[float, str]:
    """The version's decision threshold from training.decision_threshold, on its validation slice."""
    dc = cfg.training.decision_threshold
    try:
        return choose_threshold(labels, scores, dc.rule, dc.precision, dc.alert_share)
    except ValueError as err:
        raise ValidationFailed(f"cannot choose a decision threshold: {err}",
                               hint="the validation slice needs labelled fraud; train on more days") from None


def holdout_metrics(cfg: Config, labels, scores, threshold: float) -> dict[str, float]:
    return model_metrics(labels, scores, cfg.training.promotion.precision_target, threshold)


def judge(ours: dict[str, float], theirs: dict[str, float] | None, promo: PromotionConf) -> tuple[bool, str]:
    """Every bound in promotion.bounds, checked by MLflow's validate_evaluation_results.

    Absolute bars hold for every challenger (the first one too); bars relative to the champion
    apply when there is one whose metrics are defined on this slice.
    """
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException, validate_evaluation_results

    undefined = [m for m in promo.bounds if ours[m] != ours[m]]
    if undefined:
        return False, f"{', '.join(undefined)} undefined on the held-out slice (no positive labels)"
    compare = theirs is not None and all(theirs[m] == theirs[m] for m in promo.bounds)
    bars = {}
    for metric, b in promo.bounds.items():
        kept = {"threshold": b.threshold, **({"min_absolute_change": b.min_absolute_change,
                                              "min_relative_change": b.min_relative_change} if compare else {})}
        if any(v is not None for v in kept.values()):
            bars[metric] = MetricThreshold(**kept, greater_is_better=b.greater_is_better)
    try:
        validate_evaluation_results(bars, EvaluationResult(ours, {}, run_id=""),
                                    EvaluationResult(theirs, {}, run_id="") if compare else None)
    except ModelValidationFailedException as err:
        failed = [line.strip(" -") for line in err.message.splitlines() if "failed" in line and "Metric" in line]
        return False, "; ".join(failed) or err.message.splitlines()[0]
    m = promo.metric
    if theirs is None:
        return True, f"first model: {m} {ours[m]:.4f} meets every absolute bar"
    if not compare:
        return True, f"{m} {ours[m]:.4f} meets every absolute bar (the champion's metrics are undefined here)"
    return True, f"{m} {ours[m]:.4f} vs champion's {theirs[m]:.4f} passes every bar"


STRATEGY_OPTION = option("--strategy", type=click.Choice(["direct", "shadow", "canary"]),
                         help="how a version that passes reaches traffic (default: deployment.strategy)")


def validate_version(spark, cfg: Config, client, version: int, validation: pd.DataFrame, holdout: pd.DataFrame,
                     run_id: str | None = None, strategy: str | None = None,
                     slice_inputs: dict[str, int | None] | None = None,
                     **context) -> tuple[Decision, dict[str, float]]:
    """Judge `version` against the champion and the fairness gate, then move aliases by `strategy` and record it.

    A version that passes becomes champion (`direct`, and always when there is no champion yet) or
    starts a live rollout (`shadow`, `canary`) that review_deployment later promotes or rolls back.

    Returns the decision and the version's metrics on the held-out slice (at its own threshold).

    `holdout` carries the fairness slices (training.slice_columns); `slice_inputs` names the tables
    (and versions) any of them were joined from, for the model card.

    Fails closed: everything is read and computed first (any registry error stops here with no
    alias changed); then the model card, its ML-BOM and the fairness report go to the version's run
    (a version that cannot be documented takes no alias); only then are tags, the challenger alias
    and, on a win, the champion set.
    """
    from training.fairness import fairness_report, fairness_summary
    from training.model_card import log_model_documents

    tc = cfg.training
    name, promo, label = tc.model_name, tc.promotion, tc.label
    champion = alias_version(cfg, contract.CHAMPION)
    challenger_before = alias_version(cfg, contract.CHALLENGER)
    try:
        threshold, threshold_rule = pick_threshold(cfg, validation[label], model_scores(f"models:/{name}/{version}",
                                                                                        validation))
        scores = model_scores(f"models:/{name}/{version}", holdout)
        ours = holdout_metrics(cfg, holdout[label], scores, threshold)
        theirs = None
        if champion is not None:
            champion_scores = model_scores(f"models:/{name}/{champion}", holdout)
            tags = client.get_model_version(name, str(champion)).tags
            champion_threshold = float(tags[contract.THRESHOLD]) if contract.THRESHOLD in tags else pick_threshold(
                cfg, validation[label], model_scores(f"models:/{name}/{champion}", validation))[0]
            theirs = holdout_metrics(cfg, holdout[label], champion_scores, champion_threshold)
    except TidewaterError:
        raise
    except Exception as err:  # the registry (or the model files it points to) did not answer
        raise unavailable(cfg, f"{name} v{version} and its champion", err) from err
    passed, reason = judge(ours, theirs, promo)
    fairness = fairness_report(holdout, label, scores, threshold, tc.fairness)
    if not fairness["passed"]:
        reason = fairness_summary(fairness) if passed else f"{reason}; {fairness_summary(fairness)}"
    passed = passed and fairness["passed"]
    strategy = strategy or cfg.deployment.strategy
    deployed_as = None if not passed else contract.CHAMPION if champion is None or strategy == "direct" else strategy
    promoted = deployed_as == contract.CHAMPION
    decision = Decision(
        decided_at=dt.datetime.now(dt.timezone.utc), model_name=name, challenger_version=int(version),
        champion_version=champion, metric=promo.metric, challenger_value=ours[promo.metric],
        champion_value=theirs[promo.metric] if theirs else None,
        bounds=json.dumps({m: b.model_dump(exclude_none=True) for m, b in promo.bounds.items()}), promoted=promoted,
        reason=reason, holdout_rows=int(ours["labels"]), holdout_positives=int(ours["positives"]),
        threshold=threshold, threshold_rule=threshold_rule, deployed_as=deployed_as, run_id=run_id,
        fairness_passed=fairness["passed"], fairness=json.dumps(fairness), actor=current_user(), **context)
    log_model_documents(client, cfg, version, decision, ours, fairness, slice_inputs or {})
    verdict = "rejected" if not passed else "promoted" if promoted else deployed_as
    for key, value in {contract.DECISION: verdict, contract.DECISION_REASON: reason,
                       contract.COMPARED_WITH: "none" if champion is None else str(champion),
                       contract.THRESHOLD: repr(threshold), contract.THRESHOLD_RULE: threshold_rule,
                       contract.FAIRNESS: "passed" if fairness["passed"] else "failed",
                       **{contract.HOLDOUT_PREFIX + k: f"{v:.6f}" for k, v in ours.items()}}.items():
        client.set_model_version_tag(name, str(version), key, value)
    moves = []
    if challenger_before != version:
        client.set_registered_model_alias(name, contract.CHALLENGER, str(version))
        moves.append(deployment(cfg, contract.CHALLENGER, "challenge", challenger_before, version,
                                f"registered; threshold {threshold:.4f} ({threshold_rule})", run_id))
    if promoted:
        moves += promote(client, cfg, version, reason, run_id)
    elif passed:
        moves += start_rollout(client, cfg, deployed_as, version, f"passed validation: {reason}", run_id)
    record(spark, cfg, decision)
    record_deployments(spark, cfg, moves)
    return decision, ours


def record(spark, cfg: Config, decision: Decision) -> None:
    append_rows(spark, cfg.table(DECISIONS_TABLE), [decision], spark_schema(Decision))


def _slice_inputs(run, cfg: Config) -> dict[str, int | None]:
    """The attribute tables the run joined fairness slices from, at the versions it read."""
    return {t: run.inputs[t] for t in attribute_inputs(cfg) if t in run.inputs}


def _plan(run, args) -> dict[str, int | None]:
    """Pin the reads: the version to validate (--version, else the challenger) and the training-set
    version its tags name, so its held-out slice is rebuilt from the rows it was trained on."""
    from registry.client import registry_client

    cfg = run.cfg
    version = args.model_version or alias_version(cfg, contract.CHALLENGER)
    if version is None:
        raise contract.ModelNotFound(f"no {cfg.training.model_name}@{contract.CHALLENGER} to validate",
                                     hint="run `tidewater run train` first, or pass --version")
    try:
        client = registry_client(cfg)
        tags = client.get_run(client.get_model_version(cfg.training.model_name, str(version)).run_id).data.tags
    except Exception as err:
        raise unavailable(cfg, f"{cfg.training.model_name} v{version}", err) from err
    return {tags[contract.TRAINING_SET]: int(tags[contract.TRAINING_SET_VERSION]), model_asset(cfg): version,
            **run.current_versions(attribute_inputs(cfg))}


@job(name="validate_model",
     summary="Compare a registered model version (default: the challenger) with the champion on its held-out "
             "slice; promote it to champion on a win.",
     inputs=lambda cfg: [cfg.training_set_table, model_asset(cfg), *attribute_inputs(cfg)],
     outputs=lambda cfg: {out: [cfg.training_set_table, model_asset(cfg), *attribute_inputs(cfg)]
                          for out in (DECISIONS_TABLE, DEPLOYMENTS_TABLE, model_asset(cfg))},
     options=[option("--version", "model_version", type=int, help="model version (default: the challenger alias)"),
              STRATEGY_OPTION],
     plan=_plan,
     skip_unchanged=False)  # a decision is asked for, not derived from changed inputs
def validate_model(run, args) -> None:
    """Rebuild the version's validation and held-out slices (its training-set version, logged boundaries) and decide.

    The model asset's output is the champion before and after: it changes only on a promotion.
    """
    from lakehouse.console import progress
    from registry.client import registry_client
    from training.data import TrainingDataError, between, boundary_seconds, labelled, since
    from training.slice_columns import with_slices

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
    holdout_from = boundary_seconds(params[contract.HOLDOUT_FROM])
    holdout = with_slices(run, cfg, since(rows, tc, holdout_from)).toPandas()
    validation = between(rows, tc, boundary_seconds(params[contract.VALIDATION_FROM]), holdout_from).toPandas()
    if len(holdout) != int(params[contract.HOLDOUT_ROWS]):
        raise TrainingDataError(f"{table}@v{run.inputs[table]} gives {len(holdout)} held-out rows, but "
                                f"{tc.model_name} v{version} was trained with {params[contract.HOLDOUT_ROWS]}",
                                hint="validate under the training configuration (label, timestamp) the model was trained with")
    run.writing(DECISIONS_TABLE)
    run.writing(DEPLOYMENTS_TABLE)
    decision, _ = validate_version(run.spark, cfg, client, version, validation, holdout, run_id=run.run_id,
                                   strategy=args.strategy, slice_inputs=_slice_inputs(run, cfg),
                                   training_set=table, training_set_version=run.inputs[table],
                                mlflow_run_id=mlflow_run.info.run_id)
    run.wrote(DECISIONS_TABLE)
    run.wrote(DEPLOYMENTS_TABLE)
    run.wrote_asset(asset, version if decision.promoted else champion, champion)
    run.count("promoted", int(decision.promoted))
    progress(f"{run.job}: {tc.model_name} v{version}: {decision.outcome()} "
             f"({decision.reason})")
