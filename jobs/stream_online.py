"""spark-submit entry point for the stream_online job (same as `tidewater run stream_online`).

    spark-submit jobs/stream_online.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("stream_online", sys.argv[1:]))
