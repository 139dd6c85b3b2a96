"""spark-submit entry point for the materialize_online job (same as `tidewater run materialize_online`).

    spark-submit jobs/materialize_online.py [--env local] [--root DIR]
"""

import sys

from features.online import MATERIALIZE_ONLINE
from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main(MATERIALIZE_ONLINE, sys.argv[1:]))
