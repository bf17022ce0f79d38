"""Interactions (crossed features), ignore and keep: VW itself as the oracle, and hand expansion."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest

from optim import ConfigError, FeatureHasher, OnlineLogisticRegression
from optim.features import FeatureOptions
from optim.formats import StreamParser, parse_bytes

HAS_VW = importlib.util.find_spec("vowpalwabbit") is not None
needs_vw = pytest.mark.skipif(not HAS_VW, reason="vowpalwabbit is not installed (the oracle)")

BITS = 18
DIM = 1 << BITS
FNV = 16777619
M64 = (1 << 64) - 1
# Integer-named features (VW's digits rule: number + namespace hash, the same in both) in named
# namespaces, so VW and adaserve give every feature and every cross the same coordinate.
# (Numbers far apart: VW keeps a feature twice where a row holds two features of one coordinate,
# adaserve sums them, and AdaGrad then differs; small consecutive numbers make such pairs.)
VW_ROWS = [
    "1 |a 31337 4242:2 |b 90210 |c 77",
    "-1 |a 31337 |bb 999:3 |c 5000:0.5",
    "1 | 3133:1 12 |a 4242",
    "-1 |a 31337 4242 |b 90210 1234567 |c 77 5000",
    "1 |a:0.5 123456 31337 |b 1234567 |c 5000",
] * 4
VW_ADAGRAD = "--adaptive -l 0.1 --power_t 0.5 --initial_t 0 --loss_function logistic --noconstant"


def ours(interactions: list[str], rows: list[str] = VW_ROWS, **options: object):
    model = OnlineLogisticRegression(
        {"name": "adagrad", "lr": 0.1, "eps": 1e-12}, dim=DIM, fit_intercept=False,
        interactions=interactions, **options,
    )  # fmt: skip
    parser = StreamParser("vw", dim=DIM, features=model.features)
    probabilities = []
    for batch in parser.feed(("\n".join(rows) + "\n").encode()) + parser.finish():
        probabilities += model.learn(batch).probabilities.tolist()
    return model, np.array(probabilities)


def vowpal(args: str, rows: list[str], tmp_path: Path) -> tuple[np.ndarray, set[int]]:
    """VW's progressive probabilities and the coordinates its readable model holds."""
    from vowpalwabbit import pyvw

    readable = tmp_path / "readable.txt"
    vw = pyvw.Workspace(
        f"--quiet -b {BITS} {VW_ADAGRAD} --link logistic {args} --readable_model {readable}"
    )
    probabilities = []
    for row in rows:
        probabilities.append(vw.predict(row))
        vw.learn(row)
    vw.finish()
    weights = re.compile(r"(\d+):[-+0-9.eE]+( |$)")  # "index:weight[ adaptive state]" lines
    matches = (weights.match(line) for line in readable.read_text().splitlines())
    coordinates = {int(m.group(1)) for m in matches if m}
    return np.array(probabilities), coordinates


@needs_vw
@pytest.mark.parametrize(
    "interactions",
    [[], ["ab"], ["aa"], ["abc"], ["aac"], ["aaa"], ["aba"], ["ab", "ba"], ["ab", "aa", "abc"]],
)
def test_same_predictions_and_coordinates_as_vw(interactions: list[str], tmp_path: Path) -> None:
    args = " ".join(f"--interactions {item}" for item in interactions)
    expected, vw_coordinates = vowpal(args, VW_ROWS, tmp_path)
    model, got = ours(interactions)
    np.testing.assert_allclose(got, expected, atol=1e-6)  # VW's weights are float32
    touched = set(np.flatnonzero(model.times_touched[:DIM]).tolist())
    # VW's readable model lists its non-zero weights: a subset of ours only where a weight is 0
    assert vw_coordinates <= touched
    assert len(touched - vw_coordinates) <= 1


@needs_vw
@pytest.mark.parametrize(("ours_options", "vw_args"), [
    ({"ignore": ["b"]}, "--ignore b"),
    ({"keep": ["a", "c"]}, "--keep a --keep c"),
    ({"ignore": ["c"], "interactions": ["ab"]}, "--ignore c -q ab"),
])  # fmt: skip
def test_ignore_and_keep_as_vw(ours_options: dict, vw_args: str, tmp_path: Path) -> None:
    expected, vw_coordinates = vowpal(vw_args, VW_ROWS, tmp_path)
    options = dict(ours_options)
    model, got = ours(options.pop("interactions", []), **options)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert vw_coordinates <= set(np.flatnonzero(model.times_touched[:DIM]).tolist())


def by_hand(row: str, interactions: list[str], hasher: FeatureHasher) -> dict[int, float]:
    """One VW line's features and crosses, expanded in plain Python (string names only)."""
    groups: dict[str, list[tuple[int, float]]] = {}
    features: dict[int, float] = {}
    for segment in row.split("|")[1:]:
        head, *tokens = segment.split()
        namespace, _, scale = head.partition(":")
        for token in tokens:
            name, _, value = token.partition(":")
            index = hasher.index(f"{namespace}^{name}")
            v = float(value or 1) * float(scale or 1)
            groups.setdefault(namespace[0], []).append((index, v))
            features[index] = features.get(index, 0.0) + v
    for item in interactions:
        for i, (x, vx) in enumerate(groups.get(item[0], [])):
            second = groups.get(item[1], [])
            for j in range(i if item[1] == item[0] else 0, len(second)):
                y, vy = second[j]
                pair = ((FNV * x) & M64) ^ y
                if len(item) == 2:
                    features[pair % hasher.dim] = features.get(pair % hasher.dim, 0.0) + vx * vy
                    continue
                third = groups.get(item[2], [])
                for k in range(j if item[2] == item[1] else 0, len(third)):
                    z, vz = third[k]
                    index = (((FNV * pair) & M64) ^ z) % hasher.dim
                    features[index] = features.get(index, 0.0) + vx * vy * vz
    return features


NAMED_ROWS = [
    "1 |user age:0.5 city=paris |ad id7 |site news",
    "0 |user age:0.25 |ad id7 id9:2 |site news sports",
    "1 |user:2 city=rome |ad id9 |site sports",
] * 3


@pytest.mark.parametrize("interactions", [["ua"], ["uu"], ["uas"], ["aas"], ["ua", "ss", "uas"]])
@pytest.mark.parametrize("dim", [DIM, 1000, 64])
def test_crosses_equal_hand_expansion(interactions: list[str], dim: int) -> None:
    hasher = FeatureHasher(dim)
    model = OnlineLogisticRegression("adagrad", dim=dim, interactions=interactions)
    parser = StreamParser("vw", dim=dim, features=model.features)
    batches = parser.feed(("\n".join(NAMED_ROWS) + "\n").encode()) + parser.finish()
    for batch in batches:
        model.learn(batch)
    reference = OnlineLogisticRegression("adagrad", dim=dim)
    for row in NAMED_ROWS:
        expanded = by_hand(row, interactions, hasher)
        indices = sorted(expanded)
        X = _csr([indices], [[expanded[i] for i in indices]], dim)
        reference.learn(X, [int(row[0])])
    np.testing.assert_array_equal(model.table, reference.table)
    np.testing.assert_array_equal(model.counters, reference.counters)


def _csr(indices: list[list[int]], values: list[list[float]], dim: int):
    import scipy.sparse as sp

    indptr = np.cumsum([0] + [len(r) for r in indices])
    return sp.csr_matrix(
        (np.concatenate(values), np.concatenate(indices), indptr), shape=(len(indices), dim)
    )


def test_named_rows_cross_as_vw_text() -> None:
    """The ``namespace^name`` convention of named rows gives VW text's coordinates and names."""
    model = OnlineLogisticRegression("adagrad", dim=DIM, interactions=["ua", "uu"])
    named = model.to_batch([{"u^age": 0.5, "u^city": "paris", "a^id7": 1, "plain": 2}])
    text = parse_bytes(
        b"1 |u age:0.5 city=paris |a id7 | plain:2\n", "vw", dim=DIM, features=model.features
    )
    np.testing.assert_array_equal(named.indices, text.indices)
    np.testing.assert_array_equal(named.values, text.values)
    assert set(named.feature_names) == set(text.feature_names)
    assert "u^age*a^id7" in text.feature_names
    assert "u^age*u^city=paris" in text.feature_names and "u^age*u^age" in text.feature_names


def test_ndjson_named_rows_cross_as_vw_text() -> None:
    features = FeatureOptions.of(["ua", "aa"], ignore=["s"])
    ndjson = parse_bytes(
        b'{"features": {"u^age": 0.5, "a^id7": 1, "a^id9": 2, "s^x": 1}, "label": 1}\n'
        b'{"indices": [3, 5], "label": 0}\n',
        "ndjson", dim=DIM, features=features,
    )  # fmt: skip
    text = parse_bytes(
        b"1 |u age:0.5 |a id7 id9:2 |s x\n0 | 3 5\n", "vw", dim=DIM, features=features
    )
    np.testing.assert_array_equal(ndjson.indptr, text.indptr)
    np.testing.assert_array_equal(ndjson.indices, text.indices)
    np.testing.assert_array_equal(ndjson.values, text.values)
    assert {k: v for k, v in text.feature_names.items() if "^" in k} == ndjson.feature_names


def test_criteo_namespaces_i_and_c() -> None:
    line = "\t".join(["1", "3", "", "-2"] + [""] * 10 + ["abc", "de"] + [""] * 24) + "\n"
    hasher = FeatureHasher(DIM)
    features = FeatureOptions.of(["IC", "CC"])
    batch = parse_bytes(line.encode(), "criteo", dim=DIM, features=features)
    i1, i3, c1, c2 = (hasher.index(k) for k in ("I1", "I3", "C1=abc", "C2=de"))
    v1, v3 = np.log1p(3.0), -np.log1p(2.0)
    expected = {i1: v1, i3: v3, c1: 1.0, c2: 1.0}
    for x, vx in ((i1, v1), (i3, v3)):
        for y in (c1, c2):
            expected[(((FNV * x) & M64) ^ y) % DIM] = vx
    for x, y in ((c1, c1), (c1, c2), (c2, c2)):
        expected[(((FNV * x) & M64) ^ y) % DIM] = 1.0
    got = dict(zip(batch.indices.tolist(), batch.values.tolist(), strict=True))
    assert got == pytest.approx(expected, rel=1e-15)  # (log1p: numba's and numpy's, to an ulp)
    assert {"I1*C1=abc", "I3*C2=de", "C1=abc*C2=de", "C2=de*C2=de"} <= set(batch.feature_names)
    kept = parse_bytes(line.encode(), "criteo", dim=DIM, features=FeatureOptions.of(keep=["C"]))
    assert sorted(kept.indices.tolist()) == sorted([c1, c2])


def test_crosses_are_split_invariant_and_grow_indices() -> None:
    """Fed a byte at a time, or with rows of many crosses (indices grow mid-row), the same."""
    rows = "".join(f"1 |a {' '.join(f'f{k}' for k in range(n))}\n" for n in (3, 60, 1, 90))
    features = FeatureOptions.of(["aa"])
    whole = parse_bytes(rows.encode(), "vw", dim=DIM, features=features)
    parser = StreamParser("vw", dim=DIM, features=features, max_rows_per_batch=2)
    batches = [b for k in range(len(rows)) for b in parser.feed(rows[k].encode())]
    batches += parser.finish()
    np.testing.assert_array_equal(np.concatenate([b.indices for b in batches]), whole.indices)
    np.testing.assert_array_equal(np.concatenate([b.values for b in batches]), whole.values)
    names = {k: v for b in batches for k, v in (b.feature_names or {}).items()}
    assert names == whole.feature_names and len(names) == 90 + 90 * 91 // 2
    assert sum(b.n_rows for b in batches) == 4


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interactions": "ab"}, "interactions"),
        ({"interactions": ["a"]}, "interactions"),
        ({"interactions": ["abcd"]}, "interactions"),
        ({"interactions": [3]}, "interactions"),
        ({"interactions": ["a\n"]}, "interactions"),
        ({"ignore": ["ab"]}, "ignore"),
        ({"ignore": "a"}, "ignore"),
        ({"ignore": ["a"], "keep": ["b"]}, "keep"),
    ],
)
def test_options_are_validated(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        OnlineLogisticRegression("adagrad", dim=8, **kwargs)
    assert caught.value.field == field


def test_options_round_trip_through_the_model_file() -> None:
    model = OnlineLogisticRegression("adagrad", dim=DIM, interactions=["ab", "ba", "aba"],
                                     ignore=["z"])  # fmt: skip
    assert model.config["interactions"] == ["ab", "aab"]  # VW's dedup and grouping
    model.learn(parse_bytes(b"1 |a x |b y\n", "vw", dim=DIM, features=model.features))
    loaded = OnlineLogisticRegression.load(_file(model))
    assert loaded.config == model.config
    assert loaded.features == model.features
    assert loaded.feature_names == model.feature_names
    assert "a^x*b^y" in loaded.feature_names.values()
    assert OnlineLogisticRegression("adagrad", dim=8).config.get("interactions") is None


def _file(model: OnlineLogisticRegression):
    import io

    return io.BytesIO(model.to_bytes())


def test_rate_summary_shows_crosses_by_name() -> None:
    model = OnlineLogisticRegression("adagrad", dim=DIM, interactions=["ua"])
    parser = StreamParser("vw", dim=DIM, features=model.features)
    for batch in parser.feed(("\n".join(NAMED_ROWS) + "\n").encode()) + parser.finish():
        model.learn(batch)
    summary = model.rate_summary(top=50, min_touches=1)
    named = {entry["feature"] for key in summary for entry in _entries(summary[key])}
    assert "user^age*ad^id7" in named
    (cross,) = model.inspect_coordinates(features=["user^age*ad^id7"])
    assert cross["seen"] and cross["times_touched"] == 6  # rows 1 and 2, three times


def _entries(value: object) -> list[dict]:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict) and "feature" in v]
    if isinstance(value, dict):
        return [e for v in value.values() for e in _entries(v)]
    return []


def test_adaserve_train_interactions(tmp_path: Path) -> None:
    from service.cli import main

    data = tmp_path / "rows.vw"
    data.write_text("\n".join(NAMED_ROWS) + "\n")
    out = tmp_path / "model.npz"
    argv = ["train", str(data), "--format", "vw", "--hash-bits", "18", "--quiet", "-o", str(out),
            "--optimizer", "adagrad",
            "--interactions", "ua", "--interactions", "uu", "--ignore", "s"]  # fmt: skip
    assert main(argv) == 0
    trained = OnlineLogisticRegression.load(out)
    assert trained.config["interactions"] == ["ua", "uu"] and trained.config["ignore"] == ["s"]
    expected = OnlineLogisticRegression("adagrad", dim=DIM, interactions=["ua", "uu"], ignore=["s"])
    for batch in StreamParser("vw", dim=DIM, features=expected.features).feed(data.read_bytes()):
        expected.learn(batch)
    np.testing.assert_array_equal(trained.table, expected.table)
    assert "user^age*ad^id7" in trained.feature_names.values()
    assert main([*argv[:-6], "--interactions", "abcd"]) != 0
