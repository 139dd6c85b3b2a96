"""Run training.loop.train_worker on N workers: horovod.spark.run, horovodrun, or TorchDistributor."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cloudpickle

from lakehouse.config import TrainingConf
from lakehouse.errors import TidewaterError
from training.loop import WorkerSpec, train_worker


class TrainingLaunchFailed(TidewaterError):
    pass


def _horovod_worker(spec: WorkerSpec):
    from training.distributed import HorovodComm

    comm = HorovodComm()
    try:
        return train_worker(spec, comm)
    finally:
        comm.shutdown()


def _torch_worker(spec: WorkerSpec):
    from training.distributed import TorchComm

    comm = TorchComm(spec.use_gpu)
    try:
        # Every rank returns rank 0's result: locally, each torchrun process writes the same output
        # file and the last one to finish wins, so a rank's None could otherwise replace the model.
        return comm.broadcast_object(train_worker(spec, comm))
    finally:
        comm.shutdown()


def run_local(spec: WorkerSpec) -> dict:
    from training.distributed import LocalComm

    return train_worker(spec, LocalComm())


def run_horovod_spark(spec: WorkerSpec, tc: TrainingConf) -> dict:
    """One Horovod process per Spark task (num_proc tasks); results come back from every rank."""
    import horovod.spark

    results = horovod.spark.run(_horovod_worker, args=(spec,), num_proc=tc.num_proc, use_gloo=True,
                                nics=set(tc.nics) or None, verbose=0)
    return next(r for r in results if r is not None)


# Variables the workers never need and horovodrun must not see: its gloo launcher writes every variable it
# passes on as `env NAME=value ...` on the workers' command lines, which any local user can read with `ps`.
SECRET_NAME = re.compile(r"(?i)secret|passw|token|credential|pii_key|api_key|private")


def worker_environment() -> dict[str, str]:
    """The environment handed to horovodrun's workers: this one, less anything that names a secret."""
    return {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)} | {"PYTHONUNBUFFERED": "1"}


def run_horovodrun(spec: WorkerSpec, tc: TrainingConf, workdir: Path) -> dict:
    """A standalone launch: `horovodrun -np N` runs training.standalone on this machine."""
    horovodrun = Path(sys.executable).parent / "horovodrun"
    if not horovodrun.exists():
        horovodrun = Path(shutil.which("horovodrun") or "horovodrun")
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        spec_file, out_file = Path(tmp) / "spec.pkl", Path(tmp) / "result.pkl"
        spec_file.write_bytes(cloudpickle.dumps(spec))
        cmd = [str(horovodrun), "-np", str(tc.num_proc), "-H", f"localhost:{tc.num_proc}", "--gloo"]
        if tc.nics:
            cmd += ["--network-interfaces", ",".join(tc.nics)]
        cmd += [sys.executable, "-m", "training.standalone", str(spec_file), str(out_file)]
        done = subprocess.run(cmd, env=worker_environment())
        if done.returncode != 0 or not out_file.exists():
            raise TrainingLaunchFailed(f"horovodrun exited with {done.returncode}",
                                       hint="its output is above; TIDEWATER_DEBUG=1 shows more")
        return cloudpickle.loads(out_file.read_bytes())


def run_torch_distributor(spec: WorkerSpec, tc: TrainingConf, local_mode: bool) -> dict:
    """PySpark's TorchDistributor: DDP-style processes (torchrun locally, barrier tasks on a cluster)."""
    from pyspark.ml.torch.distributor import TorchDistributor

    use_gpu = spec.use_gpu and _cuda()
    return TorchDistributor(num_processes=tc.num_proc, local_mode=local_mode, use_gpu=use_gpu).run(
        _torch_worker, spec)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def launch(spec: WorkerSpec, tc: TrainingConf, workdir: Path, local_master: bool) -> dict:
    if tc.num_proc == 1 and tc.engine != "horovodrun":
        return run_local(spec)
    if tc.engine == "horovod":
        return run_horovod_spark(spec, tc)
    if tc.engine == "horovodrun":
        return run_horovodrun(spec, tc, workdir)
    return run_torch_distributor(spec, tc, local_mode=local_master)
