"""spark-submit entry point for the detect_drift job (same as `tidewater run detect_drift`).

    spark-submit jobs/detect_drift.py [--env local] [--root DIR] [--since D] [--until D]
"""

import sys

from lakehouse.job_runner import main
from scoring.drift_job import DETECT_DRIFT

if __name__ == "__main__":
    sys.exit(main(DETECT_DRIFT, sys.argv[1:]))
