"""spark-submit entry point for the compute_features job (same as `tidewater run compute_features`).

    spark-submit jobs/compute_features.py [--env local] [--root DIR]
"""

import sys

from features.offline import COMPUTE_FEATURES
from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main(COMPUTE_FEATURES, sys.argv[1:]))
