"""The fraud model: an MLP over standardized numeric features and embedded categoricals."""

from __future__ import annotations

import torch
from torch import nn


class FraudMLP(nn.Module):
    def __init__(self, n_numeric: int, cardinalities: list[int], embedding_dim: int, hidden_units: list[int]):
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(card, embedding_dim) for card in cardinalities)
        layers: list[nn.Module] = []
        width = n_numeric + embedding_dim * len(cardinalities)
        for units in hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            width = units
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        """Logits, one per row."""
        embedded = [emb(categories[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat([numeric, *embedded], dim=1)).squeeze(1)


def parameter_digest(model: nn.Module) -> str:
    """A hash of every parameter's bytes: equal digests mean identical weights on every rank."""
    import hashlib

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
