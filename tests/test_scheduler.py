"""The scheduler's locks around cloud transfers, step by step: tasks yield
transfers to an upload pool whose replies the test hands back in the order it
chooses, so each interleaving is exact (the coordinator's own pool would only
give the one its timing happens to)."""
from __future__ import annotations

from monotone.settings import Place
from monotone.workers.claims import Claims, Manifest
from monotone.workers.tasks import CATALOG, PARTITIONS, Scheduler
from monotone.workers.transfer import MANIFEST, UPLOAD, TransferJob

PLACE = Place("/nonexistent", "uuid", "", 0, False)


class Engine:
    def __init__(self) -> None:
        self.claims = Claims(None)


class HeldPool:
    """An upload pool that holds every job until the test answers it."""

    def __init__(self) -> None:
        self.jobs: dict[str, object] = {}

    def submit(self, job: TransferJob, done) -> None:
        self.jobs[job.content] = done

    def answer(self, name: str) -> None:
        self.jobs.pop(name)({"ok": True, "meta": None})


def recorder():
    """What tasks ended with, in order, and the finish that records it."""
    ended: list[str] = []

    def finish(value, error):
        assert error is None, error
        ended.append(value)
    return ended, finish


def transfer(name: str, kind: str = UPLOAD) -> TransferJob:
    return TransferJob(kind, 0, PLACE, False, content=name)


def test_a_catalog_task_waiting_to_go_on_holds_back_no_transfer_that_ended():
    """Upload U1 writes a manifest (claimed); catalog task C sends its own transfer;
    upload U2's transfer ends and it waits for U1's manifest, holding PARTITIONS; C's
    transfer ends (it cannot go on while U2 holds PARTITIONS); then U1's: U1 must go
    on, though C waits before it, or U2, C and all behind them wait for ever."""
    engine, pool = Engine(), HeldPool()
    scheduler = Scheduler(engine, uploads=pool)
    ended, finish = recorder()
    key = Manifest(1)

    def u1():
        with engine.claims.holding(key, "manifest"):
            yield transfer("u1", MANIFEST)
        return "u1"

    def c():
        yield transfer("c")
        return "c"

    def u2():
        yield transfer("u2")
        yield from engine.claims.wait(key)
        return "u2"

    scheduler.submit(u1, finish, "u1", PARTITIONS)
    scheduler.submit(c, finish, "c", CATALOG)
    scheduler.submit(u2, finish, "u2", PARTITIONS)
    assert sorted(pool.jobs) == ["c", "u1", "u2"]  # all three in flight, no lock held
    assert scheduler.held == {PARTITIONS: 0, CATALOG: 0}
    pool.answer("u2")
    assert scheduler.held == {PARTITIONS: 1, CATALOG: 0}  # u2 waits for the manifest
    pool.answer("c")
    assert ended == []
    pool.answer("u1")
    assert ended == ["u1", "u2", "c"]
    assert scheduler.idle() and scheduler.held == {PARTITIONS: 0, CATALOG: 0}
    assert len(engine.claims) == 0


def test_commands_queued_behind_a_catalog_task_wait_until_it_has_gone_on():
    """While a catalog task waits to go on after its transfer, new partition work
    does not start ahead of it (else a stream of refreshes could hold it back)."""
    engine, pool = Engine(), HeldPool()
    scheduler = Scheduler(engine, uploads=pool)
    ended, finish = recorder()
    key = Manifest(2)

    def holder():
        with engine.claims.holding(key, "manifest"):
            yield transfer("holder", MANIFEST)
        return "holder"

    def waiter():  # holds PARTITIONS while it waits for the claim
        yield from engine.claims.wait(key)
        return "waiter"

    def catalog_change():
        yield transfer("c")
        return "c"

    scheduler.submit(holder, finish, "holder", PARTITIONS)
    scheduler.submit(catalog_change, finish, "c", CATALOG)
    scheduler.submit(waiter, finish, "waiter", PARTITIONS)
    pool.answer("c")                        # c cannot go on: waiter holds PARTITIONS
    scheduler.submit(lambda: "new", finish, "new", PARTITIONS)
    assert ended == []                      # new work waits behind c
    pool.answer("holder")
    assert ended == ["holder", "waiter", "c", "new"]
    assert scheduler.idle() and scheduler.held == {PARTITIONS: 0, CATALOG: 0}
