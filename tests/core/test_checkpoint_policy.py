"""The checkpoint/restore policy (core/checkpoints.py), driven with explicit times and versions."""

from __future__ import annotations

import pytest

from hulytrio.core.checkpoints import (
    FINAL_CHECKPOINT_SKIPPED,
    INTERVAL_CHECKPOINTS_SKIPPED,
    SERVE_BEFORE_IMPORT,
    STATE_TRANSITIONS,
    CheckpointPolicy,
    StateStatus,
    WriteBatch,
)
from hulytrio.core.errors import LocalProtocolError


def serving(policy: CheckpointPolicy, uuid: str, epoch: int = 0, claimed: int | None = None,
            version: int = 0) -> None:
    """Restore ``uuid`` at ownership ``epoch``; the claim got ``claimed`` (default: ``epoch``)."""
    record = policy.restore_started(uuid, epoch)
    policy.restored(record, epoch if claimed is None else claimed, version)


def test_interval_checkpoints_are_due_every_interval_from_start() -> None:
    policy = CheckpointPolicy(2.0)
    assert policy.next_deadline() is None
    assert not policy.checkpoint_due(100.0)
    policy.start(10.0)
    assert policy.next_deadline() == 12.0
    assert not policy.checkpoint_due(11.9)
    assert policy.checkpoint_due(12.5)
    assert policy.next_deadline() == 14.5
    assert not policy.checkpoint_due(13.0)


def test_a_zero_interval_is_refused() -> None:
    with pytest.raises(LocalProtocolError, match="interval must be > 0"):
        CheckpointPolicy(0.0)


def test_requests_wait_while_restoring_and_untracked_uuids_serve() -> None:
    policy = CheckpointPolicy(1.0)
    assert policy.may_serve("plain")
    record = policy.restore_started("u", 3)
    assert not policy.may_serve("u")
    assert policy.restoring("u")
    assert not policy.tracks("u")
    assert policy.epoch("u") is None
    policy.restored(record, 3, 5)  # nothing was saved: the claim kept the ownership epoch
    assert policy.may_serve("u")
    assert policy.tracks("u")
    assert policy.epoch("u") == 3


def test_a_claimed_epoch_older_than_the_ownership_epoch_is_refused() -> None:
    policy = CheckpointPolicy(1.0)
    record = policy.restore_started("u", 4)
    with pytest.raises(LocalProtocolError, match="claimed epoch 3 is older than the "
                                                 "ownership epoch 4"):
        policy.restored(record, 3, 0)
    assert policy.restoring("u")


def test_the_claimed_epoch_is_the_write_epoch_and_resume_only_raises_it() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "u", epoch=2, claimed=7)
    assert policy.epoch("u") == 7
    policy.resume("u", 4)
    assert policy.epoch("u") == 7
    policy.resume("u", 9)
    assert policy.epoch("u") == 9


def test_only_changed_containers_are_due_and_an_ack_saves_them() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", version=1)
    serving(policy, "b", version=4)
    restoring = policy.restore_started("c", 0)
    del restoring
    writes = policy.due([("a", 1), ("b", 6), ("c", 9)])
    assert [(w.uuid, w.version, w.epoch) for w in writes] == [("b", 6, 0)]
    assert policy.written(writes, ()) == []
    assert policy.due([("a", 1), ("b", 6)]) == []


def test_a_stale_refusal_forgets_the_container_once() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", version=0)
    writes = policy.due([("a", 2)])
    assert policy.written(writes, {"a"}) == ["a"]
    assert not policy.tracks("a")
    assert policy.may_serve("a")
    assert policy.written(writes, {"a"}) == []  # forgotten already: nothing to stop


def test_a_refusal_after_the_container_left_and_came_back_keeps_the_new_record() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a")
    writes = policy.due([("a", 2)])
    policy.forget("a")
    serving(policy, "a", claimed=5)
    assert policy.written(writes, {"a"}) == []
    assert policy.tracks("a")


def test_the_final_write_is_made_only_when_something_changed() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", epoch=1, version=3)
    record = policy.forget("a")
    assert policy.final_write(record, 3) is None
    write = policy.final_write(record, 4)
    assert write is not None
    assert (write.uuid, write.version, write.epoch) == ("a", 4, 1)
    assert policy.final_write(None, 4) is None
    restoring = policy.restore_started("b", 0)
    assert policy.final_write(policy.forget("b"), 9) is None  # never imported: nothing to save
    assert restoring.status is StateStatus.RESTORING


def test_a_closing_agent_holds_every_serving_container() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a")
    policy.restore_started("b", 0)
    assert policy.hold_all() == ["a"]
    assert not policy.may_serve("a")
    assert not policy.may_serve("b")
    assert [w.uuid for w in policy.due([("a", 1)])] == ["a"]  # its last checkpoint


def test_restoring_twice_is_a_protocol_error_and_moves_are_checked() -> None:
    policy = CheckpointPolicy(1.0)
    record = policy.restore_started("a", 0)
    with pytest.raises(LocalProtocolError, match="tracked already"):
        policy.restore_started("a", 0)
    policy.restored(record, 0, 0)
    with pytest.raises(LocalProtocolError, match="SERVING -> SERVING"):
        policy.restored(record, 0, 0)
    assert STATE_TRANSITIONS.allows(StateStatus.SERVING, StateStatus.HELD)
    assert not STATE_TRANSITIONS.allows(StateStatus.HELD, StateStatus.SERVING)


def test_seeded_bugs_take_their_one_wrong_step() -> None:
    early = CheckpointPolicy(1.0, seeded_bugs=frozenset({SERVE_BEFORE_IMPORT}))
    early.restore_started("a", 0)
    assert early.may_serve("a")
    skip = CheckpointPolicy(1.0, seeded_bugs=frozenset({FINAL_CHECKPOINT_SKIPPED}))
    serving(skip, "a")
    assert skip.final_write(skip.forget("a"), 5) is None
    never = CheckpointPolicy(1.0, seeded_bugs=frozenset({INTERVAL_CHECKPOINTS_SKIPPED}))
    never.start(0.0)
    assert not never.checkpoint_due(5.0)
    assert never.next_deadline() == 6.0


def test_a_checkpoint_in_columns_is_the_same_decision() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", version=1)
    serving(policy, "b", epoch=3, version=4)
    serving(policy, "c", claimed=8, version=0)
    policy.restore_started("d", 0)
    batch = policy.due_batch(["a", "b", "c", "d", "untracked"], [1, 6, 2, 9, 1])
    assert (batch.uuids, batch.versions, batch.epochs) == (["b", "c"], [6, 2], [3, 8])
    assert [(w.uuid, w.version, w.epoch) for w in batch] == [
        (w.uuid, w.version, w.epoch) for w in policy.due([("b", 6), ("c", 2), ("d", 9)])]
    assert policy.written(batch, ()) == []
    assert len(policy.due_batch(["a", "b", "c"], [1, 6, 2])) == 0
    with pytest.raises(ValueError, match="2 uuids but 1 versions"):
        policy.due_batch(["a", "b"], [1])


def test_a_batch_answer_saves_the_accepted_and_forgets_the_stale() -> None:
    policy = CheckpointPolicy(1.0)
    for uuid in "abc":
        serving(policy, uuid)
    batch = policy.due_batch(["a", "b", "c"], [1, 2, 3])
    assert policy.written(batch, {"b"}) == ["b"]
    assert not policy.tracks("b")
    assert [w.uuid for w in policy.due([("a", 1), ("c", 3)])] == []
    assert [w.uuid for w in policy.due([("a", 2), ("c", 3)])] == ["a"]


def test_an_answer_for_an_ended_tracking_does_not_touch_the_next_one() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", version=0)
    batch = policy.due_batch(["a"], [5])
    old = policy.forget("a")
    assert old is not None
    serving(policy, "a", claimed=2, version=1)
    new = policy.record("a")
    assert new is not None
    assert new.gen != old.gen
    assert not policy.current(old)
    assert policy.current(new)
    assert policy.written(batch, ()) == []
    # the new tracking still saved at 1: version 5 is due for it
    assert [w.version for w in policy.due([("a", 5)])] == [5]
    # the old tracking's record (its driver still holds it) learnt the ack
    assert old.saved == 5
    assert policy.final_write(old, 5) is None


def test_a_write_acknowledged_after_its_container_left_saves_its_final_write() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", epoch=4, version=0)
    batch = WriteBatch()
    batch.append(policy.due([("a", 3)])[0])
    leaving = policy.forget("a")  # a clean stop while the checkpoint is written
    assert policy.written(batch, ()) == []
    assert policy.final_write(leaving, 3) is None  # the checkpoint saved it already
    write = policy.final_write(leaving, 4)
    assert write is not None
    assert (write.version, write.epoch) == (4, 4)


def test_a_restore_answered_after_its_tracking_ended_changes_only_its_record() -> None:
    policy = CheckpointPolicy(1.0)
    record = policy.restore_started("a", 0)
    policy.forget("a")
    policy.restore_failed(record)  # nothing tracked: nothing to forget
    serving(policy, "a", epoch=7)
    policy.restored(record, 3, 9)
    assert record.status is StateStatus.SERVING
    assert (record.epoch, record.saved) == (3, 9)
    assert policy.epoch("a") == 7


def test_a_batch_takes_the_exported_entries_and_untracked_uuids_change_nothing() -> None:
    policy = CheckpointPolicy(1.0)
    serving(policy, "a", epoch=2)
    serving(policy, "b", epoch=3)
    due = policy.due_batch(["a", "b"], [1, 1])
    batch = WriteBatch()
    batch.take(due, 1)  # "a"'s export failed: only "b" is written
    assert [repr(w) for w in batch] == ["StateWrite('b', epoch=3, version=1)"]
    assert policy.written(batch, ()) == []
    assert [w.uuid for w in policy.due([("a", 1), ("b", 1)])] == ["a"]
    assert policy.forget("nobody") is None
    assert policy.record("nobody") is None
    policy.resume("nobody", 9)
    assert policy.epoch("nobody") is None
    assert repr(policy.record("a")) == "StateRecord('a', SERVING, epoch=2, saved=0)"
