"""The model as MLflow logs it: preprocessing + network behind one pyfunc `predict`.

Scoring (pandas, `mlflow.pyfunc.spark_udf`, or scoring/) gets the fraud probability for raw
feature columns and never re-implements the transform. Imports stay light (torch, numpy,
pandas) so the model loads in the platform environment as well as the training one.
"""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from training.network import FraudMLP
from training.preprocessing import Preprocessor


def predict_proba(network: FraudMLP, pre: Preprocessor, pdf: pd.DataFrame) -> np.ndarray:
    network.eval()
    with torch.no_grad():
        logits = network(torch.from_numpy(pre.numeric_matrix(pdf)), torch.from_numpy(pre.category_matrix(pdf)))
    return torch.sigmoid(logits).numpy().astype(np.float64)


def load_network(weights_path: str, architecture: dict) -> FraudMLP:
    network = FraudMLP(**architecture)
    network.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    network.eval()
    return network


class FraudModel(mlflow.pyfunc.PythonModel):
    """Artifacts: `weights` (state dict), `preprocessor` (JSON), `architecture` (JSON)."""

    def load_context(self, context) -> None:
        with open(context.artifacts["preprocessor"]) as f:
            self.pre = Preprocessor.from_json(f.read())
        with open(context.artifacts["architecture"]) as f:
            architecture = json.load(f)
        self.network = load_network(context.artifacts["weights"], architecture)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.Series:
        # "score": the registry contract's SCORE_NAME, written out so the logged model needs only training/
        return pd.Series(predict_proba(self.network, self.pre, model_input), name="score")
