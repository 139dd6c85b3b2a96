"""spark-submit entry point for the quarantine_replay job (same as `tidewater run quarantine_replay`).

    spark-submit jobs/quarantine_replay.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("quarantine_replay", sys.argv[1:]))
