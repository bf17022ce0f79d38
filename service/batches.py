"""Request bodies into validated ``optim`` batches: JSON (CSR or named rows) and limits.

A CSR body is read by a compiled reader (:mod:`optim.formats.json_csr`) when it can be; anything
else, and every error, goes through ``orjson`` and :func:`batch_from_json`.
"""

from __future__ import annotations

from typing import Any

import anyio
import numpy as np
import orjson
from fastapi import Request

from optim import Batch, BatchError, OnlineLogisticRegression
from optim.formats.json_csr import read_csr
from service.errors import ApiError
from service.settings import Settings

_CSR_KEYS = {"indptr", "indices", "values", "labels", "weights"}
# Below this many bytes a body is decoded by orjson: for a row or a few, one orjson call (and
# Batch.from_arrays' conversion of its lists) cost less than a call of the compiled reader.
SMALL_BODY_BYTES = 4096
# Bodies from this size on are joined off the event loop (see read_body).
JOIN_ON_LOOP_BYTES = 1 << 20
_ROW_KEYS = {"features", "label", "weight"}


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) more than ``limit`` bytes, declared or sent."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"the body is over {limit:,} bytes", {})
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is over {limit:,} bytes", {})
        chunks.append(chunk)
    if size < JOIN_ON_LOOP_BYTES:
        return b"".join(chunks)
    # Joining a 100 MB upload takes tens of milliseconds; bytes.join drops the GIL while it
    # copies large buffers, so in a worker thread the event loop keeps answering meanwhile.
    return await anyio.to_thread.run_sync(b"".join, chunks)


async def read_json(request: Request, limit: int) -> Any:
    """The decoded JSON body (see :func:`read_body`); 422 when it is not JSON."""
    data = await read_body(request, limit)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {error}", {}) from None


def _rows_batch(rows: Any, model: OnlineLogisticRegression, require_labels: bool) -> Batch:
    if not isinstance(rows, list):
        raise BatchError("must be a list of {features, label, weight} objects", field="rows")
    features, labels, weights = [], [], []
    for r, row in enumerate(rows):
        if not isinstance(row, dict) or "features" not in row:
            raise BatchError("must be an object with 'features'", row=r, field="rows")
        unknown = set(row) - _ROW_KEYS
        if unknown:
            raise BatchError(f"unknown key(s) {sorted(unknown)}", row=r, field="rows")
        features.append(row["features"])
        if "label" in row and row["label"] is not None:
            labels.append(row["label"])
        elif require_labels:
            raise BatchError("is required to learn", row=r, field="label")
        weight = row.get("weight")
        weights.append(1.0 if weight is None else weight)
    has_labels = bool(labels) and len(labels) == len(rows)
    has_weights = any(row.get("weight") is not None for row in rows)
    return Batch.from_rows(
        features,
        labels if has_labels else None,
        weights if has_weights else None,
        hasher=model.hasher,
        require_labels=require_labels,
    )


def batch_from_json(
    body: Any, model: OnlineLogisticRegression, settings: Settings, *, require_labels: bool
) -> Batch:
    """A validated batch from a CSR or named-rows body, within the configured limits."""
    if not isinstance(body, dict):
        raise BatchError("the body must be a JSON object", field="body")
    if "rows" in body:
        if set(body) != {"rows"}:
            raise BatchError(f"unknown key(s) {sorted(set(body) - {'rows'})}", field="body")
        batch = _rows_batch(body["rows"], model, require_labels)
    elif "indptr" in body:
        unknown = set(body) - _CSR_KEYS
        if unknown:
            raise BatchError(f"unknown key(s) {sorted(unknown)}", field="body")
        missing = sorted({"indices", "values"} - set(body))
        if missing:
            raise BatchError(f"missing key(s) {missing}", field="body")
        for key in ("indptr", "indices", "values"):
            if not isinstance(body[key], list):
                raise BatchError("must be a list", field=key)
        batch = Batch.from_arrays(
            body["indptr"], body["indices"], body["values"], body.get("labels"),
            body.get("weights"), dim=model.dim, require_labels=require_labels,
        )  # fmt: skip
    else:
        raise BatchError("the body needs 'rows' or 'indptr', 'indices', 'values'", field="body")
    check_limits(batch, settings)
    return batch


def batch_from_body(
    data: bytes, model: OnlineLogisticRegression, settings: Settings, *, require_labels: bool
) -> Batch:
    """A validated batch from a raw JSON body: what ``orjson.loads`` (422 ``invalid_json``) then
    :func:`batch_from_json` give, with a CSR body read by the compiled reader of
    :mod:`optim.formats.json_csr` when it can. A body it does not handle, or whose arrays do not
    validate, takes the ``orjson`` path, which gives every error."""
    arrays = read_csr(data) if len(data) >= SMALL_BODY_BYTES else None
    if arrays is not None:
        try:
            batch = Batch.from_arrays(*arrays, dim=model.dim, require_labels=require_labels)
        except BatchError:
            pass  # the slow path below reports it, exactly as without the fast path
        else:
            check_limits(batch, settings)
            return batch
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON: {error}", {}) from None
    return batch_from_json(body, model, settings, require_labels=require_labels)


def check_limits(batch: Batch, settings: Settings) -> None:
    if batch.n_rows > settings.max_rows_per_batch:
        raise ApiError(
            413, "batch_too_large",
            f"{batch.n_rows:,} rows; at most {settings.max_rows_per_batch:,} per batch",
            {"field": "rows"},
        )  # fmt: skip
    check_row_sizes(batch, settings.max_nnz_per_row)


def check_row_sizes(batch: Batch, limit: int) -> None:
    """413 ``row_too_large`` naming the first row of more than ``limit`` non-zeros."""
    if batch.nnz > limit:  # else no row can be over the limit
        sizes = np.diff(batch.indptr)
        over = np.flatnonzero(sizes > limit)
        if over.size:
            row = int(over[0])
            raise ApiError(
                413, "row_too_large",
                f"{int(sizes[row]):,} non-zeros; at most {limit:,} per row", {"row": row},
            )  # fmt: skip
