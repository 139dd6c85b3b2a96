"""spark-submit entry point for the materialize_online job (same as `tidewater run materialize_online`).

    spark-submit jobs/materialize_online.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("materialize_online", sys.argv[1:]))
