"""Feature hashing: MurmurHash3 x86 32-bit against published vectors and the ``mmh3`` package,
keys of named features, and the same coordinates from the hasher and the model."""

from __future__ import annotations

import math

import mmh3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optim import BatchError, ConfigError, FeatureHasher, OnlineLogisticRegression, murmurhash3_32
from optim.hashing import feature_key

# Published MurmurHash3_x86_32 test vectors (key, seed, hash); each also checked against mmh3.
VECTORS: list[tuple[str | bytes, int, int]] = [
    ("", 0, 0x00000000),
    ("", 1, 0x514E28B7),
    ("", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"\x21\x43\x65\x87", 0, 0xF55B516B),
    ("hello", 0, 0x248BFA47),
    ("aaaa", 0x9747B28C, 0x5A97808A),
    ("aaa", 0x9747B28C, 0x283E0130),
    ("aa", 0x9747B28C, 0x5D211726),
    ("a", 0x9747B28C, 0x7FA09EA6),
    ("abcd", 0x9747B28C, 0xF0478627),
    ("abc", 0x9747B28C, 0xC84A62DD),
    ("Hello, world!", 0x9747B28C, 0x24884CBA),
    ("The quick brown fox jumps over the lazy dog", 0, 0x2E4FF723),
    ("The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


@pytest.mark.parametrize("key, seed, expected", VECTORS)
def test_published_vectors(key: str | bytes, seed: int, expected: int) -> None:
    assert mmh3.hash(key, seed, signed=False) == expected  # the list itself is right
    assert murmurhash3_32(key, seed) == expected


def test_str_is_hashed_as_utf8() -> None:
    for key in ["été", "東京", "😀 emoji", "a\x00b"]:
        assert murmurhash3_32(key, 7) == murmurhash3_32(key.encode("utf-8"), 7)
        assert murmurhash3_32(key, 7) == mmh3.hash(key.encode("utf-8"), 7, signed=False)


def test_result_is_unsigned_32_bit() -> None:
    values = [murmurhash3_32(f"key{i}") for i in range(2000)]
    assert all(0 <= v < 2**32 for v in values)
    assert max(values) >= 2**31  # the high bit is used, not a signed result


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=64), st.integers(0, 2**32 - 1))
def test_matches_mmh3_on_unicode(key: str, seed: int) -> None:
    assert murmurhash3_32(key, seed) == mmh3.hash(key, seed, signed=False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 2**32 - 1))
def test_matches_mmh3_on_bytes(key: bytes, seed: int) -> None:
    assert murmurhash3_32(key, seed) == mmh3.hash(key, seed, signed=False)


# ----------------------------------------------------------------- FeatureHasher
@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=20), max_size=30),
    st.integers(1, 2**40),
    st.integers(0, 2**32 - 1),
)
def test_hasher_index_is_hash_mod_dim(keys: list[str], dim: int, seed: int) -> None:
    hasher = FeatureHasher(dim, seed)
    expected = [mmh3.hash(k, seed, signed=False) % dim for k in keys]
    got = hasher.indices(keys)
    assert got.dtype == np.int64
    assert got.tolist() == expected
    assert [hasher.index(k) for k in keys] == expected


def test_hasher_with_no_keys() -> None:
    assert FeatureHasher(8).indices([]).tolist() == []


@pytest.mark.parametrize(
    "dim, seed, field",
    [(0, 0, "dim"), (-3, 0, "dim"), (2.0, 0, "dim"), (8, -1, "hash_seed"), (8, 2**32, "hash_seed")],
)
def test_hasher_settings_are_checked(dim: object, seed: object, field: str) -> None:
    with pytest.raises(ConfigError) as error:
        FeatureHasher(dim, seed)  # type: ignore[arg-type]
    assert error.value.field == field


@pytest.mark.parametrize(
    "name, value, key, number",
    [
        ("IQ", 120, "IQ", 120.0),
        ("IQ", 120.5, "IQ", 120.5),
        ("IQ", np.int32(-3), "IQ", -3.0),
        ("IQ", np.float32(0.5), "IQ", 0.5),
        ("city", "paris", "city=paris", 1.0),
        ("city", "", "city=", 1.0),
        ("flag", True, "flag", 1.0),
        ("flag", False, "flag", 0.0),
        ("flag", np.bool_(True), "flag", 1.0),
        ("flag", np.bool_(False), "flag", 0.0),
    ],
)
def test_feature_key(name: str, value: object, key: str, number: float) -> None:
    got_key, got_number = feature_key(name, value)
    assert (got_key, got_number) == (key, number)
    assert type(got_number) is float


def test_hash_rows_uses_keys_and_values() -> None:
    hasher = FeatureHasher(2**20, seed=5)
    rows = [{"IQ": 120, "city": "paris"}, {"member": True}, {}, {"member": False}]
    indptr, indices, values, keys = hasher.hash_rows(rows)
    assert indptr.tolist() == [0, 2, 3, 3, 4]
    assert keys == ["IQ", "city=paris", "member", "member"]
    assert values.tolist() == [120.0, 1.0, 1.0, 0.0]
    assert indices.tolist() == [mmh3.hash(k, 5, signed=False) % 2**20 for k in keys]


def test_hash_rows_rejects_bad_values() -> None:
    hasher = FeatureHasher(16)
    with pytest.raises(BatchError) as error:
        hasher.hash_rows([{"a": 1}, {"b": math.nan}])
    assert (error.value.row, error.value.field) == (1, "features.b")


# ----------------------------------------------------------------- the model's hashing
@pytest.mark.parametrize("hash_seed", [0, 1, 12345, 2**32 - 1])
def test_model_feature_index_uses_the_hash_seed(hash_seed: int) -> None:
    model = OnlineLogisticRegression("adagrad", hash_bits=12, hash_seed=hash_seed)
    hasher = FeatureHasher(2**12, hash_seed)
    for key in ["IQ", "city=paris", "été", "x" * 100]:
        expected = mmh3.hash(key, hash_seed, signed=False) % 2**12
        assert model.feature_index(key) == expected == hasher.index(key)


def test_model_rows_land_on_feature_index() -> None:
    model = OnlineLogisticRegression("sgd", dim=1000, hash_seed=99)
    batch = model.to_batch([{"IQ": 120, "city": "paris"}])
    expected = sorted([model.feature_index("IQ"), model.feature_index("city=paris")])
    assert batch.indices.tolist() == expected
    assert dict(zip(batch.indices.tolist(), batch.values.tolist(), strict=True)) == {
        model.feature_index("IQ"): 120.0,
        model.feature_index("city=paris"): 1.0,
    }
    model.learn([{"IQ": 120, "city": "paris"}], [1])
    touched = np.flatnonzero(model.times_touched[: model.dim]).tolist()
    assert touched == expected
    inspected = model.inspect_coordinates(features=["IQ", "city=paris"])
    assert [c["index"] for c in inspected] == [
        model.feature_index("IQ"),
        model.feature_index("city=paris"),
    ]


def test_different_seeds_give_different_coordinates() -> None:
    a = OnlineLogisticRegression("sgd", hash_bits=20, hash_seed=0)
    b = OnlineLogisticRegression("sgd", hash_bits=20, hash_seed=1)
    keys = [f"feature{i}" for i in range(50)]
    assert [a.feature_index(k) for k in keys] != [b.feature_index(k) for k in keys]


@pytest.mark.parametrize("bad", ["", None, 3])
def test_model_feature_index_rejects_bad_names(bad: object) -> None:
    model = OnlineLogisticRegression("sgd", dim=16)
    with pytest.raises(BatchError) as error:
        model.feature_index(bad)  # type: ignore[arg-type]
    assert error.value.field == "features"
