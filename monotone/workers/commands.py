"""Every message the coordinator answers, with its handler and the lock it runs
under: control messages (monotone/protocol.py) and the management language's
commands (monotone/ddl, reached through Execute) in one table.

Locks (tasks.py): NOW runs at once, PARTITIONS is work on partitions over
several steps, CATALOG a change of storages, clouds, pipeline or config that no
partition work may straddle.

An Entry's handler is the engine's: handler(engine, message) returns the
answer, a value or a task (whose result is the answer). A Control entry's is the
coordinator's own (control.py): handler(server, request) answers through
request.reply, at once or when the work it started ends; the work it starts
takes its own lock.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from monotone import protocol as msg
from monotone.ddl import commands as cmd

from . import catalog_commands as catalog
from . import control, partition_commands
from .control import Request
from .show import show
from .tasks import CATALOG, NOW, PARTITIONS


@dataclass(frozen=True)
class Entry:
    """handler(engine, message) -> the answer, run under lock."""
    handler: Callable
    lock: str

    def run(self, server, request: Request) -> None:
        engine, message = server.engine, request.message
        server.background.scheduler.submit(lambda: self.handler(engine, message),
                                           request.reply, type(message).__name__, self.lock)


@dataclass(frozen=True)
class Control(Entry):
    """handler(server, request), answering through request.reply; only its failure
    is answered here."""

    def run(self, server, request: Request) -> None:
        def failed(value, error) -> None:
            if error is not None:
                request.reply(None, error)

        server.background.scheduler.submit(lambda: self.handler(server, request), failed,
                                           type(request.message).__name__, self.lock)


TABLE: dict[type, Entry] = {
    # control messages
    msg.Hello: Control(control.hello, NOW),
    msg.Watch: Control(control.watch, NOW),
    msg.Bye: Control(control.bye, NOW),
    msg.GetConfig: Entry(control.get_config, NOW),
    msg.EnsurePartitions: Control(control.ensure_partitions, NOW),
    msg.RefreshSoon: Control(control.refresh_soon, NOW),
    msg.RefreshNow: Entry(control.refresh_now, PARTITIONS),
    msg.WaitMemory: Control(control.wait_memory, NOW),
    msg.Execute: Control(control.execute, NOW),
    # the management language
    cmd.Show: Entry(show, NOW),
    cmd.Set: Entry(catalog.set_config, CATALOG),
    cmd.CreateStorage: Entry(catalog.create_storage, CATALOG),
    cmd.AlterStorage: Entry(catalog.alter_storage, CATALOG),
    cmd.DropStorage: Entry(catalog.drop_storage, CATALOG),
    cmd.CreateCloud: Entry(catalog.create_cloud, CATALOG),
    cmd.AlterCloud: Entry(catalog.alter_cloud, CATALOG),
    cmd.DropCloud: Entry(catalog.drop_cloud, CATALOG),
    cmd.AlterPipeline: Entry(catalog.alter_pipeline, CATALOG),
    cmd.CreatePartition: Control(control.create_partition, NOW),
    cmd.Refresh: Entry(partition_commands.refresh_partitions, PARTITIONS),
    cmd.Move: Entry(partition_commands.move_partitions, PARTITIONS),
    cmd.Drop: Entry(partition_commands.drop_partitions, PARTITIONS),
    cmd.Upload: Control(control.upload, NOW),
    cmd.Download: Control(control.download, NOW),
    cmd.Rebalance: Entry(partition_commands.rebalance_now, PARTITIONS),
    cmd.Checkpoint: Control(control.checkpoint, NOW),
    cmd.Service: Control(control.service, NOW),
}
