"""spark-submit entry point for the score_batch job (same as `tidewater run score_batch`).

    spark-submit jobs/score_batch.py [--env local] [--root DIR] [--alias champion] [--since D] [--until D]
"""

import sys

from lakehouse.job_runner import main
from scoring.batch import SCORE_BATCH

if __name__ == "__main__":
    sys.exit(main(SCORE_BATCH, sys.argv[1:]))
