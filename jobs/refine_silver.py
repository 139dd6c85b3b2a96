"""spark-submit entry point for the refine_silver job (same as `tidewater run refine_silver`).

    spark-submit jobs/refine_silver.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main
from lakehouse.silver import REFINE_SILVER

if __name__ == "__main__":
    sys.exit(main(REFINE_SILVER, sys.argv[1:]))
