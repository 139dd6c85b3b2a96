"""spark-submit entry point for the build_training_set job (same as `tidewater run build_training_set`).

    spark-submit jobs/build_training_set.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("build_training_set", sys.argv[1:]))
