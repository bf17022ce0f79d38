"""Which features a row gives: namespaces ignored or kept, and interactions (crossed features).

As Vowpal Wabbit's ``--ignore``, ``--keep`` and ``-q``/``--interactions``. A namespace is named by
one character, the first of its name: VW text's ``|ads:2 x`` is in namespace ``a``, the unnamed
namespace (``| x``) is ``" "``; in Criteo TSV the integer columns are namespace ``I`` and the
categorical ones ``C``; in named JSON/NDJSON rows a feature ``"a^x"`` is in namespace ``a`` and one
without ``^`` in ``" "``.

``interactions`` lists strings of two or three namespaces (``["ab", "cc", "abc"]``), taken as VW
takes them: one that repeats an earlier one in another order (``"ba"`` after ``"ab"``) is dropped,
and a triple with one namespace twice is sorted (``"aba"`` is ``"aab"``). Each adds,
after a row's own features, the crossed features of the features of those namespaces in the row
(see :func:`optim.formats._scan.cross_row` for the hash and the pairs of one namespace with
itself); a cross's value is the product of its features' values and its name is theirs joined by
``*`` (``a^x*b^y``). ``ignore`` drops the features of the namespaces it lists (from crosses too);
``keep`` drops those of every other namespace. This module imports no compiled code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optim.errors import ConfigError

DEFAULT_MAX_NAMES = 1_000_000  # feature names a parser or a model remembers, by default
MAX_INTERACTIONS = 64
FNV_PRIME = 16777619  # VW's pair hash: (FNV_PRIME * x) ^ y, 64-bit
MASK64 = (1 << 64) - 1


def _namespaces(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise ConfigError(f"must be a list of one-character namespaces, got {value!r}", field=field)
    out = []
    for item in value:
        if not isinstance(item, str) or len(item) != 1 or ord(item) > 255 or item == "\n":
            raise ConfigError(
                f"namespaces are single characters (a byte), got {item!r}", field=field
            )
        out.append(item)
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class FeatureOptions:
    """Validated ``interactions``, ``ignore`` and ``keep`` (see the module docstring)."""

    interactions: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, interactions: object = None, ignore: object = None, keep: object = None
    ) -> FeatureOptions:
        crosses: list[str] = []
        if interactions is not None:
            if isinstance(interactions, str) or not isinstance(interactions, Iterable):
                raise ConfigError(
                    f'must be a list of strings such as ["ab", "abc"], got {interactions!r}',
                    field="interactions",
                )
            for item in interactions:
                if (
                    not isinstance(item, str)
                    or not 2 <= len(item) <= 3
                    or any(ord(ch) > 255 or ch == "\n" for ch in item)
                ):
                    raise ConfigError(
                        f"each interaction is 2 or 3 one-byte namespaces, got {item!r}",
                        field="interactions",
                    )
                if len(set(item)) == 2 and len(item) == 3:
                    item = "".join(sorted(item))  # VW groups a repeated namespace: "aba" is "aab"
                if all(sorted(item) != sorted(known) for known in crosses):
                    crosses.append(item)  # VW drops a permutation of an earlier one ("ba": "ab")
            if len(crosses) > MAX_INTERACTIONS:
                raise ConfigError(
                    f"at most {MAX_INTERACTIONS} interactions, got {len(crosses)}",
                    field="interactions",
                )
        ignored, kept = _namespaces(ignore, "ignore"), _namespaces(keep, "keep")
        if ignored and kept:
            raise ConfigError("give ignore or keep, not both", field="keep")
        return cls(tuple(crosses), ignored, kept)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FeatureOptions:
        return cls.of(config.get("interactions"), config.get("ignore"), config.get("keep"))

    def config(self) -> dict[str, list[str]]:
        """The options as a model's config holds them (only those set)."""
        out = {"interactions": list(self.interactions), "ignore": list(self.ignore),
               "keep": list(self.keep)}  # fmt: skip
        return {k: v for k, v in out.items() if v}

    def __bool__(self) -> bool:
        return bool(self.interactions or self.ignore or self.keep)

    def keep_table(self) -> np.ndarray:
        """1 for each namespace byte whose features a row keeps."""
        table = np.ones(256, dtype=np.uint8)
        if self.keep:
            table[:] = 0
            table[[ord(ch) for ch in self.keep]] = 1
        table[[ord(ch) for ch in self.ignore]] = 0
        return table

    def interaction_array(self) -> np.ndarray:
        """The interactions as rows of namespace bytes (-1: a pair's missing third)."""
        out = np.full((len(self.interactions), 3), -1, dtype=np.int64)
        for t, item in enumerate(self.interactions):
            out[t, : len(item)] = [ord(ch) for ch in item]
        return out

    def namespace_of(self, name: str) -> str:
        """The namespace of a named JSON feature: what precedes its first ``^``, or ``" "``."""
        head, sep, _ = name.partition("^")
        return head[:1] if sep and head else " "

    def expand_row(
        self, keys: list[str], values: list[float], coordinates: list[int], dim: int
    ) -> tuple[list[str], list[float], list[int]]:
        """A named row's features with the namespaces ignored or not kept left out and its
        crossed features appended, as the compiled kernels generate them for text rows (the same
        coordinates, values and names)."""
        keep = self.keep_table()
        kept = [k for k, key in enumerate(keys) if keep[ord(self.namespace_of(key))]]
        keys = [keys[k] for k in kept]
        values = [values[k] for k in kept]
        coordinates = [coordinates[k] for k in kept]
        groups: dict[str, list[int]] = {}
        for k, key in enumerate(keys):
            groups.setdefault(self.namespace_of(key), []).append(k)
        out_keys, out_values, out_coordinates = list(keys), list(values), list(coordinates)
        for item in self.interactions:
            a, b = groups.get(item[0], []), groups.get(item[1], [])
            c = groups.get(item[2], []) if len(item) == 3 else None
            for i, x in enumerate(a):
                hx = FNV_PRIME * coordinates[x]
                for j in range(i if item[1] == item[0] else 0, len(b)):
                    y = b[j]
                    h2 = (hx ^ coordinates[y]) & MASK64
                    if c is None:
                        out_keys.append(f"{keys[x]}*{keys[y]}")
                        out_values.append(values[x] * values[y])
                        out_coordinates.append(h2 % dim)
                        continue
                    for k in range(j if item[2] == item[1] else 0, len(c)):
                        z = c[k]
                        out_keys.append(f"{keys[x]}*{keys[y]}*{keys[z]}")
                        out_values.append(values[x] * values[y] * values[z])
                        out_coordinates.append(((FNV_PRIME * h2) & MASK64 ^ coordinates[z]) % dim)
        return out_keys, out_values, out_coordinates
