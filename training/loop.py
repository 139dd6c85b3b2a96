"""The training loop every engine runs: one function, a communicator, a shard of the data.

Each rank reads its own Petastorm shard, takes the same number of steps per epoch (collectives
need it), averages gradients through the communicator, and stops early on the validation slice's
AUC-PR. Rows are counted per rank per epoch: a short epoch fails loudly instead of training on
less data than planned (Petastorm 0.13's thread-pool reader sometimes ends an epoch with no rows and
no error, so the reader uses the single-threaded pool and the count guards it).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from registry.metrics import average_precision
from training.network import FraudMLP, parameter_digest


class ShortEpoch(RuntimeError):
    pass


@dataclass
class WorkerSpec:
    """Everything a worker needs, pickled to Spark tasks or horovodrun processes."""

    converter: Any  # petastorm SparkDatasetConverter over the encoded training split
    n_numeric: int
    cardinalities: list[int]
    validation_numeric: np.ndarray
    validation_categories: np.ndarray
    validation_labels: np.ndarray
    steps_per_epoch: int
    pos_weight: float
    seed: int
    max_epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    embedding_dim: int
    hidden_units: list[int] = field(default_factory=lambda: [64, 32])
    use_gpu: bool = True
    log_every_epoch: bool = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def build_model(spec: WorkerSpec) -> FraudMLP:
    return FraudMLP(spec.n_numeric, spec.cardinalities, spec.embedding_dim, spec.hidden_units)


def _unpack(batch: dict, n_numeric: int, n_categorical: int, device) -> tuple:
    num = torch.stack([batch[f"n{j}"] for j in range(n_numeric)], dim=1).float().to(device)
    cat = (torch.stack([batch[f"c{j}"] for j in range(n_categorical)], dim=1).long().to(device)
           if n_categorical else torch.zeros((len(num), 0), dtype=torch.long, device=device))
    return num, cat, batch["label"].float().to(device)


def validation_scores(model: FraudMLP, spec: WorkerSpec, device) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(spec.validation_numeric).to(device),
                       torch.from_numpy(spec.validation_categories).to(device))
    model.train()
    return torch.sigmoid(logits).cpu().numpy()


def train_worker(spec: WorkerSpec, comm) -> dict | None:
    """Train on this rank's shard; rank 0 returns the best weights, the history and every rank's digest."""
    seed_everything(spec.seed)
    device = comm.device(spec.use_gpu)
    model = build_model(spec).to(device)
    comm.broadcast_parameters(model)
    optimizer = comm.distributed_optimizer(torch.optim.Adam(model.parameters(), lr=spec.learning_rate), model)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(spec.pos_weight, device=device))
    n_cat = len(spec.cardinalities)
    history, rows_per_epoch = [], []
    best_score, best_state, best_epoch, stale = -1.0, None, 0, 0
    with spec.converter.make_torch_dataloader(
            batch_size=spec.batch_size, num_epochs=None, cur_shard=comm.rank, shard_count=comm.size,
            reader_pool_type="dummy", seed=spec.seed, shuffle_rows=True) as loader:
        batches = iter(loader)
        for epoch in range(1, spec.max_epochs + 1):
            started, seen, loss_sum = time.time(), 0, 0.0
            for _ in range(spec.steps_per_epoch):
                try:
                    batch = next(batches)
                except StopIteration:
                    raise ShortEpoch(f"rank {comm.rank}: the data loader ended inside epoch {epoch}") from None
                num, cat, y = _unpack(batch, spec.n_numeric, n_cat, device)
                optimizer.zero_grad()
                loss = loss_fn(model(num, cat), y)
                loss.backward()
                optimizer.step()
                seen += len(y)
                loss_sum += float(loss.item()) * len(y)
            if seen != spec.steps_per_epoch * spec.batch_size:
                raise ShortEpoch(f"rank {comm.rank}: epoch {epoch} read {seen} rows, "
                                 f"expected {spec.steps_per_epoch * spec.batch_size}")
            rows_per_epoch.append(seen)
            total_rows = comm.allreduce_sum(seen)
            train_loss = comm.allreduce_sum(loss_sum) / total_rows
            val_auc_pr = average_precision(spec.validation_labels, validation_scores(model, spec, device))
            history.append({"epoch": epoch, "train_loss": train_loss, "val_auc_pr": val_auc_pr,
                            "rows": total_rows, "seconds": time.time() - started})
            if comm.rank == 0 and spec.log_every_epoch:
                print(f"[train] epoch {epoch}: loss {train_loss:.4f}, validation AUC-PR {val_auc_pr:.4f}, "
                      f"{int(total_rows)} rows in {time.time() - started:.1f}s", flush=True)
            score = val_auc_pr if val_auc_pr == val_auc_pr else -train_loss  # no fraud in validation: loss
            if best_state is None or score > best_score + 1e-4:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if comm.broadcast_object(stale >= spec.patience):
                break
    model.load_state_dict(best_state)
    digests = comm.allgather_object(parameter_digest(model))
    rows = comm.allgather_object(rows_per_epoch)
    if comm.rank != 0:
        return None
    return {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "history": history,
            "best_epoch": best_epoch, "digests": digests, "rows_per_rank": rows, "world_size": comm.size,
            "device": str(device)}
