"""A Python client for the adaserve REST API (httpx).

>>> from service.client import AdaserveClient
>>> client = AdaserveClient("http://127.0.0.1:8080")        # doctest: +SKIP
>>> client.create_model("clicks", optimizer="adagrad", hash_bits=20)  # doctest: +SKIP
>>> client.update("clicks", rows=[{"IQ": 1.2}], labels=[1])  # doctest: +SKIP
>>> client.stream_file("clicks", "train.vw", "vw")  # doctest: +SKIP

Every failure is an :class:`AdaserveError`: an error answer (4xx/5xx, with the service's
``error``, ``detail`` and ``where``), or a :class:`StreamError` when a stream stopped on a line
it could not learn (the answer had begun: 200), carrying the line, the reason and the rows
learned before it.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import scipy.sparse as sp

from adaserve_cli.formats import MEDIA_TYPES

CONTENT_TYPES = MEDIA_TYPES  # each format's Content-Type, by name


class AdaserveError(RuntimeError):
    """A 4xx/5xx answer: ``status``, ``error`` code, ``detail`` and ``where``."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.error = body.get("error", "http_error")
        self.detail = body.get("detail", "")
        self.where = body.get("where", {})
        super().__init__(f"{status} {self.error}: {self.detail} {self.where or ''}".strip())


class StreamError(AdaserveError):
    """A stream stopped before its end: on a line the service could not parse or learn (``line``,
    ``field``, ``reason``), or cut off before its summary (``line`` None). Every row before it
    was learned: ``rows``. ``summary`` is the final line as the service sent it (``{}`` when
    none came)."""

    def __init__(self, summary: Mapping[str, Any]) -> None:
        error = summary.get("error") or {}
        self.summary = dict(summary)
        self.rows: int = summary.get("rows", 0)
        self.line: int | None = error.get("line")
        self.field: str | None = error.get("field")
        self.reason: str = error.get("detail") or "the stream ended without its summary line"
        where = f"line {self.line}" if self.line is not None else "the stream"
        super().__init__(200, {
            "error": "stream_stopped",
            "detail": f"{where}: {self.reason}; {self.rows:,} rows learned before it",
            "where": {k: v for k, v in error.items() if k != "detail"},
        })  # fmt: skip


def _csr_body(X: Any, labels: Any = None, weights: Any = None) -> dict[str, Any]:
    csr = sp.csr_array(X)
    body: dict[str, Any] = {
        "indptr": csr.indptr.tolist(),
        "indices": csr.indices.tolist(),
        "values": csr.data.tolist(),
    }
    if labels is not None:
        body["labels"] = np.asarray(labels).tolist()
    if weights is not None:
        body["weights"] = np.asarray(weights, dtype=float).tolist()
    return body


def _rows_body(rows: Sequence[Mapping[str, Any]], labels: Any, weights: Any) -> dict[str, Any]:
    out = []
    for i, features in enumerate(rows):
        row: dict[str, Any] = {"features": dict(features)}
        if labels is not None:
            row["label"] = np.asarray(labels)[i].item()
        if weights is not None:
            row["weight"] = float(np.asarray(weights)[i])
        out.append(row)
    return {"rows": out}


class AdaserveClient:
    """Talks to one adaserve server. Batches are scipy sparse matrices or rows of named features."""

    def __init__(
        self, base_url: str = "http://127.0.0.1:8080", *, token: str | None = None,
        timeout: float = 300.0, transport: httpx.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> AdaserveClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        if "json" in kwargs:
            kwargs["content"] = orjson.dumps(kwargs.pop("json"))
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text}
            raise AdaserveError(response.status_code, body)
        if response.status_code == 204:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    # ------------------------------------------------------------------ models
    def create_model(
        self, name: str, optimizer: str | Mapping[str, Any] = "auto", **config: Any
    ) -> dict[str, Any]:
        """``config``: dim or hash_bits, lazy, fit_intercept, dtype, hash_seed, recent_window,
        normalized, invariant, feedback (``{"ttl_seconds": 3600, "on_expiry": "negative"}``:
        predict with ids, label later with :meth:`feedback`)."""
        return self._call(
            "POST", "/v1/models", json={"name": name, "optimizer": optimizer, **config}
        )

    def list_models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/models")["models"]

    def get_model(self, name: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/models/{name}")

    def delete_model(self, name: str) -> None:
        self._call("DELETE", f"/v1/models/{name}")

    # ------------------------------------------------------------------ learning
    def _batch(self, X: Any, rows: Any, labels: Any, weights: Any) -> dict[str, Any]:
        if (X is None) == (rows is None):
            raise ValueError("give exactly one of X (scipy sparse) and rows (named features)")
        return (
            _rows_body(rows, labels, weights) if rows is not None else _csr_body(X, labels, weights)
        )

    def update(
        self, name: str, X: Any = None, labels: Any = None, sample_weight: Any = None, *,
        rows: Sequence[Mapping[str, Any]] | None = None, return_predictions: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Learn one batch; returns rows, step, log_loss (and probabilities when asked)."""
        return self._call(
            "POST", f"/v1/models/{name}/updates",
            params={"return_predictions": str(return_predictions).lower()},
            json=self._batch(X, rows, labels, sample_weight),
        )  # fmt: skip

    def predict(
        self, name: str, X: Any = None, *, rows: Sequence[Mapping[str, Any]] | None = None,
        ids: Sequence[str] | None = None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """``{"probabilities": array, "margins": array}``; never changes the model's weights.
        ``ids`` (one per row, a model with feedback): the rows wait for their labels
        (:meth:`feedback`); 409 if one is pending already, 429 ``too_many_pending``."""
        body = self._batch(X, rows, None, None)
        if ids is not None:
            body["ids"] = list(ids)
        out = self._call("POST", f"/v1/models/{name}/predict", json=body)
        return {k: np.asarray(v) for k, v in out.items()}

    def feedback(
        self, name: str, ids: Sequence[str], labels: Any, sample_weight: Any = None
    ) -> dict[str, Any]:
        """Learn the pending rows ``ids`` (predicted with ids) with ``labels``, in that order,
        all or none; returns rows, step, log_loss like :meth:`update`."""
        body: dict[str, Any] = {"ids": list(ids), "labels": np.asarray(labels).tolist()}
        if sample_weight is not None:
            body["weights"] = np.asarray(sample_weight, dtype=float).tolist()
        return self._call("POST", f"/v1/models/{name}/feedback", json=body)

    def stream(
        self, name: str, source: str | os.PathLike[str] | bytes, fmt: str, **kw: Any
    ) -> Iterator[dict[str, Any]]:
        """Stream a file (or bytes) to the model's ``/stream``; yields the server's NDJSON lines
        as dicts (the last says whether the stream stopped on an error: see
        :meth:`stream_file`). ``kw``: ``progress`` (a tqdm bar, default True),
        ``return_predictions``, ``chunk_bytes``, ``compress`` (``"gzip"``, the default: the body
        is sent gzip-compressed, level 1, about a fifth of the bytes of a click log; ``None``:
        as it is, e.g. a file already compressed, or a server older than gzip bodies)."""
        return self._stream(f"/v1/models/{name}/stream", source, fmt, **kw)

    def stream_file(
        self, name: str, source: str | os.PathLike[str] | bytes, fmt: str, **kw: Any
    ) -> dict[str, Any]:
        """Stream a whole file; the final summary line. Raises :class:`StreamError` when the
        stream stopped on an error (the rows before it are learned)."""
        return _summary(self.stream(name, source, fmt, **kw))

    def _stream(
        self, path: str, source: str | os.PathLike[str] | bytes, fmt: str, *,
        progress: bool = True, return_predictions: bool = False, chunk_bytes: int = 1 << 20,
        compress: str | None = "gzip",
    ) -> Iterator[dict[str, Any]]:  # fmt: skip
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"fmt must be one of {sorted(CONTENT_TYPES)}, got {fmt!r}")
        if compress not in (None, "gzip"):
            raise ValueError(f"compress must be 'gzip' or None, got {compress!r}")

        def chunks() -> Iterator[bytes]:
            from tqdm import tqdm

            if isinstance(source, bytes):
                total, handle = len(source), None
            else:
                total, handle = Path(source).stat().st_size, open(source, "rb")  # noqa: SIM115
            with tqdm(total=total, unit="B", unit_scale=True, disable=not progress) as bar:
                offset = 0
                while True:
                    if handle is None:
                        chunk = source[offset : offset + chunk_bytes]
                        offset += len(chunk)
                    else:
                        chunk = handle.read(chunk_bytes)
                    if not chunk:
                        break
                    bar.update(len(chunk))
                    yield chunk
            if handle is not None:
                handle.close()

        headers = {"Content-Type": CONTENT_TYPES[fmt]}
        if compress is not None:
            headers["Content-Encoding"] = compress
        with self.http.stream(
            "POST", path, content=gzipped(chunks()) if compress else chunks(),
            params={"return_predictions": str(return_predictions).lower()}, headers=headers,
        ) as response:  # fmt: skip
            if response.status_code >= 400:
                response.read()
                raise AdaserveError(response.status_code, response.json())
            for line in response.iter_lines():
                if line:
                    yield orjson.loads(line)

    # ------------------------------------------------------------------ experiments
    def create_experiment(
        self, name: str, members: Sequence[str | Mapping[str, Any]], **shared: Any
    ) -> dict[str, Any]:
        """One model per member, all with the same ``shared`` dim or hash_bits, hash_seed,
        dtype, fit_intercept. A member is an optimizer name (``"adam"``), an optimizer
        configuration (``{"name": "adam", "lr": 0.01}``), or a member as the API takes it
        (``{"optimizer": ..., "lazy": "frozen", "name": "model-name"}``)."""
        models = [
            {"optimizer": m} if isinstance(m, str) or "optimizer" not in m else dict(m)
            for m in members
        ]
        return self._call(
            "POST", "/v1/experiments", json={"name": name, "models": models, **shared}
        )

    def list_experiments(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/experiments")["experiments"]

    def leaderboard(self, name: str) -> dict[str, Any]:
        """The experiment's members (progressive log-loss, recent AUC, calibration, loss curve)
        and ``leaderboard``: the member model names, lowest log-loss first."""
        return self._call("GET", f"/v1/experiments/{name}")

    def delete_experiment(self, name: str) -> None:
        self._call("DELETE", f"/v1/experiments/{name}")

    def update_experiment(
        self, name: str, X: Any = None, labels: Any = None, sample_weight: Any = None, *,
        rows: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Learn one batch in every member, in the same order; rows and each member's step and
        log_loss."""
        return self._call(
            "POST", f"/v1/experiments/{name}/updates",
            json=self._batch(X, rows, labels, sample_weight),
        )  # fmt: skip

    def stream_experiment(
        self, name: str, source: str | os.PathLike[str] | bytes, fmt: str, **kw: Any
    ) -> Iterator[dict[str, Any]]:
        """:meth:`stream` to every member of an experiment (the body parsed once)."""
        return self._stream(f"/v1/experiments/{name}/stream", source, fmt, **kw)

    def stream_experiment_file(
        self, name: str, source: str | os.PathLike[str] | bytes, fmt: str, **kw: Any
    ) -> dict[str, Any]:
        """:meth:`stream_file` to every member of an experiment."""
        return _summary(self.stream_experiment(name, source, fmt, **kw))

    # ------------------------------------------------------------------ inspection
    def learning_rates(
        self, name: str, indices: Sequence[int] = (), features: Sequence[str] = ()
    ) -> dict[str | int, dict[str, Any]]:
        """Coordinates keyed by feature name (when asked by name) or index, plus "(intercept)"."""
        params = {}
        if indices:
            params["indices"] = ",".join(str(i) for i in indices)
        if features:
            params["features"] = ",".join(features)
        out = self._call("GET", f"/v1/models/{name}/learning-rates", params=params)
        rates: dict[str | int, dict[str, Any]] = {}
        for i, coordinate in enumerate(out["coordinates"]):
            rates[features[i - len(indices)] if i >= len(indices) else coordinate["index"]] = (
                coordinate
            )
        if out["intercept"] is not None:
            rates["(intercept)"] = out["intercept"]
        return rates

    def watch(
        self, name: str, feature: str | None = None, index: int | None = None,
        every: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Watch a feature (by name or index): its weight, effective rate and state are recorded
        every ``every`` rows (at batch ends) from now on; the watch list."""
        body = {"feature": feature, "index": index, "every": every}
        return self._call(
            "POST", f"/v1/models/{name}/watches",
            json={k: v for k, v in body.items() if v is not None},
        )  # fmt: skip

    def unwatch(self, name: str, index: int) -> None:
        self._call("DELETE", f"/v1/models/{name}/watches/{index}")

    def watch_curves(self, name: str, since_step: int = -1) -> dict[str, Any]:
        """Each watched feature's ``steps``, ``weight``, ``effective_learning_rate``,
        ``times_touched`` and ``state`` series (``curves``), and the watch settings."""
        return self._call(
            "GET", f"/v1/models/{name}/watches/samples", params={"since_step": since_step}
        )

    def rate_summary(self, name: str, top: int = 20, bins: int = 20) -> dict[str, Any]:
        return self._call(
            "GET", f"/v1/models/{name}/learning-rates/summary", params={"top": top, "bins": bins}
        )

    # ------------------------------------------------------------------ persistence
    def export(self, name: str) -> bytes:
        return self._call("GET", f"/v1/models/{name}/export")

    def import_model(self, name: str, data: bytes) -> dict[str, Any]:
        return self._call(
            "POST", f"/v1/models/{name}/import", content=data,
            headers={"Content-Type": "application/x-adaserve-model"},
        )  # fmt: skip

    def snapshot(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/models/{name}/snapshot")


def gzipped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` as one gzip stream, compressed as they come (level 1: fast, most of the gain
    on text rows)."""
    compressor = zlib.compressobj(1, wbits=31)
    for chunk in chunks:
        out = compressor.compress(chunk)
        if out:
            yield out
    yield compressor.flush()


def _summary(lines: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """A stream's final summary line; :class:`StreamError` when it stopped on an error or ended
    without one."""
    last: dict[str, Any] = {}
    for line in lines:
        last = line
    if not last.get("done") or last.get("error") is not None:
        raise StreamError(last)
    return last
