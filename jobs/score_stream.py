"""spark-submit entry point for the score_stream job (same as `tidewater run score_stream`).

    spark-submit jobs/score_stream.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("score_stream", sys.argv[1:]))
