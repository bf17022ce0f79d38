"""Feature hashing: MurmurHash3 (x86, 32-bit) of a feature's UTF-8 name, modulo the dimension.

A numeric value ``{"IQ": 120}`` is feature ``IQ`` with value 120; a string value
``{"city": "paris"}`` is feature ``city=paris`` with value 1. The same names give the same
coordinates in training, prediction and inspection, so a coordinate can be looked up by name.

The rules of every format (:func:`coordinates_of` finds a name's coordinate by them):

* a named key (named rows, NDJSON ``IQ``/``city=paris``, VW text ``ns^f`` or ``f`` in the unnamed
  namespace, Criteo ``Ii``/``Cj=h``): ``murmurhash3_32(key, seed) % dim``;
* a VW feature named by digits, as VW's ``hashstring``: ``(number + namespace hash) mod 2**32 %
  dim``, the namespace hash being ``murmurhash3_32(ns, seed)`` (``murmurhash3_32("", seed)``, 0
  for seed 0, for the unnamed namespace; a namespace of digits: its number plus ``seed``), so
  ``| 3133:1`` is coordinate 3133 as libsvm's ``3133:1``;
* a cross of features at coordinates ``x``, ``y`` (``z``), as VW's ``-q``: ``((16777619 * x) ^
  y)`` in 64 bits (then ``(16777619 * that) ^ z``), modulo ``dim``; see :mod:`optim.features`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numba as nb
import numpy as np

from optim.errors import BatchError, ConfigError
from optim.features import FNV_PRIME, MASK64, FeatureOptions

_MASK32 = np.uint64(0xFFFFFFFF)


@nb.njit(inline="always")
def _rotl32(x: np.uint64, r: int) -> np.uint64:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & _MASK32


@nb.njit(inline="always")
def _mix_block(k: np.uint64) -> np.uint64:
    k = (k * np.uint64(0xCC9E2D51)) & _MASK32
    k = _rotl32(k, 15)
    return (k * np.uint64(0x1B873593)) & _MASK32


@nb.njit(nogil=True, cache=True)
def _murmur3_32(data: np.ndarray, start: int, stop: int, seed: int) -> np.uint64:
    h = np.uint64(seed) & _MASK32
    length = stop - start
    n_blocks = length // 4
    for b in range(n_blocks):
        p = start + 4 * b
        k = (
            np.uint64(data[p])
            | (np.uint64(data[p + 1]) << np.uint64(8))
            | (np.uint64(data[p + 2]) << np.uint64(16))
            | (np.uint64(data[p + 3]) << np.uint64(24))
        )
        h ^= _mix_block(k)
        h = _rotl32(h, 13)
        h = (h * np.uint64(5) + np.uint64(0xE6546B64)) & _MASK32
    tail = start + 4 * n_blocks
    rest = length & 3
    if rest:
        k = np.uint64(0)
        if rest == 3:
            k ^= np.uint64(data[tail + 2]) << np.uint64(16)
        if rest >= 2:
            k ^= np.uint64(data[tail + 1]) << np.uint64(8)
        k ^= np.uint64(data[tail])
        h ^= _mix_block(k)
    h ^= np.uint64(length)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & _MASK32
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & _MASK32
    h ^= h >> np.uint64(16)
    return h


@nb.njit(nogil=True, cache=True)
def _hash_many(data: np.ndarray, offsets: np.ndarray, seed: int, dim: int) -> np.ndarray:
    out = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    for i in range(out.shape[0]):
        out[i] = np.int64(_murmur3_32(data, offsets[i], offsets[i + 1], seed) % np.uint64(dim))
    return out


def murmurhash3_32(key: str | bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit of ``key`` (UTF-8 for ``str``) as an unsigned int."""
    data = np.frombuffer(key.encode() if isinstance(key, str) else key, dtype=np.uint8)
    return int(_murmur3_32(data, 0, data.shape[0], seed & 0xFFFFFFFF))


def feature_key(name: str, value: object) -> tuple[str, float]:
    """The hashed key and numeric value of one named feature (see the module docstring)."""
    if isinstance(value, str):
        return f"{name}={value}", 1.0
    if isinstance(value, bool | np.bool_):
        return name, float(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return name, float(value)
    raise TypeError(f"value must be a number or a string, got {type(value).__name__}")


class FeatureHasher:
    """Maps feature names to coordinates ``murmurhash3_32(name, seed) % dim``."""

    def __init__(self, dim: int, seed: int = 0) -> None:
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise ConfigError(f"must be a positive integer, got {dim!r}", field="dim")
        if not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
            raise ConfigError(f"must be an integer in [0, 2**32), got {seed!r}", field="hash_seed")
        self.dim = int(dim)
        self.seed = int(seed)

    def indices(self, keys: Iterable[str]) -> np.ndarray:
        """Coordinates of many feature keys at once (one compiled call)."""
        encoded = [k.encode() for k in keys]
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        return _hash_many(data, offsets, self.seed, self.dim)

    def index(self, key: str) -> int:
        """Coordinate of one feature key."""
        return int(self.indices([key])[0])

    def hash_rows(
        self, rows: Iterable[Mapping[str, object]], features: FeatureOptions | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """CSR arrays (indptr, indices, values) and the keys of rows of named features (with
        ``features``' namespaces left out and crosses added: :mod:`optim.features`).

        Duplicates are left in place; :class:`optim.batch.Batch` sums them.
        """
        keys: list[str] = []
        values: list[float] = []
        coordinates: list[int] = []
        indptr = [0]
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise BatchError(
                    f"a row must map feature names to values, got {type(row).__name__}",
                    row=r,
                    field="features",
                )
            for name, value in row.items():
                if not isinstance(name, str) or not name:
                    raise BatchError(
                        f"feature names must be non-empty strings, got {name!r}",
                        row=r,
                        field="features",
                    )
                try:
                    key, number = feature_key(name, value)
                except (TypeError, OverflowError) as exc:
                    raise BatchError(str(exc), row=r, field=f"features.{name}") from None
                if not np.isfinite(number):
                    raise BatchError(
                        f"value must be finite, got {value!r}", row=r, field=f"features.{name}"
                    )
                keys.append(key)
                values.append(number)
            if features:
                start = indptr[-1]
                row_keys, row_values, row_coordinates = features.expand_row(
                    keys[start:], values[start:], self.indices(keys[start:]).tolist(), self.dim
                )
                keys[start:], values[start:] = row_keys, row_values
                coordinates[start:] = row_coordinates
            indptr.append(len(keys))
        return (
            np.asarray(indptr, dtype=np.int64),
            np.asarray(coordinates, dtype=np.int64) if features else self.indices(keys),
            np.asarray(values, dtype=np.float64),
            keys,
        )


def _vw_hash(text: str, seed: int) -> int:
    """VW's ``hashstring``: a name of digits is its number plus ``seed`` (mod 2**32), any other
    name its MurmurHash3 with ``seed``."""
    if text.isascii() and text.isdigit():
        return (int(text) + seed) & 0xFFFFFFFF
    return murmurhash3_32(text, seed)


def _digits_hash(key: str, seed: int) -> int | None:
    """The hash of a VW feature named by digits (``"3133"``, ``"ns^3133"``), or ``None``."""
    namespace, sep, feature = key.rpartition("^")
    if not (feature.isascii() and feature.isdigit()) or (sep and not namespace):
        return None
    return (int(feature) + _vw_hash(namespace, seed)) & 0xFFFFFFFF


def coordinates_of(name: str, hasher: FeatureHasher) -> list[int]:
    """The coordinates a feature name may have, most specific first: by the digits rule of VW
    text (a name of digits), as a cross of VW text or of named rows (``a^x*b^y``), and as a
    hashed key (every format)."""
    dim, seed = hasher.dim, hasher.seed
    found = []
    digits = _digits_hash(name, seed)
    if digits is not None:
        found.append(digits % dim)
    parts = name.split("*")
    if 2 <= len(parts) <= 3 and all(parts):
        cross = 0
        for k, part in enumerate(parts):
            hashed = _digits_hash(part, seed)
            index = (hashed if hashed is not None else murmurhash3_32(part, seed)) % dim
            cross = index if k == 0 else ((FNV_PRIME * cross) & MASK64) ^ index
        found.append(cross % dim)
    found.append(hasher.index(name))
    return list(dict.fromkeys(found))
