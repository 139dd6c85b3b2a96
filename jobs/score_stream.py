"""spark-submit entry point for the score_stream job (same as `tidewater run score_stream`).

    spark-submit jobs/score_stream.py [--env local] [--root DIR] [--continuous]

`tidewater stream start|status|stop` runs it in the background for a user at a terminal.
"""

import sys

from lakehouse.job_runner import main
from scoring.stream import SCORE_STREAM

if __name__ == "__main__":
    sys.exit(main(SCORE_STREAM, sys.argv[1:]))
