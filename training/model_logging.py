"""What an MLflow run records: parameters, per-epoch metrics, data versions, environment, the model."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
from importlib.metadata import distributions
from pathlib import Path

import pandas as pd

from lakehouse.config import Config
from registry.contract import SCORE_NAME
from registry.inputs import conform
from training.preprocessing import Preprocessor

PACKAGE_DIR = Path(__file__).resolve().parent


def environment() -> tuple[str, dict]:
    """The training environment as requirements lines, plus the versions that matter most."""
    dists = sorted({(d.metadata["Name"], d.version) for d in distributions() if d.metadata["Name"]})
    requirements = "".join(f"{n}=={v}\n" for n, v in dists)
    import torch

    versions = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
                "cuda_available": torch.cuda.is_available(),
                **{n: v for n, v in dists if n.lower() in {"horovod", "petastorm", "pyspark", "mlflow-skinny",
                                                            "numpy", "pandas", "pyarrow", "delta-spark"}}}
    return requirements, versions


def log_model(cfg: Config, state_dict: dict, architecture: dict, pre: Preprocessor, example: pd.DataFrame):
    """Log the pyfunc (weights + preprocessing + code) and register it under training.model_name."""
    import mlflow
    import mlflow.pyfunc
    import torch
    from mlflow.models import infer_signature

    from training.pyfunc_model import FraudModel, load_network, predict_proba

    with tempfile.TemporaryDirectory() as tmp:
        weights, prep, arch = Path(tmp, "weights.pt"), Path(tmp, "preprocessor.json"), Path(tmp, "architecture.json")
        torch.save(state_dict, weights)
        prep.write_text(pre.to_json())
        arch.write_text(json.dumps(architecture))
        example = conform(example, pre.numeric, pre.categorical)
        scores = predict_proba(load_network(str(weights), architecture), pre, example)
        signature = infer_signature(example, pd.Series(scores, name=SCORE_NAME))
        return mlflow.pyfunc.log_model(
            name="model", python_model=FraudModel(),
            artifacts={"weights": str(weights), "preprocessor": str(prep), "architecture": str(arch)},
            code_paths=[str(PACKAGE_DIR)], signature=signature, input_example=example,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pandas",
                              f"mlflow-skinny=={mlflow.__version__}"],
            registered_model_name=cfg.training.model_name)
