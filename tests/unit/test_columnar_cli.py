"""``adaserve train`` and ``adaserve predict`` on Parquet and Arrow files (``--format parquet``,
``--format arrow``; :mod:`adaserve_cli.columnar`): the same model as the same rows in libsvm,
probabilities for every row, and an error naming the row and column. Skipped without pyarrow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optim import OnlineLogisticRegression
from service.cli import main

pa = pytest.importorskip("pyarrow", reason="pyarrow is not installed (pip install '.[arrow]')")
pq = pytest.importorskip("pyarrow.parquet")

DIM = 64
ADAGRAD = ["--optimizer", "adagrad", "--lr", "0.3", "--dim", str(DIM)]


def rows(
    count: int = 25_000, seed: int = 0
) -> tuple[list[list[int]], list[list[float]], list[int]]:
    rng = np.random.default_rng(seed)
    indices = [
        sorted(rng.choice(DIM, rng.integers(1, 6), replace=False).tolist()) for _ in range(count)
    ]
    values = [rng.normal(size=len(i)).round(4).tolist() for i in indices]
    labels = (rng.random(count) < 0.3).astype(int).tolist()
    return indices, values, labels


def write_files(tmp_path: Path) -> dict[str, Path]:
    indices, values, labels = rows()
    table = pa.table({"indices": pa.array(indices, pa.list_(pa.int32())), "values": values,
                      "label": labels})  # fmt: skip
    paths = {"parquet": tmp_path / "rows.parquet", "arrow": tmp_path / "rows.arrow",
             "stream": tmp_path / "rows.arrows", "libsvm": tmp_path / "rows.libsvm"}  # fmt: skip
    pq.write_table(table, paths["parquet"], row_group_size=7_000)
    with pa.ipc.new_file(paths["arrow"], table.schema) as writer:
        writer.write_table(table, max_chunksize=12_000)
    with pa.ipc.new_stream(paths["stream"], table.schema) as writer:
        writer.write_table(table)
    paths["libsvm"].write_text("".join(
        f"{y} " + " ".join(f"{i}:{v!r}" for i, v in zip(ix, vs, strict=True)) + "\n"
        for ix, vs, y in zip(indices, values, labels, strict=True)
    ))  # fmt: skip
    return paths


def test_train_and_predict_columnar_files_as_libsvm(tmp_path: Path) -> None:
    paths = write_files(tmp_path)
    trained = {}
    for name, fmt in (("libsvm", "libsvm"), ("parquet", "parquet"), ("arrow", "arrow"),
                      ("stream", "arrow")):  # fmt: skip
        output = tmp_path / f"{name}.npz"
        code = main(["train", str(paths[name]), "--format", fmt, *ADAGRAD, "-o", str(output), "-q"])
        assert code == 0, name
        trained[name] = OnlineLogisticRegression.load(output)
    reference = trained.pop("libsvm")
    assert reference.step == 25_000
    for name, model in trained.items():
        assert model.step == reference.step, name
        assert np.array_equal(model.table, reference.table), name
    probabilities = tmp_path / "p.txt"
    model_file = str(tmp_path / "parquet.npz")
    code = main(["predict", str(paths["parquet"]), "--format", "parquet", "-m", model_file,
                 "-o", str(probabilities), "-q"])  # fmt: skip
    assert code == 0
    written = np.loadtxt(probabilities)
    expected_path = tmp_path / "p-libsvm.txt"
    assert main(["predict", str(paths["libsvm"]), "--format", "libsvm", "-m", model_file,
                 "-o", str(expected_path), "-q"]) == 0  # fmt: skip
    assert np.array_equal(written, np.loadtxt(expected_path)) and written.shape == (25_000,)


def test_a_bad_cell_names_its_row_and_column(tmp_path: Path, capsys) -> None:
    labels = [1] * 15_000
    labels[12_345] = None
    table = pa.table({"IQ": np.linspace(0, 1, 15_000), "city": ["paris"] * 15_000,
                      "label": labels})  # fmt: skip
    path = tmp_path / "named.parquet"
    pq.write_table(table, path, row_group_size=5_000)
    code = main(["train", str(path), "--format", "parquet", *ADAGRAD, "-q"])
    assert code == 2
    error = capsys.readouterr().err
    assert "named.parquet: row 12345, field 'label': is null" in error, error
    not_parquet = tmp_path / "x.parquet"
    not_parquet.write_bytes(b"nope")
    assert main(["train", str(not_parquet), "--format", "parquet", *ADAGRAD, "-q"]) == 2
    assert "not a readable parquet file" in capsys.readouterr().err
