"""train: the training set at an exact version -> N distributed workers -> an MLflow run and a registered model.

Runs inside the training environment (spark-submit with .venv-train's Python). From the platform
environment, `tidewater run train` hands over to it (training.job).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.config import Config
from lakehouse.console import progress
from lakehouse.errors import ConfigError, TableNotFound
from lakehouse.lineage import JobRun, code_version, producer_of
from lakehouse.model_store import model_asset
from training.data import TrainingDataError, encode, make_converter, prepare
from training.launchers import TrainingLaunchFailed, launch
from training.loop import WorkerSpec
from training.registry import DECISIONS_TABLE, Decision, validate_challenger

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


def _iso(seconds: float) -> str:
    """A split boundary (epoch seconds) as an ISO timestamp in UTC, readable by people and by Spark SQL."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def data_tags(spark: SparkSession, cfg: Config, table: str, version: int) -> dict[str, str]:
    """The training set's version and, from lineage, the feature and label versions behind it."""
    tags = {"tidewater.training_set": table, "tidewater.training_set_version": str(version)}
    producer = producer_of(spark, cfg, table, version)
    if producer:
        tags["tidewater.training_set_built_by"] = producer["run_id"]
        for inp in producer["inputs"]:
            tags[f"tidewater.input.{inp['table']}"] = "none" if inp["version"] is None else str(inp["version"])
    return tags


def train(run: JobRun, args: argparse.Namespace) -> TrainingOutcome:
    """Train on the planned training-set version inside the runner's lineage record."""
    import mlflow

    from training.model_logging import environment, log_model
    from training.network import FraudMLP
    from training.registry import holdout_metrics
    from training.tracking import connect

    spark, cfg = run.spark, _override(run.cfg, args)
    tc = cfg.training
    client, experiment_id = connect(cfg)
    version = run.version_to_read(tc.training_set)
    if version is None:
        raise TableNotFound(f"{tc.training_set} has not been written yet", hint="run build_training_set first")
    df = run.read(tc.training_set)
    split, pre = prepare(spark, cfg, df)
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
    started = time.time()
    try:
        result = launch(spec, tc, cfg.root / "_horovodrun", cfg.spark.master.startswith("local"))
    finally:
        spec.converter.delete()
    seconds = time.time() - started
    if len(set(result["digests"])) != 1:
        raise TrainingLaunchFailed(f"ranks ended with different parameters: {result['digests']}")
    architecture = {"n_numeric": n_cols, "cardinalities": pre.cardinalities,
                    "embedding_dim": tc.embedding_dim, "hidden_units": list(tc.hidden_units)}
    FraudMLP(**architecture).load_state_dict(result["state_dict"])  # fails here, not at scoring time
    holdout = split.holdout.toPandas()
    requirements, versions = environment()
    params = {
        "engine": tc.engine, "num_proc": tc.num_proc, "seed": tc.seed, "batch_size": tc.batch_size,
        "learning_rate": tc.learning_rate, "max_epochs": tc.max_epochs, "patience": tc.patience,
        "hidden_units": tc.hidden_units, "embedding_dim": tc.embedding_dim,
        "numeric_features": ",".join(tc.numeric_features),
        "categorical_features": ",".join(tc.categorical_features), "pos_weight": round(spec.pos_weight, 4),
        "steps_per_epoch": steps, "train_rows": n_train, "validation_rows": len(validation),
        "holdout_rows": len(holdout), "validation_from": _iso(split.validation_from),
        "holdout_from": _iso(split.holdout_from)}
    tags = {**data_tags(spark, cfg, tc.training_set, version), "tidewater.code_version": code_version(),
            "tidewater.lineage_run_id": run.run_id, "tidewater.engine": tc.engine,
            "tidewater.rank_digests": ",".join(result["digests"]), "tidewater.device": result["device"],
            "tidewater.world_size": str(result["world_size"])}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{JOB}-{run.run_id}") as mlrun:
        mlflow.log_params(params)
        mlflow.set_tags(tags)
        for h in result["history"]:
            mlflow.log_metrics({"train_loss": h["train_loss"], "val_auc_pr": h["val_auc_pr"],
                                "epoch_seconds": h["seconds"]}, step=h["epoch"])
        mlflow.log_metrics({"best_epoch": result["best_epoch"], "train_seconds": seconds})
        mlflow.log_text(requirements, "environment/requirements.txt")
        mlflow.log_dict(versions, "environment/versions.json")
        mlflow.log_dict({"rows_per_rank_per_epoch": result["rows_per_rank"]}, "training/rows_per_rank.json")
        info = log_model(cfg, result["state_dict"], architecture, pre, holdout.head(5))
        model_version = int(info.registered_model_version)
        run.wrote_asset(model_asset(cfg), model_version, model_version - 1)
        holdout_scores = holdout_metrics(info.model_uri, holdout, cfg)
        mlflow.log_metrics({f"holdout_{k}": v for k, v in holdout_scores.items() if v == v})
    run.writing(DECISIONS_TABLE)
    decision = validate_challenger(spark, cfg, client, model_version, holdout,
                                   training_set=tc.training_set, training_set_version=version,
                                   mlflow_run_id=mlrun.info.run_id, lineage_run_id=run.run_id)
    run.wrote(DECISIONS_TABLE)
    run.count("model_version", model_version)
    run.count("promoted", int(decision.promoted))
    run.count("epochs", len(result["history"]))
    run.count("train_rows", n_train)
    progress(f"{JOB}: {tc.model_name} v{model_version} (run {mlrun.info.run_id}): holdout AUC-PR "
             f"{holdout_scores['auc_pr']:.4f}, trained in {seconds:.1f}s over {len(result['history'])} epochs; "
             f"{'now champion' if decision.promoted else 'stays challenger'} ({decision.reason})")
    return TrainingOutcome(run.run_id, mlrun.info.run_id, model_version, decision, holdout_scores)
