"""The group commit of a cascade node's steps (cascade/steps.py): steps that end while a commit is in
progress are committed together, in step order; a caller returns only once its own step is committed;
a failed commit fails every step of its group and the node's memory is reloaded."""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime

import pytest

from carbonflow.center.cascade.outbox import CascadeOutbox
from carbonflow.center.cascade.steps import Steps

TS = datetime(2026, 6, 1, 9, tzinfo=UTC)


class FakeStore:
    """Records the writes of each store transaction; ``fail`` makes the next transaction fail."""

    def __init__(self) -> None:
        self.transactions: list[list[str]] = []
        self.attempts = 0
        self.fail_at = -1  # which transaction (0, 1, ...) fails

    @contextlib.contextmanager
    def write(self):
        rows: list[str] = []
        yield rows
        self.attempts += 1
        if self.attempts - 1 == self.fail_at:
            raise OSError("disk full")
        self.transactions.append(rows)


class World:
    def __init__(self, tmp_path) -> None:
        self.store = FakeStore()
        self.outbox = CascadeOutbox(tmp_path / "outbox.db")
        self.woken: list[str] = []
        self.forgotten: list[set | None] = []
        self.steps = Steps(self.store, self.outbox, self.woken.append, self.forgotten.append)
        self.queued: list[list[str]] = []  # message ids per outbox transaction
        self.hold = threading.Event()
        self.held = threading.Event()
        self.hold.set()
        queue_many = self.outbox.queue_many

        def recording(items):
            self.queued.append([item[1] for item in items])
            if not self.hold.is_set():
                self.held.set()
                self.hold.wait(10)
            queue_many(items)

        self.outbox.queue_many = recording
        self.done: list[str] = []

    def step(self, name: str, peer: str = "ah") -> None:
        with self.steps.step():
            self.steps.write(TS, lambda rows: rows.append(name))
            self.steps.send((peer, f"m-{name}", "interval_report", TS.isoformat(), b"{}"))
            self.steps.later(lambda: self.done.append(name))

    def in_thread(self, name: str, errors: dict | None = None) -> threading.Thread:
        def run():
            try:
                self.step(name)
            except OSError as error:
                if errors is not None:
                    errors[name] = error

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def wait_queued(self, n: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.steps._queued) < n:
            assert time.monotonic() < deadline, "steps did not queue"
            time.sleep(0.001)


def test_steps_that_end_during_a_commit_are_committed_together_in_step_order(tmp_path):
    world = World(tmp_path)
    world.hold.clear()  # the first commit stops in the outbox until the other steps have queued
    first = world.in_thread("a")
    assert world.held.wait(10)
    others = [world.in_thread("b")]
    world.wait_queued(1)
    others.append(world.in_thread("c"))
    world.wait_queued(2)
    assert world.done == []  # nobody returns before its commit
    world.hold.set()
    for thread in [first, *others]:
        thread.join(10)
    world.steps.drain()
    assert world.queued == [["m-a"], ["m-b", "m-c"]]  # two outbox transactions for three steps
    assert world.store.transactions == [["a"], ["b", "c"]]
    assert sorted(world.done) == ["a", "b", "c"]
    assert [m.message_id for m in world.outbox.oldest_for("ah", 10)] == ["m-a", "m-b", "m-c"]
    assert world.outbox._meta("synced") == "2"  # one fsync per group
    assert world.woken == ["ah", "ah"]


def test_nested_steps_commit_once_a_step_without_writes_or_sends_commits_nothing(tmp_path):
    world = World(tmp_path)
    with world.steps.step():
        world.steps.write(TS, lambda rows: rows.append("outer"))
        with world.steps.step():
            world.steps.write(TS, lambda rows: rows.append("inner"))
        assert world.store.transactions == []
    assert world.store.transactions == [["outer", "inner"]]
    with world.steps.step():
        pass
    assert world.store.transactions == [["outer", "inner"]]
    assert world.queued == [] and world.outbox._meta("synced") == "0"


def test_a_failed_commit_fails_every_step_of_its_group_the_others_are_kept(tmp_path):
    world = World(tmp_path)
    world.store.fail_at = 1  # the second store transaction fails
    world.hold.clear()
    first = world.in_thread("a")
    assert world.held.wait(10)
    errors: dict[str, OSError] = {}
    others = [world.in_thread("b", errors), world.in_thread("c", errors)]
    world.wait_queued(2)
    world.hold.set()
    for thread in [first, *others]:
        thread.join(10)
    world.steps.drain()
    assert world.store.transactions == [["a"]]  # "b" and "c" were one group: both failed
    assert sorted(errors) == ["b", "c"]
    assert world.done == ["a"]  # no work for later after a failed commit
    assert world.forgotten == [None]


def test_a_failed_group_raises_in_each_of_its_steps_and_forgets_all_memory(tmp_path):
    world = World(tmp_path)
    world.store.fail_at = 0
    with pytest.raises(OSError, match="disk full"):
        world.step("a")
    assert world.forgotten == [None]  # every interval reloads from the store
    assert world.done == []  # no work for later after a failed commit
    world.step("b")  # the next step commits
    world.steps.drain()
    assert world.store.transactions == [["b"]]
    assert world.done == ["b"]


def test_queued_messages_are_readable_at_once_and_kept_after_reopening(tmp_path):
    outbox = CascadeOutbox(tmp_path / "outbox.db")
    outbox.queue_many([("ah", "m1", "region_data", TS.isoformat(), b"{}")])
    seen = []
    reader = threading.Thread(target=lambda: seen.extend(outbox.oldest_for("ah", 10)))
    reader.start()
    reader.join(10)
    assert [m.message_id for m in seen] == ["m1"]
    outbox.sync()
    outbox.close()
    again = CascadeOutbox(tmp_path / "outbox.db")
    assert [m.message_id for m in again.oldest_for("ah", 10)] == ["m1"]
    assert again._meta("synced") == "1"
    again.close()
