"""The `train` job: in the training environment it trains; anywhere else it hands over to it.

`tidewater run train` and the demo run in the platform environment (Feast, NumPy 2), where
Horovod and Petastorm cannot be installed; they start `spark-submit jobs/train.py` with the
training environment's Python for driver and executors, and read back what it did.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from lakehouse.config import PROJECT_DIR, Config
from lakehouse.errors import SetupIncomplete, TidewaterError
from lakehouse.console import progress
from lakehouse.cli_options import option
from lakehouse.job_runner import JobSpec
from lakehouse.model_store import model_asset
from training.slice_columns import attribute_inputs
from training.validation import STRATEGY_OPTION

JOB = "train"


class TrainingFailed(TidewaterError):
    pass


@dataclass
class HandedOverRun:
    """What the training environment's run reported (the demo and CLI need its ids and outputs)."""

    run_id: str
    outputs: dict[str, int] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    def changed_outputs(self) -> dict[str, int]:
        return self.outputs


def in_training_env() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("horovod", "petastorm"))


def training_python(cfg: Config) -> Path:
    python = Path(cfg.training.python)
    return python if python.is_absolute() else PROJECT_DIR / python


OPTIONS = [
    option("--engine", type=click.Choice(["horovod", "horovodrun", "torch_distributor"]), help="override training.engine"),
    option("--num-proc", type=int, help="override training.num_proc (workers)"),
    option("--max-epochs", type=int, help="override training.max_epochs"),
    option("--training-set-version", type=int,
           help="train on this Delta version of the training set (default: the latest)"),
    STRATEGY_OPTION,
    option("--result-file", hidden=True),  # written for the handing-over process
]


def forwarded_argv(args: argparse.Namespace) -> list[str]:
    argv = []
    for name in ("env", "root", "conf_dir", "engine", "num_proc", "max_epochs", "training_set_version", "strategy"):
        value = getattr(args, name, None)
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "force", False):
        argv.append("--force")
    return argv


def hand_over(cfg: Config, args: argparse.Namespace) -> HandedOverRun:
    """spark-submit jobs/train.py in the training environment; stream its output; read its result."""
    python = training_python(cfg)
    submit = python.parent / "spark-submit"
    if not submit.exists():
        raise SetupIncomplete(f"the training environment is missing ({python})", hint="run `make setup`")
    env = {**os.environ, "PYSPARK_PYTHON": str(python), "PYSPARK_DRIVER_PYTHON": str(python),
           "PYTHONUNBUFFERED": "1",
           # Petastorm 0.13 on pyarrow 14 warns about deprecated pyarrow APIs on every read.
           "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")}
    if cfg.spark.master.startswith("local"):
        env["SPARK_LOCAL_IP"] = "127.0.0.1"  # Horovod's rendezvous and Spark's driver stay on loopback
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        cmd = [str(submit), "--master", cfg.spark.master, "--driver-memory", cfg.training.driver_memory,
               "--conf", f"spark.pyspark.python={python}", str(PROJECT_DIR / "jobs" / "train.py"),
               *forwarded_argv(args), "--result-file", str(result_file)]
        if cfg.spark.catalog == "hive":  # the metastore's client settings must be on the JVM's class path at start
            from lakehouse.session import hive_class_path

            cmd[3:3] = ["--driver-class-path", hive_class_path(cfg)]
        progress(f"{JOB}: handing over to the training environment ({python.parent.parent.name})")
        done = subprocess.run(cmd, env=env, cwd=PROJECT_DIR)
        if done.returncode == 0 and not result_file.exists():  # it found nothing to train
            return HandedOverRun("", {}, {"skipped": True})
        if done.returncode != 0:
            raise TrainingFailed(f"training exited with status {done.returncode}",
                                 hint="its own error is printed above; TIDEWATER_DEBUG=1 shows the trace")
        result = json.loads(result_file.read_text())
    return HandedOverRun(result["lineage_run_id"], result["outputs"], result)


def _plan(run, args: argparse.Namespace) -> dict[str, int | None]:
    table = run.cfg.training_set_table
    version = args.training_set_version
    return {table: version if version is not None else run.current_versions([table])[table],
            **run.current_versions(attribute_inputs(run.cfg))}


def _hand_over(run, args: argparse.Namespace) -> HandedOverRun | None:
    """Outside the training environment, run it there; inside, return None and train here."""
    return None if in_training_env() else hand_over(run.cfg, args)


def _train(run, args: argparse.Namespace) -> None:
    from training.train import train

    outcome = train(run, args)
    if args.result_file:
        Path(args.result_file).write_text(json.dumps({
            "lineage_run_id": outcome.lineage_run_id, "mlflow_run_id": outcome.mlflow_run_id,
            "model_version": outcome.model_version, "promoted": outcome.decision.promoted,
            "deployed_as": outcome.decision.deployed_as,
            "reason": outcome.decision.reason, "holdout": outcome.holdout,
            "outputs": run.changed_outputs()}))


train = JobSpec(
    name=JOB,
    summary="Train the fraud model (Petastorm -> Horovod or TorchDistributor), log it to MLflow, "
            "register it and promote it to champion when it beats the current one.",
    run=_train,
    inputs=lambda cfg: [cfg.training_set_table, *attribute_inputs(cfg)],
    outputs=lambda cfg: {model_asset(cfg): [cfg.training_set_table],
                         "meta.model_decisions": [cfg.training_set_table, *attribute_inputs(cfg)],
                         "meta.model_deployments": [cfg.training_set_table, *attribute_inputs(cfg)]},
    options=OPTIONS,
    rerun_options=("training_set_version",),
    plan=_plan,
    hand_over=_hand_over,
)
