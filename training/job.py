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

from lakehouse.config import PROJECT_DIR, Config
from lakehouse.errors import SetupIncomplete, TidewaterError
from lakehouse.job_runner import JobSpec, progress

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["horovod", "horovodrun", "torch_distributor"],
                        help="override training.engine")
    parser.add_argument("--num-proc", type=int, help="override training.num_proc (workers)")
    parser.add_argument("--max-epochs", type=int, help="override training.max_epochs")
    parser.add_argument("--training-set-version", type=int,
                        help="train on this Delta version of the training set (default: the latest)")
    parser.add_argument("--force", action="store_true",
                        help="train even if the last successful run used this training set version")
    parser.add_argument("--result-file", help=argparse.SUPPRESS)  # written for the handing-over process


def forwarded_argv(args: argparse.Namespace) -> list[str]:
    argv = []
    for name in ("env", "root", "conf_dir", "engine", "num_proc", "max_epochs", "training_set_version"):
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
        progress(f"{JOB}: handing over to the training environment ({python.parent.parent.name})")
        done = subprocess.run(cmd, env=env, cwd=PROJECT_DIR)
        if done.returncode != 0 or not result_file.exists():
            raise TrainingFailed(f"training exited with status {done.returncode}",
                                 hint="its own error is printed above; TIDEWATER_DEBUG=1 shows the trace")
        result = json.loads(result_file.read_text())
    return HandedOverRun(result["lineage_run_id"], result["outputs"], result)


def already_trained(spark, cfg: Config, args: argparse.Namespace) -> bool:
    """A rerun on an unchanged training set would only register a copy of the same model."""
    from lakehouse.lineage import input_versions, last_successful_inputs

    if getattr(args, "force", False) or getattr(args, "training_set_version", None) is not None:
        return False
    current = input_versions(spark, cfg, [cfg.training.training_set])
    return None not in current.values() and last_successful_inputs(spark, cfg, JOB) == current


def run_train(spark, cfg: Config, args: argparse.Namespace):
    if cfg.training and already_trained(spark, cfg, args):
        from lakehouse.lineage import JobRun

        progress(f"{JOB}: {cfg.training.training_set} unchanged since the last training run; "
                 "nothing to train (--force trains anyway)")
        run = JobRun(spark, cfg, JOB)
        if getattr(args, "result_file", None):
            Path(args.result_file).write_text(json.dumps({"lineage_run_id": run.run_id, "skipped": True,
                                                          "outputs": {}}))
        return run
    if not in_training_env():
        return hand_over(cfg, args)
    from training.train import train

    run, outcome = train(spark, cfg, args)
    if getattr(args, "result_file", None):
        Path(args.result_file).write_text(json.dumps({
            "lineage_run_id": outcome.lineage_run_id, "mlflow_run_id": outcome.mlflow_run_id,
            "model_version": outcome.model_version, "promoted": outcome.decision.promoted,
            "reason": outcome.decision.reason, "holdout": outcome.holdout,
            "outputs": run.changed_outputs()}))
    return run


TRAIN = JobSpec(
    name=JOB,
    summary="Train the fraud model (Petastorm -> Horovod or TorchDistributor), log it to MLflow, "
            "register it and promote it to champion when it beats the current one.",
    run=run_train,
    add_arguments=add_arguments,
)
