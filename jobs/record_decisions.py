"""spark-submit entry point for the record_decisions job (same as `tidewater run record_decisions`).

    spark-submit jobs/record_decisions.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("record_decisions", sys.argv[1:]))
