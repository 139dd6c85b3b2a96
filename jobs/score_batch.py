"""spark-submit entry point for the score_batch job (same as `tidewater run score_batch`).

    spark-submit jobs/score_batch.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("score_batch", sys.argv[1:]))
