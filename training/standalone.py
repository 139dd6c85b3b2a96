"""One horovodrun process: load the pickled WorkerSpec, train, and let rank 0 write the result.

    horovodrun -np 2 -H localhost:2 --gloo python -m training.standalone SPEC.pkl RESULT.pkl
"""

import sys
from pathlib import Path

import cloudpickle

from training.launchers import _horovod_worker

if __name__ == "__main__":
    spec = cloudpickle.loads(Path(sys.argv[1]).read_bytes())
    result = _horovod_worker(spec)
    if result is not None:
        Path(sys.argv[2]).write_bytes(cloudpickle.dumps(result))
