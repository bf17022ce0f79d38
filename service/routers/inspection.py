"""Per-coordinate learning rates and their summary."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from optim import BatchError, OnlineLogisticRegression
from optim.frequency import MAX_SAMPLE
from optim.portfolio import PortfolioLogisticRegression
from service import dependencies as deps
from service.auth import READ
from service.registry import ManagedModel
from service.schemas import ERROR_RESPONSES, LearningRates, RatesByFrequency
from service.websafety import MediaTypeRoute

router = APIRouter(
    prefix="/v1/models/{name}",
    tags=["inspection"],
    responses=ERROR_RESPONSES,
    route_class=MediaTypeRoute,
)


Member = Annotated[
    str | None,
    Query(description='optimizer "auto": the member to read, by name (default: the leader)'),
]


def _read(model: Any, member: str | None) -> tuple[OnlineLogisticRegression, str | None]:
    """What to read: the model itself, or for optimizer "auto" the leader or the member named
    (and its name)."""
    if isinstance(model, PortfolioLogisticRegression):
        return model.member(member), member or model.leader
    if member is not None:
        raise BatchError('only a model whose optimizer is "auto" has members', field="member")
    return model, None


def _split(text: str | None, field: str, as_int: bool) -> list:
    if not text:
        return []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not as_int:
        return parts
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise BatchError(f"must be comma-separated integers, got {text!r}", field=field) from None


@router.get(
    "/learning-rates",
    dependencies=[READ],
    response_model=LearningRates,
    summary="Weight, effective learning rate and state of coordinates, caught up",
)
async def learning_rates(
    managed: Annotated[ManagedModel, Depends(deps.model)],
    indices: Annotated[str | None, Query(description="comma-separated coordinates")] = None,
    features: Annotated[str | None, Query(description="comma-separated feature names")] = None,
    member: Member = None,
) -> dict[str, Any]:
    wanted = _split(indices, "indices", True)
    names = _split(features, "features", False)
    if len(wanted) + len(names) > 10_000:
        raise BatchError("at most 10,000 coordinates per request", field="indices")

    def inspect(served: Any) -> dict[str, Any]:
        model, name = _read(served, member)
        coordinates = model.inspect_coordinates(wanted, names)
        intercept = model.inspect_coordinates([model.dim])[0] if model.fit_intercept else None
        return {"model": managed.name, "step": model.step, "coordinates": coordinates,
                "intercept": intercept, "member": name}  # fmt: skip

    return await managed.read(inspect)


@router.get(
    "/learning-rates/summary",
    dependencies=[READ],
    summary="Quantiles, histograms and top-k of effective rates and weights (touched coordinates)",
)
async def learning_rate_summary(
    managed: Annotated[ManagedModel, Depends(deps.model)],
    top: Annotated[int, Query(ge=0, le=10_000)] = 20,
    bins: Annotated[int, Query(ge=1, le=1_000)] = 20,
    min_touches: Annotated[
        int,
        Query(
            ge=1,
            description="the top by effective rate leaves out coordinates touched fewer times "
            "(features seen once or twice keep their initial rate)",
        ),
    ] = 10,
    member: Member = None,
) -> dict[str, Any]:
    def summary(served: Any) -> dict[str, Any]:
        model, name = _read(served, member)
        return {**model.rate_summary(top=top, bins=bins, min_touches=min_touches), "member": name}

    return await managed.read(summary)


@router.get(
    "/learning-rates/by-frequency",
    dependencies=[READ],
    response_model=RatesByFrequency,
    summary="Effective learning rate against times touched, on a sample stratified by frequency",
)
async def learning_rates_by_frequency(
    managed: Annotated[ManagedModel, Depends(deps.model)],
    sample: Annotated[
        int, Query(ge=1, le=MAX_SAMPLE, description="the most points returned")
    ] = 2_000,
    seed: Annotated[
        int, Query(ge=0, lt=2**63, description="the same seed and model give the same points")
    ] = 0,
    member: Member = None,
) -> dict[str, Any]:
    def by_frequency(served: Any) -> dict[str, Any]:
        model, name = _read(served, member)
        rates = model.rates_by_frequency(sample=sample, seed=seed)
        return {"model": managed.name, **rates, "member": name}

    return await managed.read(by_frequency)
