"""Threaded tile reading: tiles are decoded in background threads while the model computes."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch_map(
    fn: Callable[[T], R], items: Iterable[T], threads: int = 2, depth: int = 8
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in order, running ``fn`` ahead in ``threads`` threads.

    At most ``depth`` results wait in memory, so memory stays bounded however many items come.
    """
    it = iter(items)
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="glomkit-read") as pool:
        for item in it:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= depth:
                break
        while pending:
            item, fut = pending.popleft()
            result = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, nxt)))
            yield item, result
