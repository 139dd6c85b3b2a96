"""spark-submit entry point for the refine_silver job (same as `tidewater run refine_silver`).

    spark-submit jobs/refine_silver.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("refine_silver", sys.argv[1:]))
