"""Terminal output for commands and jobs: our progress lines on stderr, library noise off."""

from __future__ import annotations

import logging
import os
import sys
import time


def progress(message: str, stream=None) -> None:
    """Progress lines go to stderr (or `stream`) so stdout stays clean for --format json output."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=stream or sys.stderr, flush=True)


def configure_logging() -> None:
    debug = bool(os.environ.get("TIDEWATER_DEBUG"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not debug:
        # PySpark logs every JVM error it re-raises; the command already reports it in one line.
        for name in ("pyspark", "py4j", "PySparkLogger", "SQLQueryContextLogger"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        # GE and Soda narrate every run at INFO; our results table says what they found.
        for name in ("great_expectations", "soda", "soda_core"):
            logging.getLogger(name).setLevel(logging.WARNING)
