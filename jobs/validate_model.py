"""spark-submit entry point for the validate_model job (same as `tidewater run validate_model`).

    spark-submit jobs/validate_model.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("validate_model", sys.argv[1:]))
