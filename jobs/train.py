"""spark-submit entry point for the train job (same as `tidewater run train`).

Run it with the training environment's Spark so driver and executors get torch, Horovod and Petastorm:

    .venv-train/bin/spark-submit --conf spark.pyspark.python=.venv-train/bin/python jobs/train.py [--env local]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("train", sys.argv[1:]))
