"""spark-submit entry point for the ingest_bronze job (same as `tidewater run ingest_bronze`).

    spark-submit jobs/ingest_bronze.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("ingest_bronze", sys.argv[1:]))
