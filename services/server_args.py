"""The command line of a server process the stack starts with `python -m`: which root, env and conf."""

from __future__ import annotations

import argparse


def server_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    parser.add_argument("--env")
    parser.add_argument("--root")
    parser.add_argument("--conf-dir")
    return parser


def server_args(prog: str, description: str, argv: list[str] | None = None) -> argparse.Namespace:
    return server_parser(prog, description).parse_args(argv)
