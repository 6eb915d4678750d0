"""The one registry pattern: names -> things, filled by discovery of a package and by ``register``.

Detector kinds (:mod:`glomkit.kinds`), segmenter architectures (:mod:`glomkit.nets.segmenters`)
and bundled weights (:mod:`glomkit.models.registry`) are all a :class:`Registry`. An unknown name
is a one-line :class:`~glomkit.GlomkitError` that lists the known ones.

>>> r = Registry("colour")
>>> r.register("red", (255, 0, 0))
(255, 0, 0)
>>> r.get("red"), r.names()
((255, 0, 0), ['red'])
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from glomkit import GlomkitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named items of one sort (``what`` names the sort in errors).

    ``package`` and ``attr``: on first use, every module of that package that defines ``attr``
    contributes it, under ``key(item)`` (default: the item's ``name``). ``register`` adds more
    (a plugin, or a test); a later registration under a known name replaces the earlier one.
    """

    def __init__(
        self,
        what: str,
        package: str | None = None,
        attr: str | None = None,
        key: Callable[[T], str] = lambda item: item.name,  # type: ignore[attr-defined]
    ) -> None:
        self.what = what
        self._package = package
        self._attr = attr
        self._key = key
        self._items: dict[str, T] = {}
        self._found = package is None

    def _discover(self) -> None:
        if self._found:
            return
        self._found = True
        pkg = importlib.import_module(self._package)  # type: ignore[arg-type]
        found: dict[str, T] = {}
        for mod in pkgutil.iter_modules(pkg.__path__):
            item = getattr(importlib.import_module(f"{self._package}.{mod.name}"), self._attr or "", None)
            if item is not None:
                found[self._key(item)] = item
        self._items = {**found, **self._items}  # what was registered before discovery wins

    def register(self, name: str, item: T) -> T:
        """Add ``item`` under ``name``; returns it (usable as a decorator's body)."""
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that registered a kind of their own clean up with this)."""
        self._discover()
        self._items.pop(name, None)

    def get(self, name: str, where: object = "") -> T:
        """The item called ``name``; an unknown name is an error naming ``where`` and the known names."""
        self._discover()
        if name not in self._items:
            prefix = f"{where}: " if where else ""
            raise GlomkitError(f"{prefix}unknown {self.what} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """Every known name, sorted."""
        self._discover()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        """(name, item) pairs, sorted by name."""
        self._discover()
        return iter(sorted(self._items.items()))

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._items
