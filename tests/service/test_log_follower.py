"""A read-only copy kept up with a model's files (:class:`~service.storage.LogFollower`, what a
cluster's read replica runs): after each catch-up it equals the writer's model bit for bit,
across snapshots (a new log), pruned logs and an import (both: load anew)."""

from __future__ import annotations

import pytest
from test_storage import OPTIMIZER, assert_same, batches, replay

from optim import OnlineLogisticRegression
from service.storage import LogFollower, LostTrack, ModelStorage, learn_record


class Copy:
    """A follower and the state it keeps, loaded anew when it loses track (as the replica)."""

    def __init__(self, directory) -> None:
        self.follower = LogFollower(directory)
        self.model = self.follower.load()
        self.reloads = 0

    def catch_up(self) -> OnlineLogisticRegression:
        try:
            self.follower.follow(lambda record: learn_record(self.model, record))
        except LostTrack:
            self.reloads += 1
            self.model = self.follower.load()
            self.follower.follow(lambda record: learn_record(self.model, record))
        return self.model


def test_a_copy_follows_the_log_across_snapshots_and_an_import(tmp_path) -> None:
    applied = batches(12)
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    copy = Copy(tmp_path / "m")

    def learn(batch) -> None:
        storage.append(batch, model.rows_seen)
        model.learn_batch(batch)

    for i, batch in enumerate(applied[:6]):  # a record at a time, then a snapshot (a new log)
        learn(batch)
        assert_same(copy.catch_up(), replay(applied[: i + 1]))
        if i == 2:
            storage.snapshot(model)
    assert copy.reloads == 0
    for batch in applied[6:9]:  # records before and after a snapshot, read in one catch-up
        learn(batch)
        storage.snapshot(model)
    learn(applied[9])
    assert_same(copy.catch_up(), replay(applied[:10]))
    assert copy.reloads == 1  # the logs it was reading were pruned: it loaded the newest snapshot

    # an import of another state at the same step: the log it was reading is gone
    imported = replay(applied[9::-1])
    assert imported.rows_seen == model.rows_seen
    assert imported.table.tobytes() != model.table.tobytes()
    storage.replace(imported)
    model = imported
    learn(applied[11])
    assert_same(copy.catch_up(), model)
    assert copy.reloads == 2


def test_a_torn_tail_is_read_again_once_whole(tmp_path) -> None:
    applied = batches(3)
    storage = ModelStorage(tmp_path / "m")
    model = OnlineLogisticRegression(OPTIMIZER, dim=16)
    storage.create(model)
    copy = Copy(tmp_path / "m")
    storage.append(applied[0], 0)
    model.learn_batch(applied[0])
    storage.close()
    log = next((tmp_path / "m").glob("wal-*.log"))
    whole = log.read_bytes()
    log.write_bytes(whole[:-7])  # the record half written
    assert_same(copy.catch_up(), OnlineLogisticRegression(OPTIMIZER, dim=16))
    log.write_bytes(whole)
    assert_same(copy.catch_up(), model)
    assert copy.reloads == 0


def test_a_record_out_of_place_loses_track(tmp_path) -> None:
    applied = batches(2)
    storage = ModelStorage(tmp_path / "m")
    storage.create(OnlineLogisticRegression(OPTIMIZER, dim=16))
    follower = LogFollower(tmp_path / "m")
    follower.load()
    storage.append(applied[0], 5)  # a gap: the copy is at 0
    with pytest.raises(LostTrack, match="a record of step 5, the copy at 0"):
        follower.follow(lambda record: None)
