"""spark-submit entry point for the build_training_set job (same as `tidewater run build_training_set`).

    spark-submit jobs/build_training_set.py [--env local] [--root DIR]
"""

import sys

from features.training_set import BUILD_TRAINING_SET
from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main(BUILD_TRAINING_SET, sys.argv[1:]))
