"""spark-submit entry point for the review_deployment job (same as `tidewater run review_deployment`).

    spark-submit jobs/review_deployment.py [--env local] [--root DIR] [job options]
"""

import sys

from lakehouse.job_runner import main

if __name__ == "__main__":
    sys.exit(main("review_deployment", sys.argv[1:]))
