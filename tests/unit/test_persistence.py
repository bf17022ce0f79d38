"""Persistence: a model saved and loaded mid-stream continues bit for bit like one that never
stopped, and loading validates every array (a bad file is a ConfigError, never a crash)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
from streams import sparse_stream, to_csr

from optim import ConfigError, OnlineLogisticRegression
from optim.model import _WRITE_PIECE, FORMAT, save_file_arrays

DIM = 16
N_ROWS = 400
BATCH = 25

CONFIGS: dict[str, dict[str, Any]] = {
    "adam-exact": {"optimizer": {"name": "adam", "lr": 0.05}, "lazy": "exact"},
    "nadam-exact": {"optimizer": {"name": "nadam", "lr": 0.02}, "lazy": "exact"},
    "momentum-frozen": {
        "optimizer": {"name": "momentum", "lr": 0.05, "momentum": 0.8},
        "lazy": "frozen",
    },
    "ftrl": {"optimizer": {"name": "ftrl", "l1": 0.5}},
    "adagrad-float32": {"optimizer": {"name": "adagrad", "lr": 0.3}, "dtype": "float32"},
    "rmsprop-exact-no-intercept": {"optimizer": "rmsprop", "fit_intercept": False},
    "adam-float32-frozen": {"optimizer": "adam", "dtype": "float32", "lazy": "frozen"},
}


def stream(seed: int = 3) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    rows, labels, weights = sparse_stream(seed, dim=DIM, n_rows=N_ROWS)
    return to_csr(rows, DIM), labels, weights


def batches(seed: int = 3) -> list[tuple[sp.csr_array, np.ndarray, np.ndarray]]:
    X, y, w = stream(seed)
    return [(X[i : i + BATCH], y[i : i + BATCH], w[i : i + BATCH]) for i in range(0, N_ROWS, BATCH)]


def snapshot(model: OnlineLogisticRegression) -> dict[str, Any]:
    return {
        "table": (model.table.dtype, model.table.shape, model.table.tobytes()),
        "counters": (model.counters.dtype, model.counters.shape, model.counters.tobytes()),
        "step": model.step,
        "metrics_rows": model.metrics.rows,
        "metrics_totals": model.metrics.totals.tobytes(),
        "metrics_ring": model.metrics.ring.tobytes(),
        "metrics_curve": model.metrics.curve.tobytes(),
        "metrics_block": model.metrics.block.tobytes(),
        "feature_names": dict(model.feature_names),
        "config": model.config,
    }


def via_path(tmp_path: Path, name: str) -> Callable[[OnlineLogisticRegression], Any]:
    def roundtrip(model: OnlineLogisticRegression) -> OnlineLogisticRegression:
        path = tmp_path / name
        model.save(path)
        assert path.exists()
        return OnlineLogisticRegression.load(path)

    return roundtrip


def via_str_path(tmp_path: Path) -> Callable[[OnlineLogisticRegression], Any]:
    def roundtrip(model: OnlineLogisticRegression) -> OnlineLogisticRegression:
        path = str(tmp_path / "model.npz")
        model.save(path)
        return OnlineLogisticRegression.load(path)

    return roundtrip


def via_bytes(model: OnlineLogisticRegression) -> OnlineLogisticRegression:
    return OnlineLogisticRegression.load(io.BytesIO(model.to_bytes()))


def via_open_file(tmp_path: Path) -> Callable[[OnlineLogisticRegression], Any]:
    def roundtrip(model: OnlineLogisticRegression) -> OnlineLogisticRegression:
        path = tmp_path / "model.npz"
        with open(path, "wb") as f:
            model.save(f)
        with open(path, "rb") as f:
            return OnlineLogisticRegression.load(f)

    return roundtrip


ROUTES = ["path.npz", "path-without-suffix", "str-path", "bytes", "open-file"]


def roundtrip_for(route: str, tmp_path: Path) -> Callable[[OnlineLogisticRegression], Any]:
    return {
        "path.npz": via_path(tmp_path, "model.npz"),
        "path-without-suffix": via_path(tmp_path, "model"),
        "str-path": via_str_path(tmp_path),
        "bytes": via_bytes,
        "open-file": via_open_file(tmp_path),
    }[route]


# ----------------------------------------------------------------- continuing bit for bit
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_save_load_midstream_continues_bit_for_bit(name: str, route: str, tmp_path: Path) -> None:
    config = CONFIGS[name]
    roundtrip = roundtrip_for(route, tmp_path)
    X, _, _ = stream()
    parts = batches()
    half = len(parts) // 2

    never_stopped = OnlineLogisticRegression(dim=DIM, **config)
    stopped = OnlineLogisticRegression(dim=DIM, **config)
    for Xb, yb, wb in parts[:half]:
        never_stopped.learn(Xb, yb, wb)
        stopped.learn(Xb, yb, wb)
    assert snapshot(stopped) == snapshot(never_stopped)

    loaded = roundtrip(stopped)
    assert snapshot(loaded) == snapshot(never_stopped)
    assert loaded.table.dtype == never_stopped.table.dtype
    assert np.array_equal(loaded.predict_proba(X), never_stopped.predict_proba(X))
    assert np.array_equal(loaded.decision_function(X), never_stopped.decision_function(X))
    assert loaded.metrics.to_dict() == never_stopped.metrics.to_dict()

    for Xb, yb, wb in parts[half:]:
        a = never_stopped.learn(Xb, yb, wb)
        b = loaded.learn(Xb, yb, wb)
        assert np.array_equal(a.margins, b.margins)
        assert np.array_equal(a.probabilities, b.probabilities)
        assert a.log_loss == b.log_loss and a.step == b.step
    assert snapshot(loaded) == snapshot(never_stopped)
    assert np.array_equal(loaded.predict_proba(X), never_stopped.predict_proba(X))
    assert loaded.metrics.to_dict() == never_stopped.metrics.to_dict()
    for key, value in never_stopped.state_arrays().items():
        assert np.array_equal(loaded.state_arrays()[key], value), key
    # The model that was saved is untouched by the save.
    assert stopped.step == N_ROWS // 2 // BATCH * BATCH


@pytest.mark.parametrize("name", ["adam-exact", "adagrad-float32"])
def test_many_roundtrips_change_nothing(name: str) -> None:
    config = CONFIGS[name]
    never_stopped = OnlineLogisticRegression(dim=DIM, **config)
    stopped = OnlineLogisticRegression(dim=DIM, **config)
    for Xb, yb, wb in batches(seed=11):
        never_stopped.learn(Xb, yb, wb)
        stopped = via_bytes(stopped)
        stopped.learn(Xb, yb, wb)
    assert snapshot(stopped) == snapshot(never_stopped)


def test_hash_bits_model_roundtrip() -> None:
    model = OnlineLogisticRegression("adam", hash_bits=6, recent_window=7)
    model.learn([{"a": 1.0, "city": "paris"}, {"b": 2}], [1, 0])
    loaded = via_bytes(model)
    assert loaded.config == model.config
    assert loaded.hash_bits == 6 and loaded.dim == 64 and loaded.metrics.window == 7
    assert snapshot(loaded) == snapshot(model)


def test_roundtrip_of_an_empty_model() -> None:
    model = OnlineLogisticRegression("nadam", dim=5)
    loaded = via_bytes(model)
    assert snapshot(loaded) == snapshot(model)
    assert loaded.step == 0 and loaded.feature_names == {}


def test_to_bytes_is_deterministic() -> None:
    model = OnlineLogisticRegression("adam", dim=DIM)
    model.learn([{"x": 1}], [1])
    assert model.to_bytes() == model.to_bytes()
    assert via_bytes(model).to_bytes() == model.to_bytes()


# ----------------------------------------------------------------- feature names
def test_the_model_file_is_what_np_savez_writes() -> None:
    """save_file_arrays writes large arrays from their own memory in pieces (np.savez copies
    them first, holding the GIL): the file is still byte for byte np.savez's."""
    model = OnlineLogisticRegression("adagrad", dim=1 << 18)  # table and counters: 4 MiB each
    X, y, _ = stream()
    model.learn(X, y)
    ours, numpys = io.BytesIO(), io.BytesIO()
    save_file_arrays(ours, model.file_arrays())
    np.savez(numpys, **model.file_arrays())
    assert model.file_arrays()["table"].nbytes > 2 * _WRITE_PIECE
    assert ours.getvalue() == numpys.getvalue()


def test_feature_names_are_remembered_and_survive_a_roundtrip(tmp_path: Path) -> None:
    model = OnlineLogisticRegression("adagrad", hash_bits=16)
    model.learn([{"IQ": 120, "city": "paris"}, {"member": True, "city": "été"}], [1, 0])
    expected = {model.feature_index(key): key for key in ["IQ", "city=paris", "member", "city=été"]}
    assert model.feature_names == expected
    for roundtrip in (via_bytes, via_path(tmp_path, "m.npz")):
        loaded = roundtrip(model)
        assert loaded.feature_names == expected
        assert all(
            isinstance(k, int) and isinstance(v, str) for k, v in loaded.feature_names.items()
        )
        inspected = loaded.inspect_coordinates(indices=[model.feature_index("IQ")])
        assert inspected[0]["feature"] == "IQ"


def test_feature_name_cap_survives_a_roundtrip() -> None:
    def rows(i: int) -> list[dict[str, object]]:
        return [{f"f{i}": 1.0, f"g{i}": "x"}]

    never_stopped = OnlineLogisticRegression("sgd", hash_bits=20, max_feature_names=3)
    stopped = OnlineLogisticRegression("sgd", hash_bits=20, max_feature_names=3)
    never_stopped.learn(rows(0), [1])
    stopped.learn(rows(0), [1])
    loaded = via_bytes(stopped)
    assert loaded.max_feature_names == 3
    for i in range(1, 4):
        never_stopped.learn(rows(i), [i % 2])
        loaded.learn(rows(i), [i % 2])
    assert len(never_stopped.feature_names) == 3
    assert loaded.feature_names == never_stopped.feature_names


# ----------------------------------------------------------------- no pickle, sizes
def test_saved_file_loads_without_pickle(tmp_path: Path) -> None:
    model = OnlineLogisticRegression("adam", dim=DIM)
    model.learn([{"IQ": 120, "city": "paris"}], [1])
    path = tmp_path / "model.npz"
    model.save(path)
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    assert all(a.dtype != object for a in arrays.values())
    assert str(arrays["format"]) == FORMAT
    assert json.loads(str(arrays["config"]))["optimizer"]["name"] == "adam"
    assert np.array_equal(arrays["table"], model.table)
    assert np.array_equal(arrays["counters"], model.counters)
    assert int(arrays["step"]) == model.step == 1
    assert arrays["feature_name_keys"].tolist() == sorted(
        model.feature_names.values(), key=model.feature_index
    )


def test_from_arrays_does_not_share_the_callers_arrays() -> None:
    arrays = saved_arrays()
    rebuilt = OnlineLogisticRegression.from_arrays(arrays)
    kept = {name: a.copy() for name, a in arrays.items()}
    rebuilt.learn([{"IQ": 100}], [0])
    for name, a in arrays.items():
        assert np.array_equal(a, kept[name]), name


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adagrad", "adam", "ftrl", "adadelta"])
def test_float32_state_is_half_of_float64(optimizer: str) -> None:
    m64 = OnlineLogisticRegression(optimizer, dim=1000)
    m32 = OnlineLogisticRegression(optimizer, dim=1000, dtype="float32")
    assert m32.state_bytes * 2 == m64.state_bytes
    assert m64.state_bytes == OnlineLogisticRegression.state_bytes_for(optimizer, 1000)
    assert m32.state_bytes == OnlineLogisticRegression.state_bytes_for(optimizer, 1000, "float32")
    assert m32.table.dtype == np.float32 and m32.counters.dtype == np.uint32
    loaded = via_bytes(m32)
    assert loaded.state_bytes == m32.state_bytes and loaded.dtype == "float32"


# ----------------------------------------------------------------- validation on load
def saved_arrays() -> dict[str, np.ndarray]:
    model = OnlineLogisticRegression("adam", dim=DIM, recent_window=50)
    model.learn([{"IQ": 120, "city": "paris"}, {"b": 1.0}], [1, 0])
    X, y, w = stream()
    model.learn(X[:40], y[:40], w[:40])
    with np.load(io.BytesIO(model.to_bytes()), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def assert_load_rejects(data: bytes, *phrases: str) -> ConfigError:
    with pytest.raises(ConfigError) as error:
        OnlineLogisticRegression.load(io.BytesIO(data))
    for phrase in phrases:
        assert phrase in str(error.value), str(error.value)
    return error.value


def with_config(arrays: dict[str, np.ndarray], **changes: object) -> dict[str, np.ndarray]:
    config = json.loads(str(arrays["config"]))
    config.update(changes)
    return {**arrays, "config": np.array(json.dumps(config))}


def test_the_untouched_arrays_load() -> None:
    arrays = saved_arrays()
    model = OnlineLogisticRegression.load(io.BytesIO(npz_bytes(arrays)))
    assert model.step == 42 and len(model.feature_names) >= 2


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.25, 0.5, 0.9, 0.999])
def test_truncated_file(fraction: float) -> None:
    data = npz_bytes(saved_arrays())
    error = assert_load_rejects(data[: int(len(data) * fraction)], "not a readable model file")
    assert error.field == "file"


def test_truncated_file_on_disk(tmp_path: Path) -> None:
    model = OnlineLogisticRegression("adam", dim=DIM)
    path = tmp_path / "model.npz"
    model.save(path)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ConfigError):
        OnlineLogisticRegression.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        OnlineLogisticRegression.load(tmp_path / "nothing.npz")


@pytest.mark.parametrize(
    "data",
    [b"", b"not a model at all", b"PK\x03\x04garbage", json.dumps({"a": 1}).encode()],
    ids=["empty", "text", "bad-zip", "json"],
)
def test_not_a_model_file(data: bytes) -> None:
    assert_load_rejects(data, "not a readable model file")


def test_a_single_npy_array_is_not_a_model() -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    assert_load_rejects(buffer.getvalue(), "not a readable model file")


def test_pickled_arrays_are_refused() -> None:
    arrays = saved_arrays()
    arrays["config"] = np.array([{"optimizer": "adam"}], dtype=object)
    assert_load_rejects(npz_bytes(arrays), "member 'config'", "object")


@pytest.mark.parametrize("bad", ["adaserve-model-v0", "", "something-else"])
def test_wrong_format_string(bad: str) -> None:
    arrays = {**saved_arrays(), "format": np.array(bad)}
    assert_load_rejects(npz_bytes(arrays), "unknown format", repr(bad))


@pytest.mark.parametrize("name", ["format", "config", "table", "counters", "metrics_ring", "step"])
def test_missing_array(name: str) -> None:
    arrays = saved_arrays()
    del arrays[name]
    assert_load_rejects(npz_bytes(arrays), "lacks", name)


def test_config_not_json() -> None:
    arrays = {**saved_arrays(), "config": np.array("{not json")}
    assert_load_rejects(npz_bytes(arrays), "member 'config' is not JSON")
    arrays = {**saved_arrays(), "config": np.array("[1, 2]")}
    assert_load_rejects(npz_bytes(arrays), "JSON object")


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": {"name": "adamw"}},
        {"optimizer": "lion"},
        {"optimizer": None},
        {"optimizer": {"name": "adam", "lr": -1}},
        {"optimizer": {"name": "adam", "gamma": 1}},
        {"lazy": "sometimes"},
        {"dtype": "float16"},
        {"unknown_setting": 1},
        {"hash_bits": "x"},
        {"hash_bits": 99},
        {"hash_bits": True},
        {"recent_window": 10},
        {"max_feature_names": "many"},
        {"max_feature_names": -1},
    ],
    ids=lambda changes: "-".join(f"{k}={v}" for k, v in changes.items()),
)
def test_bad_config(changes: dict[str, object]) -> None:
    assert_load_rejects(npz_bytes(with_config(saved_arrays(), **changes)))


def test_unknown_optimizer_names_it() -> None:
    error = assert_load_rejects(
        npz_bytes(with_config(saved_arrays(), optimizer={"name": "adamw"})), "adamw"
    )
    assert error.where == {"field": "file", "member": "config"}


def test_config_for_another_optimizer_shape() -> None:
    # sgd has no state slots: adam's table has the wrong shape for it.
    assert_load_rejects(npz_bytes(with_config(saved_arrays(), optimizer="sgd")), "table")


@pytest.mark.parametrize(
    "table",
    [
        np.zeros((DIM + 2, 3)),
        np.zeros((DIM, 3)),
        np.zeros((DIM + 1, 2)),
        np.zeros((DIM + 1, 4)),
        np.zeros(DIM + 1),
        np.zeros((DIM + 1, 3), dtype=np.float32),
        np.zeros((DIM + 1, 3), dtype=np.int64),
    ],
    ids=["rows+1", "rows-1", "cols-1", "cols+1", "1d", "float32", "int64"],
)
def test_table_with_wrong_shape_or_dtype(table: np.ndarray) -> None:
    arrays = {**saved_arrays(), "table": table}
    assert_load_rejects(npz_bytes(arrays))


def test_dim_mismatch_is_found_before_allocating() -> None:
    arrays = with_config(saved_arrays(), dim=2**40)
    assert_load_rejects(npz_bytes(arrays), "member 'table'", "configuration has")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", [(0, 0), (DIM, 1), (3, 2)])
def test_non_finite_table(bad: float, where: tuple[int, int]) -> None:
    arrays = saved_arrays()
    table = arrays["table"].copy()
    table[where] = bad
    assert_load_rejects(npz_bytes({**arrays, "table": table}), "'table'", "non-finite")


def test_counters_last_step_beyond_step() -> None:
    arrays = saved_arrays()
    counters = arrays["counters"].copy()
    counters[2, 0] = int(arrays["step"]) + 1
    assert_load_rejects(npz_bytes({**arrays, "counters": counters}), "last-touched step")


def test_negative_counters() -> None:
    arrays = saved_arrays()
    for column in (0, 1):
        counters = arrays["counters"].copy()
        counters[2, column] = -1
        assert_load_rejects(npz_bytes({**arrays, "counters": counters}), "negative")


@pytest.mark.parametrize(
    "step",
    [np.array(-1), np.array([42]), np.array(42.0), np.array("42"), np.array(np.nan)],
    ids=["negative", "1d", "float", "str", "nan"],
)
def test_bad_step(step: np.ndarray) -> None:
    assert_load_rejects(npz_bytes({**saved_arrays(), "step": step}))


def test_counters_with_wrong_shape_or_dtype() -> None:
    arrays = saved_arrays()
    for counters in (arrays["counters"][:-1], arrays["counters"].astype(np.uint32)):
        assert_load_rejects(npz_bytes({**arrays, "counters": counters}), "'counters'")


@pytest.mark.parametrize("index", [DIM, DIM + 5, -1, 2**40])
def test_feature_name_index_out_of_range(index: int) -> None:
    arrays = saved_arrays()
    indices = arrays["feature_name_indices"].copy()
    indices[0] = index
    arrays["feature_name_indices"] = indices
    assert_load_rejects(npz_bytes(arrays), "member 'feature_name_indices'")


@pytest.mark.parametrize(
    "indices, keys",
    [
        (np.array([1, 2]), np.array(["a"])),
        (np.array([1.0]), np.array(["a"])),
        (np.array(["1"]), np.array(["a"])),
        (np.array([1]), np.array([7])),
        (np.array([[1]]), np.array([["a"]])),
    ],
    ids=["lengths", "float-index", "str-index", "int-key", "2d"],
)
def test_malformed_feature_names(indices: np.ndarray, keys: np.ndarray) -> None:
    arrays = {**saved_arrays(), "feature_name_indices": indices, "feature_name_keys": keys}
    assert_load_rejects(npz_bytes(arrays), "member 'feature_name_")


@pytest.mark.parametrize(
    "changes",
    [
        {"metrics_ring": np.zeros((50, 5))},
        {"metrics_ring": np.zeros((49, 6))},
        {"metrics_ring": np.full((50, 6), np.nan)},
        {"metrics_totals": np.zeros(3)},
        {"metrics_totals": np.array([np.inf, 0, 0, 0])},
        {"metrics_rows": np.array(-1)},
        {"metrics_rows": np.array("many")},
        {"metrics_curve": np.zeros((3, 2))},
        {"metrics_curve": np.full((3, 3), np.inf)},
        {"metrics_block": np.zeros(4)},
    ],
    ids=[
        "ring-cols",
        "ring-window",
        "ring-nan",
        "totals-shape",
        "totals-inf",
        "rows<0",
        "rows",
        "curve-shape",
        "curve-inf",
        "block-size",
    ],
)
def test_bad_metrics(changes: dict[str, np.ndarray]) -> None:
    assert_load_rejects(npz_bytes({**saved_arrays(), **changes}))


def test_a_rejected_file_does_not_touch_a_loaded_model() -> None:
    arrays = saved_arrays()
    model = OnlineLogisticRegression.from_arrays(arrays)
    before = snapshot(model)
    table = arrays["table"].copy()
    table[0, 0] = np.nan
    with pytest.raises(ConfigError):
        OnlineLogisticRegression.from_arrays({**arrays, "table": table})
    assert snapshot(model) == before
