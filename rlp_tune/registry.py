"""Name → factory registries (timm-style): `@register_model`, `create_model(name)`, `list_models(pattern)`.

    MODELS = Registry("model")
    @MODELS.register("mlp")
    def mlp(cfg, in_shape, num_classes): ...
    MODELS.create("mlp", cfg, in_shape=(1, 8, 8), num_classes=10)

An entry may be any object (a typed spec, not only a factory): `REG.add(name, spec)`. `remove(name)`
takes one out again (a test that registers a toy entry cleans up after itself).

A key ending in ":" registers a family of names: `@MODELS.register("timm:")` serves every
"timm:<anything>"; the factory reads the rest of the name itself. An unknown name raises
`RegistryError` listing the closest registered names.
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable

from .errors import UserError


class RegistryError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it one readable line
        return str(self.args[0])


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable:
        def deco(fn):
            self.add(name or fn.__name__, fn)
            return fn
        return deco

    def add(self, name: str, entry: Any) -> Any:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = entry
        return entry

    def remove(self, name: str) -> None:
        self._items.pop(name, None)

    def get(self, name: str) -> Callable[..., Any]:
        key = self._key(name)
        if key is None:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})")
        return self._items[key]

    def _key(self, name: str) -> str | None:
        """The registered key serving `name`: itself, or its family "prefix:"; None if neither."""
        if name in self._items:
            return name
        family = name.partition(":")[0] + ":"
        return family if ":" in name and family in self._items else None

    def create(self, name: str, *args, **kwargs) -> Any:
        return self.get(name)(*args, **kwargs)

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: str) -> bool:
        return self._key(name) is not None
