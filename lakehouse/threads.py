"""Work a job overlaps in threads of its own: on two cores much of a small Spark job is planning,
scheduling and Delta's commit, which overlap well with other work."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

T = TypeVar("T")


def side_by_side(tasks: list[Callable[[], T]], name: str = "side-by-side") -> list[T]:
    """Run the tasks in threads of their own and wait for all: their results in order; the first
    failure is raised once every task has ended."""
    if len(tasks) <= 1:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix=name) as pool:
        futures = [pool.submit(task) for task in tasks]
    return [future.result() for future in futures]
