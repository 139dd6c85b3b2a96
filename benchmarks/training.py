"""Training figures: Petastorm loader vs an in-memory loader, epoch time with 1 and 2 Horovod processes, AUC-PR.

    tidewater demo --root /tmp/bench [--rows 200000]        # platform env: builds features.training_set
    PYSPARK_PYTHON=.venv-train/bin/python .venv-train/bin/python benchmarks/training.py --root /tmp/bench

Runs in the training environment. Reads the training set the demo built under --root; nothing is
registered in MLflow.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lakehouse.config import load_config  # noqa: E402
from lakehouse.session import build_session  # noqa: E402
from lakehouse.tables import read_table  # noqa: E402
from training.data import encode, make_converter, prepare  # noqa: E402
from training.launchers import run_horovod_spark  # noqa: E402
from training.loop import WorkerSpec  # noqa: E402
from registry.metrics import average_precision  # noqa: E402
from training.network import FraudMLP  # noqa: E402
from training.pyfunc_model import predict_proba  # noqa: E402


def loader_rate(batches, n_batches: int) -> float:
    started, rows = time.perf_counter(), 0
    for i, batch in enumerate(batches):
        rows += len(batch["label"] if isinstance(batch, dict) else batch[-1])
        if i + 1 == n_batches:
            break
    return rows / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="storage root with a built features.training_set")
    parser.add_argument("--env", default="local")
    parser.add_argument("--epochs", type=int, default=5, help="epochs per Horovod run (no early stop)")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    cfg = load_config(args.env, root=args.root)
    tc = cfg.training
    spark = build_session(cfg)
    df = read_table(spark, cfg.table(tc.training_set))
    split, pre = prepare(spark, cfg, df)
    encoded = encode(split.train, pre, tc.label, keep=tc.id_column)
    n = encoded.count()
    print(f"training rows: {n}, batch size {tc.batch_size}")

    # 1. Loader throughput, one process, one pass: Petastorm (dummy pool) vs in-memory tensors.
    converter = make_converter(spark, cfg, encoded, 4, key=tc.id_column)
    n_batches = n // tc.batch_size
    with converter.make_torch_dataloader(batch_size=tc.batch_size, num_epochs=1, reader_pool_type="dummy") as dl:
        petastorm_rate = loader_rate(iter(dl), n_batches)
    pdf = encoded.drop(tc.id_column).toPandas()
    tensors = [torch.from_numpy(pdf[c].to_numpy()) for c in pdf.columns]
    memory = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*tensors), batch_size=tc.batch_size,
                                         shuffle=True)
    memory_rate = loader_rate(iter(memory), n_batches)
    # The true ceiling: whole-batch slices of shuffled in-memory tensors (no per-sample collate).
    order = torch.randperm(len(tensors[0]))
    sliced = ([t[order[i:i + tc.batch_size]] for t in tensors] for i in range(0, n, tc.batch_size))
    sliced_rate = loader_rate(sliced, n_batches)
    print(f"loader: petastorm {petastorm_rate:,.0f} samples/s; in-memory TensorDataset+DataLoader "
          f"{memory_rate:,.0f} samples/s (petastorm {petastorm_rate / memory_rate:.2f}x); in-memory batch slices "
          f"{sliced_rate:,.0f} samples/s (petastorm {petastorm_rate / sliced_rate:.2f}x)")

    # 2. Epoch time with 1 and 2 Horovod processes (horovod.spark.run), fixed epoch count.
    validation = encode(split.validation, pre, tc.label).toPandas()
    holdout = split.holdout.toPandas()
    for procs in (1, 2):
        n_train = n
        spec = WorkerSpec(
            converter=converter, n_numeric=len(pre.numeric), cardinalities=pre.cardinalities,
            validation_numeric=validation[[f"n{j}" for j in range(len(pre.numeric))]].to_numpy(np.float32),
            validation_categories=validation[[f"c{j}" for j in range(len(pre.categorical))]].to_numpy(np.int64),
            validation_labels=validation["label"].to_numpy(np.float32),
            steps_per_epoch=(n_train // procs) // tc.batch_size, pos_weight=10.0, seed=tc.seed,
            max_epochs=args.epochs, patience=args.epochs + 1, batch_size=tc.batch_size,
            learning_rate=tc.learning_rate, embedding_dim=tc.embedding_dim, hidden_units=list(tc.hidden_units),
            use_gpu=tc.use_gpu, log_every_epoch=False)
        started = time.perf_counter()
        result = run_horovod_spark(spec, tc.model_copy(update={"num_proc": procs}))
        wall = time.perf_counter() - started
        epoch_s = [h["seconds"] for h in result["history"][1:]] or [result["history"][0]["seconds"]]
        network = FraudMLP(len(pre.numeric), pre.cardinalities, tc.embedding_dim, list(tc.hidden_units))
        network.load_state_dict(result["state_dict"])
        auc = average_precision(holdout[tc.label].to_numpy(), predict_proba(network, pre, holdout))
        print(f"horovod x{procs}: epoch {np.median(epoch_s):.2f}s (median after the first), "
              f"{n_train / np.median(epoch_s):,.0f} samples/s, run {wall:.1f}s incl. start-up; "
              f"holdout AUC-PR {auc:.4f} (best epoch {result['best_epoch']})")
    converter.delete()


if __name__ == "__main__":
    main()
