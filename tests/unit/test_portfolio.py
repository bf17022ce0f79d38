"""``"optimizer": "auto"`` (optim.portfolio): every member is exactly the model of its
configuration alone, and every prediction is the documented mixture of the members' predictions
on the rows before it."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from streams import sparse_stream, to_csr

from optim import NonFiniteUpdate, OnlineLogisticRegression
from optim.errors import ConfigError, ModelFileError
from optim.metrics import log_losses
from optim.portfolio import (
    COMBINATION_PRIOR,
    FIRST_SHARE,
    MEMBERS,
    MIXING_RATE,
    Member,
    PortfolioLogisticRegression,
    load_model,
)
from service.cli import main

DIM = 16
MEMBERS_NAMES = [m.name for m in MEMBERS]


def stream(seed: int = 3) -> tuple[sp.csr_array, np.ndarray, np.ndarray]:
    rows, labels, weights = sparse_stream(seed, dim=DIM, n_rows=600)
    return to_csr(rows, DIM), labels, weights


def mixture_by_rule(margins: np.ndarray, labels: np.ndarray, weights: np.ndarray):
    """The documented mixture, row by row in plain Python (probabilities, not logs): each
    row's mixed margin and the leader after it."""
    n_members = margins.shape[0]
    shares = [FIRST_SHARE] + [(1 - FIRST_SHARE) / (n_members - 1)] * (n_members - 1)
    priors = [(1 - COMBINATION_PRIOR) / n_members] * n_members + [COMBINATION_PRIOR]
    losses = [0.0] * (n_members + 1)
    mixed, leaders = [], []
    for i in range(margins.shape[1]):
        y, h = labels[i], weights[i]
        p = [1 / (1 + math.exp(-m)) for m in margins[:, i]]
        p.append(sum(c * pk for c, pk in zip(shares, p, strict=False)))
        a = [prior * math.exp(-loss) for prior, loss in zip(priors, losses, strict=True)]
        mix = sum(aj * pj for aj, pj in zip(a, p, strict=True)) / sum(a)
        mixed.append(math.log(mix / (1 - mix)))
        for j, pj in enumerate(p):
            losses[j] += h * -(y * math.log(pj) + (1 - y) * math.log(1 - pj))
        gradients = [y * pk / p[-1] + (1 - y) * (1 - pk) / (1 - p[-1]) for pk in p[:-1]]
        shares = [c * math.exp(MIXING_RATE * h * g) for c, g in zip(shares, gradients, strict=True)]
        shares = [c / sum(shares) for c in shares]
        leaders.append(min(range(n_members), key=lambda k: (losses[k], k)))
    return np.array(mixed), np.array(leaders)


def zipped(members: dict[str, bytes]) -> io.BytesIO:
    """A model file of these members (as ``to_bytes`` writes them, uncompressed)."""
    written = io.BytesIO()
    with zipfile.ZipFile(written, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    written.seek(0)
    return written


@pytest.mark.parametrize("lazy", ["exact", "frozen"])
def test_members_equal_standalone_models_and_predictions_are_the_mixture(lazy: str) -> None:
    X, y, w = stream()
    auto = PortfolioLogisticRegression(dim=DIM, lazy=lazy, window=50)
    alone = [OnlineLogisticRegression(**m.settings, dim=DIM, lazy=lazy) for m in MEMBERS]
    margins, alone_margins = [], [[] for _ in alone]
    for start, stop in ((0, 1), (1, 200), (200, 201), (201, 600)):  # uneven batches
        result = auto.learn(X[start:stop], y[start:stop], w[start:stop])
        margins.append(result.margins)
        for k, model in enumerate(alone):
            alone_margins[k].append(
                model.learn(X[start:stop], y[start:stop], w[start:stop]).margins
            )
    margins = np.concatenate(margins)
    per_member = np.array([np.concatenate(m) for m in alone_margins])
    for member, model in zip(MEMBERS, alone, strict=True):
        mine = auto.member(member.name)
        np.testing.assert_allclose(mine.table, model.table, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(mine.counters, model.counters)
        assert mine.step == model.step == 600
        mine_state, alone_state = mine.state_arrays(), model.state_arrays()
        for key, value in alone_state.items():
            np.testing.assert_allclose(mine_state[key], value, rtol=0, atol=1e-12, err_msg=key)

    mixed, leaders = mixture_by_rule(per_member, y, w)
    np.testing.assert_allclose(margins, mixed, rtol=1e-9, atol=1e-9)
    assert len(set(leaders.tolist())) > 1, "the stream should make the lead change hands"
    assert auto.leader == MEMBERS[leaders[-1]].name
    assert auto.switches == int(np.count_nonzero(np.diff(np.append(0, leaders))))
    # the mixture's loss is within the Aggregating Algorithm's bound of every member's
    weighted = [float(np.sum(w * log_losses(m, y))) for m in per_member]
    ours = float(np.sum(w * log_losses(margins, y)))
    assert ours <= min(weighted) + math.log(len(MEMBERS) / (1 - COMBINATION_PRIOR)) + 1e-9
    # predicting: the members' predictions now, mixed by the mixture as it stands
    now = np.array([model.decision_function(X[:50]) for model in alone])
    after, _ = mixture_by_rule(
        np.column_stack([per_member, now[:, :1]]), np.append(y, 0.0), np.append(w, 0.0)
    )
    np.testing.assert_allclose(auto.decision_function(X[:1]), after[-1:], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        auto.predict_proba(X[:50])[:, 1],
        1 / (1 + np.exp(-auto.decision_function(X[:50]))),
        rtol=1e-12,
    )
    assert auto.step == 600
    assert auto.metrics.rows == 600


def test_leaderboard_and_inspection_by_member() -> None:
    X, y, w = stream(5)
    auto = PortfolioLogisticRegression(dim=DIM)
    auto.learn(X, y, w)
    board = auto.info()["leaderboard"]
    assert [row["name"] for row in board if row["leader"]] == [auto.leader]
    recents = [row["recent_log_loss"] for row in board]
    assert recents == sorted(recents)
    assert {row["name"] for row in board} == {m.name for m in MEMBERS}
    assert all(row["rows"] == 600 and row["log_loss"] > 0 for row in board)
    lead = auto.inspect_coordinates([0, DIM])
    assert lead[0]["member"] == auto.leader
    assert lead[0]["weight"] == auto.member().inspect_coordinates([0])[0]["weight"]
    member = auto.inspect_coordinates([0], member="ftrl-normalized")[0]
    assert member["member"] == "ftrl-normalized" and set(member["state"]) == {"z", "n", "scale"}
    assert auto.rate_summary(member="vw")["member"] == "vw"
    with pytest.raises(ConfigError, match="no member 'nope'"):
        auto.inspect_coordinates([0], member="nope")


def test_memory_is_the_members_sum() -> None:
    # (at 2**16 coordinates the state outweighs the portfolio's own metrics, as in practice)
    auto = PortfolioLogisticRegression(hash_bits=16)
    alone = [OnlineLogisticRegression(**m.settings, hash_bits=16) for m in MEMBERS]
    members_bytes = sum(m.memory_bytes for m in alone)
    assert members_bytes <= auto.memory_bytes <= members_bytes * 1.1


def test_a_diverging_member_retires_and_the_rest_carry_on() -> None:
    members = (
        Member("adagrad", {"optimizer": {"name": "adagrad", "lr": 0.1}}),
        Member("wild", {"optimizer": {"name": "sgd", "lr": 1e300}}),
    )
    auto = PortfolioLogisticRegression(members, dim=4, window=10)
    X = sp.csr_array([[1e10, 0, 0, 0], [0, 1.0, 0, 0]] * 5)
    result = auto.learn(X, [1, 0] * 5)
    assert result.rows == 10 and auto.step == 10
    assert "wild" in auto.retired and "non-finite" in auto.retired["wild"]
    assert auto.leader == "adagrad"
    alone = OnlineLogisticRegression({"name": "adagrad", "lr": 0.1}, dim=4)
    np.testing.assert_allclose(alone.learn(X, [1, 0] * 5).margins, result.margins, rtol=1e-12)
    before = auto.member("wild").table.copy()
    auto.learn(X, [0, 1] * 5)
    np.testing.assert_array_equal(auto.member("wild").table, before)  # retired: learns nothing
    assert [r["name"] for r in auto.leaderboard()] == ["adagrad", "wild"]
    assert auto.leaderboard()[1]["recent_log_loss"] is None


def test_a_batch_every_member_refuses_is_refused_whole() -> None:
    members = (
        Member("a", {"optimizer": {"name": "sgd", "lr": 1e300}}),
        Member("b", {"optimizer": {"name": "sgd", "lr": 1e299}}),
    )
    auto = PortfolioLogisticRegression(members, dim=4)
    good = sp.csr_array([[1.0, 0, 0, 0]])
    auto.learn(good * 1e-300, [1])
    tables = [m.table.copy() for m in auto.members.values()]
    with pytest.raises(NonFiniteUpdate):
        auto.learn(sp.csr_array([[1e10, 0, 0, 0]]), [1])
    assert auto.step == 1 and not auto.retired
    for table, model in zip(tables, auto.members.values(), strict=True):
        np.testing.assert_array_equal(model.table, table)


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="unique"):
        PortfolioLogisticRegression((MEMBERS[0], MEMBERS[0]), dim=4)
    with pytest.raises(ConfigError, match="window"):
        PortfolioLogisticRegression(dim=4, window=0)
    with pytest.raises(ConfigError, match="unknown setting"):
        PortfolioLogisticRegression.from_config({"name": "auto", "hysteresis": 0.01}, dim=4)
    with pytest.raises(ConfigError, match="unknown setting"):
        PortfolioLogisticRegression(dim=4, optimizer="adam")
    shared = Member("x", {"optimizer": "adam", "recent_window": 5})
    with pytest.raises(ConfigError, match="shared by the portfolio"):
        PortfolioLogisticRegression((shared,), dim=4)
    with pytest.raises(ConfigError, match="colour") as error:
        PortfolioLogisticRegression((Member("y", {"optimizer": "adam", "colour": 1}),), dim=4)
    assert error.value.field == "members[0]"
    with pytest.raises(ConfigError, match="1 to 16"):
        PortfolioLogisticRegression((), dim=4)


def libsvm_text(X: sp.csr_array, y: np.ndarray) -> str:
    """The rows as libsvm text."""
    lines = []
    for i, label in enumerate(y):
        row = X[[i]]
        pairs = " ".join(f"{j}:{float(v)!r}" for j, v in zip(row.indices, row.data, strict=True))
        lines.append(f"{int(label)} {pairs}\n")
    return "".join(lines)


def test_cli_trains_and_predicts_with_auto(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    X, y, _ = stream()
    data = tmp_path / "rows.libsvm"
    data.write_text(libsvm_text(X, y))
    model_file = tmp_path / "auto.npz"
    argv = ["train", str(data), "--format", "libsvm", "--dim", str(DIM), "--optimizer", "auto"]
    assert main([*argv, "-o", str(model_file), "-q"]) == 0
    trained = load_model(model_file)
    assert isinstance(trained, PortfolioLogisticRegression) and trained.step == len(y)
    probabilities = tmp_path / "p.txt"
    assert main(["predict", str(data), "--format", "libsvm", "--model", str(model_file),
                 "-o", str(probabilities), "-q"]) == 0  # fmt: skip
    written = np.loadtxt(probabilities)
    np.testing.assert_allclose(written, trained.predict_proba(X)[:, 1], rtol=1e-9)
    assert main([*argv, "--lr", "0.1", "-q"]) == 2  # auto has no learning rate
    assert "lr" in capsys.readouterr().err


def test_a_saved_portfolio_continues_as_if_never_saved() -> None:
    X, y, w = stream(7)
    auto = PortfolioLogisticRegression(dim=DIM)
    auto.learn(X[:300], y[:300], w[:300])
    copy = load_model(io.BytesIO(auto.to_bytes()))
    np.testing.assert_array_equal(copy.decision_function(X), auto.decision_function(X))
    assert copy.info() == auto.info()
    np.testing.assert_array_equal(
        copy.learn(X[300:], y[300:], w[300:]).margins, auto.learn(X[300:], y[300:], w[300:]).margins
    )


def test_a_version_1_file_loads_and_its_mixture_starts_afresh() -> None:
    """A file of the portfolio that predicted with its leader alone (format v1, with
    ``hysteresis``): members, leader and metrics kept; the mixture starts from its prior."""
    X, y, w = stream(8)
    auto = PortfolioLogisticRegression(dim=DIM)
    auto.learn(X, y, w)
    buffer = io.BytesIO(auto.to_bytes())
    with zipfile.ZipFile(buffer) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    state = json.loads(str(np.load(io.BytesIO(members["portfolio.npy"]))))
    state["format"] = "adaserve-portfolio-v1"
    state["config"]["optimizer"]["hysteresis"] = 0.01
    del state["combination"], state["log_weights"]
    old = io.BytesIO()
    np.save(old, np.array(json.dumps(state)))
    members["portfolio.npy"] = old.getvalue()
    loaded = load_model(zipped(members))
    assert isinstance(loaded, PortfolioLogisticRegression)
    assert loaded.leader == auto.leader and loaded.step == auto.step
    for name, model in auto.members.items():
        np.testing.assert_array_equal(loaded.member(name).table, model.table)
    assert loaded.info()["combination_weight"] == pytest.approx(COMBINATION_PRIOR)
    state["format"] = "adaserve-portfolio-v3"
    bad = io.BytesIO()
    np.save(bad, np.array(json.dumps(state)))
    members["portfolio.npy"] = bad.getvalue()
    with pytest.raises(ModelFileError, match="unknown format"):
        load_model(zipped(members))


def _assert_same_portfolio(
    held: PortfolioLogisticRegression, plain: PortfolioLogisticRegression
) -> None:
    """Every member's state and progressive metrics, and the mixture, equal (1e-12)."""
    for name, model in plain.members.items():
        mine = held.member(name)
        np.testing.assert_allclose(mine.table, model.table, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_array_equal(mine.counters, model.counters)
        assert mine.step == model.step
        assert mine.metrics.to_dict()["overall"] == model.metrics.to_dict()["overall"]
    for mine, theirs in (
        (held._combination, plain._combination),
        (held._log_weights, plain._log_weights),
        (held._recent, plain._recent),
        (held.mixture_weights(), plain.mixture_weights()),
    ):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-12)
    assert (held.leader, held.switches, held.step) == (plain.leader, plain.switches, plain.step)
    assert held.metrics.to_dict()["overall"] == plain.metrics.to_dict()["overall"]


@pytest.mark.parametrize("lazy", ["exact", "frozen"])
def test_held_out_rows_are_scored_by_the_mixture_and_learned_by_no_one(lazy: str) -> None:
    """holdout_every k: the portfolio equals one fed only the other rows (every member's state,
    the mixture), each held-out row is scored by the mixture and by every member as they stand,
    and the holdout metrics are those of the mixture's margins on the held-out rows."""
    X, y, w = stream(11)
    k = 7
    auto = PortfolioLogisticRegression(dim=DIM, lazy=lazy, window=50, holdout_every=k)
    plain = PortfolioLogisticRegression(dim=DIM, lazy=lazy, window=50)
    held = (np.arange(1, 601) % k) == 0
    margins = []
    for start, stop in ((0, 1), (1, 200), (200, 201), (201, 600)):  # uneven batches
        part = slice(start, stop)
        kept = np.flatnonzero(~held[part]) + start
        result = auto.learn(X[part], y[part], w[part])
        chosen = held[part]
        assert result.held_out is not None or not chosen.any()
        if result.held_out is not None:
            np.testing.assert_array_equal(result.held_out, chosen)
        if kept.size:
            plain.learn(X[kept], y[kept], w[kept])
        margins.append(result.margins)
    _assert_same_portfolio(auto, plain)
    assert auto.rows_seen == 600 and auto.step == 600 - int(held.sum())
    margins = np.concatenate(margins)
    # the holdout metrics, by hand from the mixture's margins of the held-out rows
    losses = log_losses(margins[held], y[held])
    summary = auto.holdout_metrics.to_dict()["overall"]
    assert auto.holdout_metrics.rows == int(held.sum())
    assert summary["log_loss"] == pytest.approx(np.sum(w[held] * losses) / np.sum(w[held]))
    # the recent AUC (unweighted), by hand over every (click, non-click) pair, ties counting half
    positive, negative = margins[held][y[held] > 0.5], margins[held][y[held] <= 0.5]
    pairs = positive[:, None] - negative[None, :]
    by_pairs = (np.sum(pairs > 0) + 0.5 * np.sum(pairs == 0)) / pairs.size
    assert auto.holdout_metrics.to_dict()["recent"]["auc"] == pytest.approx(by_pairs, abs=1e-9)
    # every member scored the held-out rows too, and holds them in its own holdout metrics
    for model in auto.members.values():
        assert model.holdout_metrics.rows == int(held.sum())
    # saved and loaded, it goes on holding out the same rows
    copy = load_model(io.BytesIO(auto.to_bytes()))
    assert isinstance(copy, PortfolioLogisticRegression)
    assert copy.holdout_every == k and copy.rows_seen == 600
    assert copy.holdout_metrics.to_dict() == auto.holdout_metrics.to_dict()
    X2, y2, w2 = stream(12)
    a = auto.learn(X2[:100], y2[:100], w2[:100])
    b = copy.learn(X2[:100], y2[:100], w2[:100])
    np.testing.assert_array_equal(a.margins, b.margins)
    np.testing.assert_array_equal(a.held_out, b.held_out)
    _assert_same_portfolio(copy, auto)


def test_a_batch_mask_holds_rows_out_of_a_portfolio() -> None:
    """A batch's own ``holdout`` mask (a stream's holdout_every) decides for its rows."""
    import dataclasses

    X, y, w = stream(13)
    auto = PortfolioLogisticRegression(dim=DIM)
    plain = PortfolioLogisticRegression(dim=DIM)
    mask = np.zeros(600, dtype=bool)
    mask[::5] = True
    batch = dataclasses.replace(auto.to_batch(X, y, w, require_labels=True), holdout=mask)
    result = auto.learn_batch(batch)
    np.testing.assert_array_equal(result.held_out, mask)
    plain.learn(X[np.flatnonzero(~mask)], y[~mask], w[~mask])
    _assert_same_portfolio(auto, plain)
    assert auto.holdout_metrics.rows == 120 and auto.holdout_every == 0


def test_a_held_out_row_is_scored_on_the_portfolio_as_it_stands() -> None:
    """Row by row: a held-out row's margin is the mixture's prediction then, and each member's
    holdout loss is its own prediction's then."""
    X, y, w = stream(14)
    auto = PortfolioLogisticRegression(dim=DIM, holdout_every=3)
    plain = PortfolioLogisticRegression(dim=DIM)
    member_losses: dict[str, list[float]] = {name: [] for name in MEMBERS_NAMES}
    for i in range(60):
        row = X[[i]]
        if (i + 1) % 3:
            auto.learn(row, y[i : i + 1], w[i : i + 1])
            plain.learn(row, y[i : i + 1], w[i : i + 1])
            continue
        expected = plain.decision_function(row)
        for name, model in plain.members.items():
            member_losses[name].append(
                float(log_losses(model.decision_function(row), y[i : i + 1])[0])
            )
        result = auto.learn(row, y[i : i + 1], w[i : i + 1])
        assert result.held_out is not None and result.held_out.tolist() == [True]
        np.testing.assert_allclose(result.margins, expected, rtol=0, atol=1e-12)
    held_weights = w[2:60:3]
    for name, model in auto.members.items():
        assert model.holdout_metrics.rows == 20
        assert model.holdout_metrics.to_dict()["overall"]["log_loss"] == pytest.approx(
            np.sum(held_weights * member_losses[name]) / np.sum(held_weights), rel=1e-12
        )
    _assert_same_portfolio(auto, plain)
