"""Check the training loop's GPU paths on a machine with CUDA but no Spark (a lent GPU box).

    python scripts/gpu_check.py                           # LocalComm: one process on cuda:0 (and on CPU)
    torchrun --nproc_per_node=1 scripts/gpu_check.py --torch-distributed   # TorchComm over NCCL

Petastorm needs Spark to build its converter, so this feeds train_worker from an in-memory loader
with the converter's make_torch_dataloader interface (shards by rank, endless epochs). Everything
else - model, loss, optimizer wrapping, collectives, early stopping, digests - is the real code.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.distributed import LocalComm, TorchComm  # noqa: E402
from training.loop import WorkerSpec, train_worker  # noqa: E402


class InMemoryConverter:
    def __init__(self, num: np.ndarray, cat: np.ndarray, label: np.ndarray):
        self.cols = {**{f"n{j}": num[:, j] for j in range(num.shape[1])},
                     **{f"c{j}": cat[:, j] for j in range(cat.shape[1])}, "label": label}

    @contextlib.contextmanager
    def make_torch_dataloader(self, batch_size, num_epochs=None, cur_shard=0, shard_count=1, seed=0, **_):
        n = len(self.cols["label"])
        rows = np.arange(n)[cur_shard::shard_count]
        rng = np.random.default_rng(seed)

        def batches():
            while True:
                order = rng.permutation(rows)
                for i in range(0, len(order) - batch_size + 1, batch_size):
                    idx = order[i:i + batch_size]
                    yield {k: torch.from_numpy(v[idx]) for k, v in self.cols.items()}

        yield batches()


def synthetic(n: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    num = rng.normal(size=(n, 12)).astype(np.float32)
    cat = rng.integers(0, 10, size=(n, 3)).astype(np.int64)
    logit = 2.5 * num[:, 0] - 2.0 * num[:, 1] + (cat[:, 0] == 3) * 2.0 - 4.0
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return num, cat, label


def spec_for(n: int, use_gpu: bool, size: int) -> WorkerSpec:
    num, cat, label = synthetic(n)
    vnum, vcat, vlabel = synthetic(5000, seed=2)
    return WorkerSpec(converter=InMemoryConverter(num, cat, label), n_numeric=12, cardinalities=[10, 10, 10],
                      validation_numeric=vnum, validation_categories=vcat, validation_labels=vlabel,
                      steps_per_epoch=(n // size) // 1024, pos_weight=float((1 - label.mean()) / label.mean()),
                      seed=7, max_epochs=5, patience=5, batch_size=1024, learning_rate=0.003, embedding_dim=4,
                      hidden_units=[256, 128], use_gpu=use_gpu, log_every_epoch=False)


def report(name: str, result: dict, seconds: float) -> None:
    h = result["history"]
    print(f"{name}: device {result['device']}, world {result['world_size']}, {len(h)} epochs in {seconds:.1f}s, "
          f"loss {h[0]['train_loss']:.4f} -> {h[-1]['train_loss']:.4f}, val AUC-PR {h[-1]['val_auc_pr']:.4f}, "
          f"epoch {np.median([e['seconds'] for e in h[1:]]):.2f}s, digests equal: {len(set(result['digests'])) == 1}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--torch-distributed", action="store_true", help="run under torchrun: TorchComm (NCCL)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}", flush=True)
    if args.torch_distributed:
        comm = TorchComm(use_gpu=True)
        started = time.time()
        result = train_worker(spec_for(args.rows, True, comm.size), comm)
        if comm.rank == 0:
            print(f"backend: {comm.dist.get_backend()}")
            report("TorchComm", result, time.time() - started)
        comm.shutdown()
        return
    for use_gpu in (True, False):
        started = time.time()
        result = train_worker(spec_for(args.rows, use_gpu, 1), LocalComm())
        report("LocalComm " + ("GPU" if use_gpu else "CPU"), result, time.time() - started)


if __name__ == "__main__":
    main()
