"""Every request and response body of the API, documented for /docs and /openapi.json.

Update and predict bodies are decoded with orjson and validated by :mod:`optim.batch` (one
pydantic-validated JSON row would cost more than learning it); their models here document the
shape and feed the OpenAPI schema. Their answers are encoded by :func:`json_response` for the
same reason, in the shape of their ``response_model`` here.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field

Label = int | bool | float
MAX_READ_REPLICAS = 16


class OptimizerConfig(BaseModel):
    """An optimizer by name plus its hyperparameters (see ``GET /v1/optimizers``)."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="one of sgd, momentum, nesterov, adagrad, rmsprop, adadelta, "
                      "adam, adamax, nadam, ftrl, or auto (a portfolio)")  # fmt: skip


class FeedbackConfig(BaseModel):
    """Delayed labels: rows predicted with ids wait for their label this long, then expire."""

    model_config = ConfigDict(extra="forbid")
    ttl_seconds: float = Field(
        gt=0, le=366 * 86_400, allow_inf_nan=False,
        description="seconds a pending row waits for its label (by the server's wall clock)",
    )  # fmt: skip
    on_expiry: Literal["negative", "drop"] = Field(
        "negative", description="negative: learned as a non-click (label 0); drop: forgotten"
    )


class CreateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="model name, [A-Za-z0-9_.-]{1,64}")
    dim: int | None = Field(None, description="number of coordinates (or give hash_bits)")
    hash_bits: int | None = Field(None, description="dim = 2**hash_bits")
    optimizer: OptimizerConfig | str = Field(
        "auto", description='name or {name, ...}; default "auto" (the portfolio, README)'
    )
    lazy: Literal["exact", "frozen"] = Field(
        "exact", description="exact: the dense algorithm; frozen: absent coordinates keep state"
    )
    fit_intercept: bool = True
    dtype: Literal["float64", "float32"] = "float64"
    hash_seed: int = Field(0, description="MurmurHash3 seed for named features")
    recent_window: int = Field(
        10_000,
        le=1_000_000,
        description="rows in the recent progressive metrics (48 bytes each, in the memory budget)",
    )
    normalized: bool = Field(
        False,
        description="normalized updates (VW's --normalized): each coordinate keeps its largest "
        "|x| (state slot 'scale') and learns in units of it; any optimizer",
    )
    invariant: bool = Field(
        False,
        description="importance-invariant updates (a row of weight h is one closed-form step, "
        "as h rows); sgd and adagrad",
    )
    feedback: FeedbackConfig | None = Field(
        None, description="predict with ids, label later (POST /v1/models/{name}/feedback)"
    )
    interactions: list[str] | None = Field(
        None,
        description='crossed features of namespaces, e.g. ["ab", "cc", "abc"] (VW -q and '
        "--interactions; namespaces by first letter; Criteo: I and C; named rows: 'ns^name')",
    )
    ignore: list[str] | None = Field(None, description="namespaces left out (VW --ignore)")
    keep: list[str] | None = Field(None, description="the only namespaces kept (VW --keep)")
    holdout_every: int = Field(
        0,
        description="hold out the model's k-th, 2k-th, ... row (counting every row it is given, "
        "across requests), as VW's --holdout_period: scored on the model as it stands, never "
        "learned, reported in `holdout`; 0: none",
    )
    read_replicas: int = Field(
        0,
        ge=0,
        le=MAX_READ_REPLICAS,
        description="on a Ray cluster: read-only copies on other actors that answer "
        "predictions too (GET /v1/cluster lists them); the single process refuses more than 0",
    )


class ModelConfig(BaseModel):
    """The full configuration of a model, defaults filled in."""

    optimizer: dict[str, Any]
    dim: int
    hash_bits: int | None
    lazy: str
    fit_intercept: bool
    dtype: str
    hash_seed: int
    recent_window: int
    normalized: bool = False
    invariant: bool = False
    feedback: FeedbackConfig | None = None
    interactions: list[str] = []
    ignore: list[str] = []
    keep: list[str] = []
    holdout_every: int = 0


class WindowMetrics(BaseModel):
    log_loss: float | None = Field(description="weighted progressive log-loss")
    mean_prediction: float | None
    mean_label: float | None
    calibration: float | None = Field(description="mean prediction / mean label")


class RecentMetrics(WindowMetrics):
    rows: int
    auc: float | None = Field(description="ROC AUC of the recent rows' progressive predictions")


class ProgressiveMetrics(BaseModel):
    rows: int
    overall: WindowMetrics
    recent: RecentMetrics
    curve: list[list[float]] = Field(
        description="[rows, log-loss of the rows since the previous point], over the whole stream"
    )


class DelayQuantiles(BaseModel):
    labels: int = Field(description="labels the quantiles are over (the recent window's)")
    p50: float | None
    p90: float | None
    p99: float | None


class FeedbackInfo(FeedbackConfig):
    pending: int = Field(description="rows predicted with an id and waiting for their label")
    pending_bytes: int = Field(description="their memory, counted in the memory budget")
    labelled: int
    expired: int = Field(description="rows expired and learned as non-clicks")
    dropped: int = Field(description="rows expired and forgotten")
    join_rate: float | None = Field(description="labelled / (labelled + expired + dropped)")
    served: ProgressiveMetrics = Field(
        description="metrics of the probabilities served at prediction, against the labels "
        "that arrived"
    )
    delay_seconds: DelayQuantiles = Field(description="prediction to label, recent labels")


class ModelInfo(BaseModel):
    name: str
    status: Literal["ready"] = "ready"
    config: ModelConfig
    step: int = Field(description="rows learned so far (the optimizer's step)")
    metrics: ProgressiveMetrics
    holdout: ProgressiveMetrics = Field(
        description="the same metrics of the rows held out (scored, not learned)"
    )
    touched_coordinates: int = Field(description="coordinates present in at least one row")
    state_bytes: int
    portfolio: dict[str, Any] | None = Field(
        None,
        description='optimizer "auto": the leader, its switches and every member\'s recent and '
        "overall progressive log-loss (the leaderboard); null for one optimizer",
    )
    feedback: FeedbackInfo | None = Field(None, description="with a feedback setting")


class UnavailableModel(BaseModel):
    """A model nothing could be recovered from at start-up (quarantined): its files are kept
    for an operator, ``DELETE`` removes them; its other routes answer 503."""

    name: str
    status: Literal["unavailable"] = "unavailable"
    reason: str = Field(description="why it could not be recovered")


class ModelList(BaseModel):
    models: list[ModelInfo | UnavailableModel]


class ClusterNode(BaseModel):
    """A node of the cluster (the process itself when embedded) and the models it holds."""

    id: str
    address: str
    cpus: float
    memory_bytes: int = Field(description="the node's memory (Ray's resource when on a cluster)")
    placed_bytes: int = Field(description="state bytes of the models placed on it, and reserved")
    models: list[str]
    replicas: list[str] = Field(description="the models it holds a read replica of")


class ModelHost(BaseModel):
    """The process that owns a model (its actor on a cluster) and its node."""

    node: str
    pid: int | None


class ReplicaInfo(BaseModel):
    """A model's read replica: where it is and how far behind its owner."""

    node: str | None = Field(description="null while it is placed")
    pid: int | None
    state: Literal["ready", "behind", "starting"] = Field(
        description="ready: answers predictions; behind: misses more acknowledged rows than "
        "ADASERVE_REPLICA_MAX_ROWS_BEHIND (the owner answers); starting: being made or loaded"
    )
    step: int | None = Field(description="the owner's step it holds")
    rows_behind: int | None = Field(description="acknowledged rows it does not hold yet")
    predictions: int = Field(description="prediction requests it answered")


class ClusterInfo(BaseModel):
    mode: Literal["embedded", "ray"]
    nodes: list[ClusterNode]
    models: dict[str, Literal["ready", "recovering", "unavailable"]]
    hosts: dict[str, ModelHost] = Field(description="the serving models' owners")
    replicas: dict[str, list[ReplicaInfo]] = Field(
        {}, description="each model's read replicas (a model with read_replicas)"
    )


class CsrBatch(BaseModel):
    """Rows in compressed sparse row form (0-based indices < dim)."""

    indptr: list[int]
    indices: list[int]
    values: list[float]
    labels: list[Label] | None = Field(None, description="0/1, -1/+1 or booleans")
    weights: list[float] | None = Field(None, description="importance weights >= 0")


class NamedRow(BaseModel):
    features: dict[str, float | str | bool] = Field(
        description='{"IQ": 120} is feature IQ = 120; {"city": "paris"} is city=paris = 1'
    )
    label: Label | None = None
    weight: float | None = None


class NamedRows(BaseModel):
    rows: list[NamedRow]


class CsrPrediction(CsrBatch):
    """Rows to score; with ``ids`` (a model with feedback), kept pending for their label."""

    ids: list[str] | None = Field(None, description="one id per row, none of them pending")


class NamedPrediction(NamedRows):
    ids: list[str] | None = Field(None, description="one id per row, none of them pending")


class FeedbackLabels(BaseModel):
    """Labels for pending rows, learned in this order (all or none)."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str]
    labels: list[Label] = Field(description="0/1, -1/+1 or booleans, one per id")
    weights: list[float] | None = Field(None, description="importance weights >= 0")


class FeedbackLine(BaseModel):
    """One line of an NDJSON body of labels (application/x-ndjson)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    label: Label
    weight: float | None = None


class ExperimentMember(BaseModel):
    """A member model: its optimizer, the model to send it (``<experiment>.<n>`` by default)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, description="the member model's name")
    optimizer: OptimizerConfig | str = "adagrad"
    lazy: Literal["exact", "frozen"] = "exact"


class CreateExperiment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dim: int | None = None
    hash_bits: int | None = None
    hash_seed: int = 0
    dtype: Literal["float64", "float32"] = "float64"
    fit_intercept: bool = True
    models: list[ExperimentMember]


class MemberStanding(BaseModel):
    model: str
    optimizer: dict[str, Any]
    lazy: str
    rows: int
    log_loss: float | None
    recent_log_loss: float | None
    auc: float | None = Field(description="ROC AUC over the recent window")
    calibration: float | None
    curve: list[list[float]] = Field(description="[rows, block log-loss] points")


class ExperimentInfo(BaseModel):
    name: str
    members: list[MemberStanding]
    leaderboard: list[str] = Field(description="member models, lowest progressive log-loss first")
    unavailable: dict[str, str] = Field(
        {}, description="members that could not be recovered at start-up, and why"
    )


class ExperimentList(BaseModel):
    experiments: list[ExperimentInfo]


class ExperimentUpdate(BaseModel):
    rows: int
    members: dict[str, dict[str, Any]] = Field(description="each member's step and batch log-loss")


class UpdateResult(BaseModel):
    rows: int = Field(description="rows applied")
    step: int = Field(description="the model's step after the batch")
    log_loss: float | None = Field(description="progressive log-loss of the rows learned")
    holdout_rows: int = Field(0, description="rows held out: scored, not learned")
    holdout_log_loss: float | None = Field(None, description="log-loss of the rows held out")
    probabilities: list[float] | None = Field(
        None, description="pre-update probabilities (with ?return_predictions=true)"
    )


class Predictions(BaseModel):
    probabilities: list[float]
    margins: list[float]


class Coordinate(BaseModel):
    index: int
    feature: str | None = Field(description="the feature name, when asked by name or known")
    seen: bool = Field(
        description="whether the coordinate was in a learned row (asked by name: and that name"
        " was seen there); a feature never seen has no weight, rate or state"
    )
    shared_with: str | None = Field(
        None, description="the name first seen at this coordinate, when another (a hash collision)"
    )
    weight: float | None
    effective_learning_rate: float | None
    state: dict[str, float] | None = Field(description="the optimizer's state slots by name")
    times_touched: int
    last_touched_step: int


class LearningRates(BaseModel):
    model: str
    step: int
    member: str | None = Field(
        None, description='optimizer "auto": the member read (the leader unless one was named)'
    )
    coordinates: list[Coordinate]
    intercept: Coordinate | None


class FrequencyPoint(BaseModel):
    index: int
    feature: str | None = Field(description="the feature name, when known")
    times_touched: int
    effective_learning_rate: float
    weight: float


class FrequencyBin(BaseModel):
    min_touches: int = Field(
        description="the bin holds coordinates touched min_touches to max_touches times"
    )
    max_touches: int
    coordinates: int = Field(description="touched coordinates in the bin")
    measured: int = Field(
        description="coordinates the medians are computed over (at most 10,000, seeded)"
    )
    median_times_touched: float
    median_effective_learning_rate: float
    median_abs_weight: float


class RatesByFrequency(BaseModel):
    model: str
    step: int
    member: str | None = Field(
        None, description='optimizer "auto": the member read (the leader unless one was named)'
    )
    touched: int = Field(description="coordinates present in at least one row")
    sample: int = Field(description="the most points asked for")
    seed: int
    points: list[FrequencyPoint] = Field(
        description="a sample of touched coordinates, each bin of times touched sharing it "
        "equally (a smaller bin whole), by bin then index"
    )
    bins: list[FrequencyBin] = Field(description="non-empty bins, fewest touches first")


class AddWatch(BaseModel):
    """A coordinate to watch: by feature name (hashed as named rows are) or by index."""

    model_config = ConfigDict(extra="forbid")
    feature: str | None = Field(None, min_length=1, description="a feature key, e.g. IQ")
    index: int | None = Field(None, ge=0, description="a coordinate (dim is the intercept)")
    every: int | None = Field(
        None, ge=1, description="the model's rows between samples from now on (all its watches)"
    )


class WatchSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every: int = Field(ge=1, description="the model's rows between samples (all its watches)")


class Watch(BaseModel):
    index: int
    feature: str | None = Field(description="the name it was watched by, or the one learned")


class WatchList(BaseModel):
    model: str
    every: int = Field(
        description="a sample is taken at the end of the first group of batches learned at or "
        "after each multiple of this many rows (never per row)"
    )
    limit: int = Field(description="coordinates a model may watch at most")
    capacity: int = Field(description="samples kept (a ring: the oldest dropped)")
    watches: list[Watch]


class WatchCurve(Watch):
    steps: list[int] = Field(description="the model's rows at each sample")
    weight: list[float]
    effective_learning_rate: list[float]
    times_touched: list[int]
    state: dict[str, list[float]] = Field(description="each optimizer state slot by name")


class WatchCurves(WatchList):
    saved: bool = Field(description="false while the newest samples could not be written")
    problem: str | None = Field(description="why they could not, if so")
    curves: list[WatchCurve]


class Snapshot(BaseModel):
    model: str
    step: int
    bytes: int


class ImportResult(Snapshot):
    created: bool = Field(description="true: no model had this name, it was made from the file")


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code")
    detail: str = Field(description="what went wrong, in a sentence")
    where: dict[str, Any] = Field(description="the row / field / line concerned")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (404, "unknown model"),
        (413, "body or batch too large"),
        (422, "invalid input; nothing was changed"),
    )
}


def json_response(content: dict[str, Any]) -> Response:
    """``content`` as JSON, encoded directly by orjson (numpy arrays and scalars included).

    For hot routes whose ``response_model`` documents the shape: FastAPI would validate the
    content against that model and serialize it again, several times the cost of scoring one
    row. The bytes are the same as pydantic's (both print floats as shortest round-trips, NaN
    and infinities as null); the route must build exactly the model's fields.
    """
    body = orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, media_type="application/json")
