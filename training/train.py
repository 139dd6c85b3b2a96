"""train: the training set at an exact version -> N distributed workers -> an MLflow run and a registered model.

Runs inside the training environment (spark-submit with .venv-train's Python). From the platform
environment, `tidewater run train` hands over to it (training.job).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.errors import ConfigError, TableNotFound
from lakehouse.lineage import JobRun, code_version, producer_of
from lakehouse.model_store import model_asset
from registry import contract
from registry.deployments import DEPLOYMENTS_TABLE
from training.data import Split, TrainingDataError, boundary_text, encode, make_converter, prepare
from training.launchers import TrainingLaunchFailed, launch
from training.loop import WorkerSpec
from training.preprocessing import Preprocessor
from training.slice_columns import attribute_inputs, with_slices
from training.validation import DECISIONS_TABLE, Decision, validate_version

JOB = "train"


@dataclass
class TrainingOutcome:
    lineage_run_id: str
    mlflow_run_id: str
    model_version: int
    decision: Decision
    holdout: dict


def _override(cfg: Config, args: argparse.Namespace) -> Config:
    if cfg.training is None:
        raise ConfigError("no `training:` section in the configuration", hint="see conf/base.yaml")
    changes = {k: v for k, v in {"engine": getattr(args, "engine", None),
                                 "num_proc": getattr(args, "num_proc", None),
                                 "max_epochs": getattr(args, "max_epochs", None)}.items() if v is not None}
    return cfg.model_copy(update={"training": cfg.training.model_copy(update=changes)}) if changes else cfg


def data_tags(spark: SparkSession, cfg: Config, table: str, version: int) -> dict[str, str]:
    """The training set's version and, from lineage, the feature and label versions behind it."""
    tags = {contract.TRAINING_SET: table, contract.TRAINING_SET_VERSION: str(version)}
    producer = producer_of(spark, cfg, table, version)
    if producer:
        tags[contract.TRAINING_SET_BUILT_BY] = producer["run_id"]
        for inp in producer["inputs"]:
            tags[contract.INPUT_PREFIX + inp["table"]] = "none" if inp["version"] is None else str(inp["version"])
    return tags


@dataclass
class Prepared:
    """The training set at one version, split, fitted and encoded for the workers."""

    version: int
    split: Split
    pre: Preprocessor
    spec: WorkerSpec
    n_train: int
    n_pos: int
    validation: pd.DataFrame  # raw rows, for the decision threshold
    holdout: pd.DataFrame  # with the fairness slices (training.slice_columns)


def prepare_data(run: JobRun, cfg: Config) -> Prepared:
    """Read the planned training-set version, split it by time, fit the preprocessing, feed Petastorm."""
    spark, tc = run.spark, cfg.training
    version = run.version_to_read(tc.training_set)
    if version is None:
        raise TableNotFound(f"{tc.training_set} has not been written yet", hint="run build_training_set first")
    split, pre = prepare(spark, cfg, run.read(tc.training_set))
    stats = split.train.agg(F.count("*").alias("n"), F.sum(F.col(tc.label).cast("long")).alias("pos")).first()
    n_train, n_pos = int(stats["n"]), int(stats["pos"] or 0)
    steps = (n_train // tc.num_proc) // tc.batch_size
    if steps < 1 or n_pos == 0:
        raise TrainingDataError(
            f"{tc.training_set}@v{version}: {n_train} training rows with {n_pos} fraud labels is too little "
            f"for {tc.num_proc} workers at batch size {tc.batch_size}",
            hint="generate more data (--rows) or lower training.batch_size")
    validation = encode(split.validation, pre, tc.label).toPandas()
    n_cols = len(pre.numeric)
    spec = WorkerSpec(
        converter=None, n_numeric=n_cols, cardinalities=pre.cardinalities,
        validation_numeric=validation[[f"n{j}" for j in range(n_cols)]].to_numpy(np.float32),
        validation_categories=validation[[f"c{j}" for j in range(len(pre.categorical))]].to_numpy(np.int64),
        validation_labels=validation["label"].to_numpy(np.float32), steps_per_epoch=steps,
        pos_weight=(n_train - n_pos) / n_pos, seed=tc.seed, max_epochs=tc.max_epochs, patience=tc.patience,
        batch_size=tc.batch_size, learning_rate=tc.learning_rate, embedding_dim=tc.embedding_dim,
        hidden_units=list(tc.hidden_units), use_gpu=tc.use_gpu)
    spec.converter = make_converter(spark, cfg, encode(split.train, pre, tc.label, keep=tc.id_column),
                                    max(4, 2 * tc.num_proc), key=tc.id_column)
    progress(f"{JOB}: {tc.training_set}@v{version}: {n_train} training rows ({n_pos} fraud), "
             f"{len(validation)} validation; {tc.engine} with {tc.num_proc} worker(s), {steps} steps/epoch")
    return Prepared(version, split, pre, spec, n_train, n_pos, split.validation.toPandas(),
                    with_slices(run, cfg, split.holdout).toPandas())


def run_workers(data: Prepared, cfg: Config) -> tuple[dict, float]:
    """Launch the distributed workers; fail unless every rank ended with the same parameters."""
    started = time.time()
    try:
        result = launch(data.spec, cfg.training, cfg.root / "_horovodrun", cfg.spark.master.startswith("local"))
    finally:
        data.spec.converter.delete()
    if len(set(result["digests"])) != 1:
        raise TrainingLaunchFailed(f"ranks ended with different parameters: {result['digests']}")
    return result, time.time() - started


def log_run(run: JobRun, cfg: Config, data: Prepared, result: dict, seconds: float, experiment_id: str):
    """One MLflow run: parameters, per-epoch metrics, data and code tags, environment, the registered model."""
    import mlflow

    from training.model_logging import environment, log_model
    from training.network import FraudMLP

    tc = cfg.training
    architecture = {"n_numeric": len(data.pre.numeric), "cardinalities": data.pre.cardinalities,
                    "embedding_dim": tc.embedding_dim, "hidden_units": list(tc.hidden_units)}
    FraudMLP(**architecture).load_state_dict(result["state_dict"])  # fails here, not at scoring time
    requirements, versions = environment()
    params = {
        "engine": tc.engine, "num_proc": tc.num_proc, "seed": tc.seed, "batch_size": tc.batch_size,
        "learning_rate": tc.learning_rate, "max_epochs": tc.max_epochs, "patience": tc.patience,
        "hidden_units": tc.hidden_units, "embedding_dim": tc.embedding_dim,
        "numeric_features": ",".join(tc.numeric_features),
        "categorical_features": ",".join(tc.categorical_features), "pos_weight": round(data.spec.pos_weight, 4),
        "steps_per_epoch": data.spec.steps_per_epoch, "train_rows": data.n_train,
        "validation_rows": len(data.spec.validation_labels), contract.HOLDOUT_ROWS: len(data.holdout),
        contract.VALIDATION_FROM: boundary_text(data.split.validation_from),
        contract.HOLDOUT_FROM: boundary_text(data.split.holdout_from)}
    tags = {**data_tags(run.spark, cfg, tc.training_set, data.version), contract.CODE_VERSION: code_version(),
            contract.LINEAGE_RUN_ID: run.run_id, contract.ENGINE: tc.engine,
            contract.RANK_DIGESTS: ",".join(result["digests"]), contract.DEVICE: result["device"],
            contract.WORLD_SIZE: str(result["world_size"])}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{JOB}-{run.run_id}") as mlrun:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
        for h in result["history"]:
            mlflow.log_metrics({"train_loss": h["train_loss"], "val_auc_pr": h["val_auc_pr"],
                                "epoch_seconds": h["seconds"]}, step=h["epoch"])
        mlflow.log_metrics({"best_epoch": result["best_epoch"], "train_seconds": seconds})
        mlflow.log_text(requirements, contract.ENVIRONMENT_REQUIREMENTS)
        mlflow.log_dict(versions, contract.ENVIRONMENT_VERSIONS)
        mlflow.log_dict({"rows_per_rank_per_epoch": result["rows_per_rank"]}, "training/rows_per_rank.json")
        info = log_model(cfg, result["state_dict"], architecture, data.pre, data.holdout.head(5))
        model_version = int(info.registered_model_version)
        run.wrote_asset(model_asset(cfg), model_version, model_version - 1)
    return mlrun.info.run_id, model_version


def train(run: JobRun, args: argparse.Namespace) -> TrainingOutcome:
    """Train on the planned training-set version, log and register the model, then validate it."""
    from registry.client import connect

    cfg = _override(run.cfg, args)
    tc = cfg.training
    client, experiment_id = connect(cfg)
    data = prepare_data(run, cfg)
    result, seconds = run_workers(data, cfg)
    mlflow_run_id, model_version = log_run(run, cfg, data, result, seconds, experiment_id)
    run.writing(DECISIONS_TABLE)
    run.writing(DEPLOYMENTS_TABLE)
    decision, holdout_scores = validate_version(
        run.spark, cfg, client, model_version, data.validation, data.holdout, run_id=run.run_id,
        strategy=getattr(args, "strategy", None),
        slice_inputs={t: run.inputs[t] for t in attribute_inputs(cfg) if t in run.inputs},
        training_set=tc.training_set, training_set_version=data.version, mlflow_run_id=mlflow_run_id)
    run.wrote(DECISIONS_TABLE)
    run.wrote(DEPLOYMENTS_TABLE)
    for key, value in holdout_scores.items():
        if value == value:  # NaN (undefined) is left out
            client.log_metric(mlflow_run_id, f"holdout_{key}", value)
    for metric, n in (("model_version", model_version), ("promoted", int(decision.promoted)),
                      ("epochs", len(result["history"])), ("train_rows", data.n_train)):
        run.count(metric, n)
    progress(f"{JOB}: {tc.model_name} v{model_version} (run {mlflow_run_id}): holdout AUC-PR "
             f"{holdout_scores['auc_pr']:.4f}, threshold {decision.threshold:.4f}, trained in {seconds:.1f}s over {len(result['history'])} epochs; "
             f"{decision.outcome()} ({decision.reason})")
    return TrainingOutcome(run.run_id, mlflow_run_id, model_version, decision, holdout_scores)
