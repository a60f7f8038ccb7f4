"""One registry type for every pluggable part: methods, metrics, datasets, models, strategies,
proxies and forget kinds.

A registry maps a name to an object plus metadata (what the object needs, whether a method takes
epochs, its search space, ...). Registering a name twice is an error everywhere; looking up an
unknown name raises a :class:`~memunlearn.errors.ConfigError` that lists the known names.

Example:
    >>> shapes = Registry("shape")
    >>> @shapes.register("square", sides=4)
    ... def square(size):
    ...     return size * size
    >>> shapes.get("square")(3), shapes.entry("square").metadata["sides"]
    (9, 4)
    >>> shapes.get("circle")
    Traceback (most recent call last):
    ...
    memunlearn.errors.ConfigError: unknown shape 'circle'; known: square
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, TypeVar

from .errors import ConfigError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object and what the registry knows about it."""

    name: str
    obj: T
    metadata: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name → object (+ metadata), in registration order.

    Args:
        kind: what the registry holds, as a user would say it ("method", "proxy", ...); used in
            error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, **metadata: Any) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, return a decorator that does.

        Raises:
            ConfigError: ``name`` is already registered.
        """
        def add(item: T) -> T:
            if name in self._entries:
                raise ConfigError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = Entry(name, item, dict(metadata))
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and plug-ins that replace themselves)."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        if name not in self._entries:
            raise unknown_name(self.kind, name, self._entries)
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

