"""spark-submit entry point for the build_gold job (same as `tidewater run build_gold`).

    spark-submit jobs/build_gold.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main
from lakehouse.gold import BUILD_GOLD

if __name__ == "__main__":
    sys.exit(main(BUILD_GOLD, sys.argv[1:]))
