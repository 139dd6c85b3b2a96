"""Reason codes: which inputs pushed a transaction's score up or down, in words a reviewer reads.

Integrated gradients over the logged model itself (its preprocessing, then its network): each
input's share of the difference between the transaction's logit and the logit of a typical
transaction (numeric inputs at their training mean, each category at the mean of its learned
embeddings). The shares add up to that difference (completeness), so they are comparable across
inputs and transactions. A categorical input's share is the sum over its embedding dimensions.
The API and batch scoring use this one module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from lakehouse.config import Config

STEPS = 32  # midpoint Riemann steps along the path: the shares add up to the logit gap within a few percent

# The per-transaction inputs (features.serving: context and the event row) that no feature view declares.
REQUEST_INPUTS = {
    "amount_eur": "the amount in EUR",
    "amount_vs_30d_avg": "the amount relative to the customer's 30-day average",
    "hour_of_day": "the hour of day (UTC)",
    "channel": "the channel",
    "merchant_category": "the merchant's category",
    "country": "the transaction's country",
}


def descriptions(cfg: Config) -> dict[str, str]:
    """Input name -> words: the request's own inputs, then each declared feature's description."""
    out = dict(REQUEST_INPUTS)
    for view in cfg.features.views.values():
        for f in view.features:
            out[f.name] = f.description or f"{f.agg} of the {view.entity}'s {f.column or 'transactions'} over {f.window}"
    return out


@dataclass(frozen=True)
class Reason:
    feature: str
    value: object
    attribution: float  # in logit units: > 0 raised the score, < 0 lowered it
    text: str

    def as_dict(self) -> dict:
        return {"feature": self.feature, "value": self.value, "attribution": round(self.attribution, 6),
                "text": self.text}


class Explainer:
    """Integrated gradients for one loaded model version (the pyfunc's own preprocessor and network)."""

    def __init__(self, python_model, words: dict[str, str]):
        self.pre, self.network, self.words = python_model.pre, python_model.network, words
        self.network.eval()
        n_num = len(self.pre.numeric)
        with torch.no_grad():
            typical = [emb.weight[1:].mean(0) if emb.weight.shape[0] > 1 else emb.weight[0]
                       for emb in self.network.embeddings]
        self.baseline = torch.cat([torch.zeros(n_num), *typical]).detach()
        dim = self.network.embeddings[0].embedding_dim if self.network.embeddings else 0
        # Which input each column of the network's first layer belongs to.
        self.owner = np.array([*range(n_num), *[n_num + j for j in range(len(self.pre.categorical))
                                               for _ in range(dim)]])
        self.inputs = [*self.pre.numeric, *self.pre.categorical]

    def _embedded(self, pdf: pd.DataFrame) -> torch.Tensor:
        numeric = torch.from_numpy(self.pre.numeric_matrix(pdf))
        cats = torch.from_numpy(self.pre.category_matrix(pdf))
        with torch.no_grad():
            embedded = [emb(cats[:, j]) for j, emb in enumerate(self.network.embeddings)]
        return torch.cat([numeric, *embedded], dim=1)

    def attributions(self, pdf: pd.DataFrame) -> np.ndarray:
        """(rows, inputs) integrated gradients of the logit, inputs in signature order."""
        z = self._embedded(pdf)
        delta = z - self.baseline
        alphas = (torch.arange(STEPS, dtype=z.dtype) + 0.5) / STEPS
        path = (self.baseline + alphas[:, None, None] * delta[None]).reshape(-1, z.shape[1]).requires_grad_(True)
        self.network.mlp(path).sum().backward()
        grads = path.grad.reshape(STEPS, *z.shape).mean(0)
        per_column = (delta * grads).detach().numpy()
        out = np.zeros((len(pdf), len(self.inputs)))
        np.add.at(out.T, self.owner, per_column.T)
        return out

    def gap(self, pdf: pd.DataFrame) -> np.ndarray:
        """logit(row) - logit(typical transaction): what the attributions of a row add up to."""
        with torch.no_grad():
            z = self._embedded(pdf)
            return (self.network.mlp(z) - self.network.mlp(self.baseline[None])).squeeze(1).numpy()

    def reasons(self, pdf: pd.DataFrame, k: int = 3) -> list[list[Reason]]:
        """Per row, the k inputs with the largest attribution that raised the score (then lowered it)."""
        values = self.attributions(pdf)
        out = []
        for i, row in enumerate(values):
            order = sorted(range(len(row)), key=lambda j: (row[j] <= 0, -abs(row[j])))[:k]
            out.append([self._reason(self.inputs[j], pdf.iloc[i][self.inputs[j]], float(row[j])) for j in order])
        return out

    def _reason(self, name: str, value, attribution: float) -> Reason:
        words = self.words.get(name, name.replace("_", " "))
        direction = "raised" if attribution > 0 else "lowered"
        if name in self.pre.categorical:
            shown = None if pd.isna(value) else str(value)
            known = shown in self.pre.vocab[name]
            text = f"{words} is {shown!r}{'' if known else ' (not seen in training)'}: {direction} the score"
            return Reason(name, shown, attribution, text)
        shown = None if pd.isna(value) else float(value)
        mean = self.pre.means[name]
        typical = math.expm1(mean) if self.pre.log[name] else mean
        text = (f"{words} is {'missing' if shown is None else f'{shown:.4g}'} (typical: {typical:.3g}): "
                f"{direction} the score")
        return Reason(name, shown, attribution, text)
