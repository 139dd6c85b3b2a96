"""spark-submit entry point for the continuous_training job (same as `tidewater run continuous_training`).

    spark-submit jobs/continuous_training.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("continuous_training", sys.argv[1:]))
