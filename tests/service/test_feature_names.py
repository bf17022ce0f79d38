"""Names from every format, VW's rule for names of digits, and inspection of unseen features."""

from __future__ import annotations

import importlib.util
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from optim import ConfigError, FeatureHasher, OnlineLogisticRegression
from optim.formats import StreamParser, parse_bytes
from optim.formats._scan import MAX_OWNER_SLOTS
from optim.hashing import coordinates_of, murmurhash3_32
from service.app import create_app
from service.settings import Settings
from service.storage import encode_batch, read_records

HAS_VW = importlib.util.find_spec("vowpalwabbit") is not None
DIM = 1 << 18


def test_libsvm_and_vw_text_train_the_same_coordinates() -> None:
    libsvm = b"1 3:0.5 17:2 3133:1\n0 9:1.5\n"
    vw = b"1 | 3:0.5 17:2 3133:1\n0 | 9:1.5\n"
    a, b = parse_bytes(libsvm, "libsvm", dim=DIM), parse_bytes(vw, "vw", dim=DIM)
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.values, b.values)
    assert b.feature_names == {"3": 3, "17": 17, "3133": 3133, "9": 9}


def test_digits_rule_in_named_namespaces_and_with_a_seed() -> None:
    hasher = FeatureHasher(1000, seed=7)
    batch = parse_bytes(b"1 |ns 42 x 007 |12 5\n", "vw", dim=1000, hash_seed=7)
    ns = murmurhash3_32("ns", 7)
    expected = {
        "ns^42": (42 + ns) % 2**32 % 1000,
        "ns^x": hasher.index("ns^x"),  # not digits: the key "ns^x", hashed
        "ns^007": (7 + ns) % 2**32 % 1000,
        "12^5": (5 + 12 + 7) % 1000,  # a namespace of digits is its number plus the seed (VW)
    }
    assert batch.feature_names == expected
    for name, index in expected.items():
        assert coordinates_of(name, hasher)[0] == index
    huge = parse_bytes(b"1 | 99999999999999999999999\n", "vw", dim=DIM)
    assert huge.indices[0] == (99999999999999999999999 % 2**64) % 2**32 % DIM  # VW's wrap


@pytest.mark.skipif(not HAS_VW, reason="vowpalwabbit is not installed (the oracle)")
def test_digits_rule_as_vw(tmp_path: Path) -> None:
    from vowpalwabbit import pyvw

    rows = ["1 | 3133:1 12 77", "-1 |ns 42 9 | 5", "1 |x 3133 |12 5"]
    readable = tmp_path / "readable.txt"
    vw = pyvw.Workspace(f"--quiet -b 18 --noconstant --readable_model {readable}")
    for row in rows:
        vw.learn(row)
    vw.finish()
    weights = re.compile(r"(\d+):[-+0-9.eE]+( |$)")
    matches = (weights.match(line) for line in readable.read_text().splitlines())
    expected = {int(m.group(1)) for m in matches if m}
    batch = parse_bytes(("\n".join(rows) + "\n").encode(), "vw", dim=DIM)
    assert set(batch.indices.tolist()) == expected


def test_names_of_every_format() -> None:
    vw = parse_bytes(b"1 |user age:3 city=paris |ad:2 id7\n", "vw", dim=DIM)
    hasher = FeatureHasher(DIM)
    assert vw.feature_names == {
        k: hasher.index(k) for k in ("user^age", "user^city=paris", "ad^id7")
    }
    line = "\t".join(["1", "3", "", "-2"] + [""] * 10 + ["abc", "", "de"] + [""] * 23) + "\n"
    criteo = parse_bytes(line.encode(), "criteo", dim=DIM)
    assert criteo.feature_names == {k: hasher.index(k) for k in ("I1", "I3", "C1=abc", "C3=de")}
    ndjson = parse_bytes(
        b'{"features": {"u^a": 1, "city": "rome"}, "label": 1}\n', "ndjson", dim=DIM
    )
    assert ndjson.feature_names == {
        "u^a": hasher.index("u^a"),
        "city=rome": hasher.index("city=rome"),
    }
    assert parse_bytes(b"1 3:1\n", "libsvm", dim=DIM).feature_names is None


def lines_of_many_names(n: int) -> bytes:
    return "".join(f"{k % 2} |f n{k} m{k % 7}\n" for k in range(n)).encode()


def test_many_names_recorded_once_whatever_the_chunks() -> None:
    """More names than the first set and spans hold: they grow; each name is reported once."""
    data = lines_of_many_names(20_000)
    whole = parse_bytes(data, "vw", dim=DIM)
    assert len(whole.feature_names) == 20_007
    parser = StreamParser("vw", dim=DIM, max_rows_per_batch=3_000)
    names: dict[str, int] = {}
    for start in range(0, len(data), 7_777):
        for batch in parser.feed(data[start : start + 7_777]):
            assert not set(batch.feature_names or {}) & set(names)  # new names only
            names.update(batch.feature_names or {})
    assert names == whole.feature_names


def test_names_of_coordinates_sharing_an_owner_slot_are_both_recorded() -> None:
    """Past 2**20 coordinates, coordinates equal modulo 2**20 share the parser's owner slot:
    two names there are two names (each recorded once, at its own coordinate), not a collision."""
    dim = 1 << 23
    hasher = FeatureHasher(dim)
    candidates = [f"x{k}" for k in range(20_000)]
    by_slot: dict[int, str] = {}
    pair = None
    for name, index in zip(candidates, hasher.indices(candidates).tolist(), strict=True):
        other = by_slot.setdefault(index % MAX_OWNER_SLOTS, name)
        if other != name and hasher.index(other) != index:
            pair = (other, name)
            break
    assert pair is not None
    a, b = pair
    parser = StreamParser("vw", dim=dim)
    batches = parser.feed(f"1 | {a} {b}\n0 | {b} {a} {b}\n1 | {a}\n".encode()) + parser.finish()
    names = [n for batch in batches for n in (batch.feature_names or {}).items()]
    assert sorted(names) == sorted([(a, hasher.index(a)), (b, hasher.index(b))])
    model = OnlineLogisticRegression("adagrad", dim=dim)
    for batch in batches:
        model.learn(batch)
    assert model.name_collisions == set()


def test_every_name_at_a_shared_coordinate_is_recorded_once() -> None:
    parser = StreamParser("vw", dim=1)
    batches = parser.feed(b"1 | a b c\n0 | c a d\n1 | d b e a\n") + parser.finish()
    names = [n for batch in batches for n in (batch.feature_names or {})]
    assert sorted(names) == ["a", "b", "c", "d", "e"]


def test_names_are_bounded_per_parser() -> None:
    parser = StreamParser("vw", dim=DIM, max_names=100)
    batches = parser.feed(lines_of_many_names(1_000)) + parser.finish()
    names = {k: v for b in batches for k, v in (b.feature_names or {}).items()}
    assert len(names) == 100 and names == dict(list(names.items())[:100])
    assert "f^n0" in names and "f^m0" in names
    assert sum(b.nnz for b in batches) == 2_000  # bounded names, every feature learned


def test_model_keeps_the_first_name_and_counts_collisions() -> None:
    model = OnlineLogisticRegression("adagrad", dim=4, max_feature_names=1_000)
    parser = StreamParser("vw", dim=4)
    for batch in parser.feed(lines_of_many_names(40)) + parser.finish():
        model.learn(batch)
    assert len(model.feature_names) == 4  # one name per coordinate: the first seen there
    first = {}
    for k in range(40):
        for name in (f"f^n{k}", f"f^m{k % 7}"):
            first.setdefault(model.hasher.index(name), name)
    assert model.feature_names == first
    assert model.name_collisions == {0, 1, 2, 3}
    assert model.rate_summary()["names"] == {"remembered": 4, "collided": 4}


def test_inspection_says_never_seen_and_shared() -> None:
    model = OnlineLogisticRegression("adagrad", dim=DIM, interactions=["ua"])
    model.learn(parse_bytes(b"1 |user age:2 |ad id7\n0 | 3133\n", "vw", dim=DIM,
                            features=model.features))  # fmt: skip
    by_name = model.inspect_coordinates(features=["user^age", "3133", "user^age*ad^id7", "nope"])
    age, digits, cross, nope = by_name
    assert age["seen"] and age["times_touched"] == 1 and age["weight"] != 0
    assert digits["index"] == 3133 and digits["seen"]
    assert cross["seen"] and cross["index"] == coordinates_of("user^age*ad^id7", model.hasher)[0]
    assert not nope["seen"] and nope["weight"] is None and nope["effective_learning_rate"] is None
    assert "shared_with" not in nope
    # a name never seen at a coordinate another name holds: shared, not that one's numbers
    small = OnlineLogisticRegression("adagrad", dim=2)
    small.learn(parse_bytes(b"1 | a\n", "vw", dim=2))
    other = next(
        n for n in (f"x{k}" for k in range(99)) if small.hasher.index(n) == small.feature_index("a")
    )
    (shared,) = small.inspect_coordinates(features=[other])
    assert shared["shared_with"] == "a" and not shared["seen"] and shared["weight"] is None
    # once two names were seen there, both are seen, and shared
    small.learn(parse_bytes(f"0 | {other}\n".encode(), "vw", dim=2))
    (shared,) = small.inspect_coordinates(features=[other])
    assert shared["shared_with"] == "a" and shared["seen"] and shared["times_touched"] == 2
    (by_index,) = small.inspect_coordinates(indices=[1 - small.feature_index("a")])
    assert not by_index["seen"] and by_index["weight"] == 0.0  # by index: the coordinate's own


def test_names_are_logged_with_the_batch_and_exported(tmp_path: Path) -> None:
    batch = parse_bytes(b"1 |user age:2 |ad id7\n", "vw", dim=DIM)
    log = tmp_path / "wal"
    log.write_bytes(encode_batch(batch, 0))
    ((_, _, decoded),), _, problem = read_records(log)
    assert problem is None and decoded.feature_names == batch.feature_names
    model = OnlineLogisticRegression("adagrad", dim=DIM)
    model.learn(batch)
    loaded = OnlineLogisticRegression.load(io.BytesIO(model.to_bytes()))
    assert sorted(loaded.feature_names.values()) == ["ad^id7", "user^age"]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, warm_kernels=False, memory_budget_bytes=200 << 20)
    with TestClient(create_app(settings)) as c:
        yield c


def test_service_stream_names_interactions_and_unseen(client: TestClient, tmp_path: Path) -> None:
    body = {"name": "m", "hash_bits": 18, "optimizer": "adagrad", "interactions": ["ua"]}
    created = client.post("/v1/models", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["config"]["interactions"] == ["ua"]
    text = b"1 |user age:2 |ad id7\n0 |user age:1 |ad id9\n"
    streamed = client.post(
        "/v1/models/m/stream", content=text, headers={"content-type": "text/x-vw"}
    )
    assert streamed.status_code == 200, streamed.text
    out = client.get("/v1/models/m/learning-rates?features=user^age*ad^id7,never").json()
    cross, never = out["coordinates"]
    assert cross["seen"] and cross["times_touched"] == 1 and cross["weight"] is not None
    assert not never["seen"] and never["weight"] is None and never["state"] is None
    summary = client.get("/v1/models/m/learning-rates/summary?top=10&min_touches=1").json()
    assert "user^age*ad^id9" in str(summary)
    bad = client.post("/v1/models", json={**body, "name": "n", "interactions": ["abcd"]})
    assert bad.status_code == 422 and bad.json()["where"]["field"] == "interactions"


def test_names_off() -> None:
    data = lines_of_many_names(500)
    parser = StreamParser("vw", dim=DIM, max_names=0)
    batches = parser.feed(data) + parser.finish()
    assert all(b.feature_names is None for b in batches)
    np.testing.assert_array_equal(
        np.concatenate([b.indices for b in batches]), parse_bytes(data, "vw", dim=DIM).indices
    )
    with pytest.raises(ConfigError):
        StreamParser("vw", dim=DIM, max_names=-1)
