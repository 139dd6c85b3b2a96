"""spark-submit entry point for the compute_features job (same as `tidewater run compute_features`).

    spark-submit jobs/compute_features.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("compute_features", sys.argv[1:]))
