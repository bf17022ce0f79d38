"""Every 4xx body is ``{"error": "<code>", "detail": "<sentence>", "where": {...}}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from optim import AdaserveError
from service.engine.errors import (
    EngineError,
    ExperimentExists,
    ExperimentNotFound,
    FeedbackIdsRefused,
    FeedbackNotEnabled,
    InvalidExperiment,
    InvalidMember,
    ModelDeleted,
    ModelExists,
    ModelInExperiment,
    ModelNotFound,
    ModelRecovering,
    ModelUnavailable,
    OverMemoryBudget,
    PendingIdsConflict,
    StorageUnavailable,
    TooManyModels,
    TooManyPending,
    TooManyWatches,
    WatchNotFound,
)


class ApiError(Exception):
    """An error with its HTTP status, machine code, human sentence and location."""

    def __init__(
        self, status: int, code: str, detail: str, where: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.where = where or {}

    @classmethod
    def from_adaserve(cls, error: AdaserveError, **where: Any) -> ApiError:
        return cls(422, "invalid_input", str(error), {**error.where, **where})


def error_body(code: str, detail: str, where: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": code, "detail": detail, "where": where or {}}


_HTTP_CODES = {
    401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
    409: "conflict", 413: "payload_too_large", 415: "unsupported_media_type",
}  # fmt: skip


# The engine's domain errors: status and code of each (the one place they are decided).
ENGINE_ERRORS: dict[type[EngineError], tuple[int, str]] = {
    ModelNotFound: (404, "model_not_found"),
    ModelDeleted: (404, "model_deleted"),
    ModelExists: (409, "model_exists"),
    ModelInExperiment: (409, "model_in_experiment"),
    TooManyModels: (422, "too_many_models"),
    OverMemoryBudget: (422, "over_memory_budget"),
    FeedbackNotEnabled: (422, "feedback_not_enabled"),
    PendingIdsConflict: (409, "duplicate_ids"),
    FeedbackIdsRefused: (422, "invalid_ids"),
    TooManyPending: (429, "too_many_pending"),
    ModelUnavailable: (503, "model_unavailable"),
    ModelRecovering: (503, "model_recovering"),
    StorageUnavailable: (503, "storage_unavailable"),
    ExperimentNotFound: (404, "experiment_not_found"),
    ExperimentExists: (409, "experiment_exists"),
    InvalidExperiment: (422, "invalid_input"),
    InvalidMember: (422, "invalid_input"),
    TooManyWatches: (422, "too_many_watches"),
    WatchNotFound: (404, "watch_not_found"),
}


def engine_error(exc: EngineError) -> ApiError:
    """The HTTP answer to an engine's domain error."""
    status, code = next(answer for kind, answer in ENGINE_ERRORS.items() if isinstance(exc, kind))
    if isinstance(exc, InvalidMember):
        return ApiError(status, code, exc.detail, exc.where)
    where: dict[str, Any] = {"model": exc.model} if exc.model else {}
    if exc.field is not None:
        where["field"] = exc.field
    if isinstance(exc, ModelInExperiment | ExperimentNotFound | ExperimentExists):
        where["experiment"] = exc.experiment
    if isinstance(exc, PendingIdsConflict | FeedbackIdsRefused):
        where["ids"] = exc.ids
    return ApiError(status, code, exc.detail, where)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            error_body(exc.code, exc.detail, exc.where), status_code=exc.status, headers=headers
        )

    @app.exception_handler(EngineError)
    async def domain_error(request: Request, exc: EngineError) -> JSONResponse:
        return await api_error(request, engine_error(exc))

    @app.exception_handler(AdaserveError)
    async def adaserve_error(_: Request, exc: AdaserveError) -> JSONResponse:
        return JSONResponse(error_body("invalid_input", str(exc), exc.where), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(p) for p in first.get("loc", ())]
        detail = f"{'.'.join(location)}: {first.get('msg', 'invalid request')}"
        return JSONResponse(
            error_body("invalid_input", detail, {"field": ".".join(location[1:]) or None}),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI's answer to a JSON body that is not UTF-8: bad input, as on every route
            detail = f"the body is not valid JSON: {exc.__cause__}"
            return JSONResponse(error_body("invalid_json", detail), status_code=422)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)
