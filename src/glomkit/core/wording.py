"""Counted nouns in printed lines: "1 glomerulus", "2 glomeruli", "1 slide"."""

from __future__ import annotations

IRREGULAR = {"glomerulus": "glomeruli"}


def count_of(n: int, noun: str) -> str:
    """``n`` and ``noun``, singular for exactly one, else plural (``glomerulus`` -> ``glomeruli``)."""
    return f"{n} {noun if n == 1 else IRREGULAR.get(noun, noun + 's')}"
