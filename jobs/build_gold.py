"""spark-submit entry point for the build_gold job (same as `tidewater run build_gold`).

    spark-submit jobs/build_gold.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("build_gold", sys.argv[1:]))
