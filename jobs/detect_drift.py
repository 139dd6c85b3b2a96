"""spark-submit entry point for the detect_drift job (same as `tidewater run detect_drift`).

    spark-submit jobs/detect_drift.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("detect_drift", sys.argv[1:]))
