"""Every command the coordinator runs, with its handler and the lock it needs.

Control messages (monotone/protocol.py) and the management language's
commands (monotone/ddl) alike. Locks (tasks.py): NOW runs at once, PARTITIONS
is work on partitions over several steps, CATALOG a change of storages, clouds,
pipeline or config that no partition work may straddle.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from monotone import protocol as msg
from monotone.ddl import commands as cmd

from . import catalog_commands as catalog
from . import control
from . import partition_commands as partitions
from .show import show
from .tasks import CATALOG, NOW, PARTITIONS


@dataclass(frozen=True)
class Entry:
    handler: Callable
    lock: str


# management language: handler(engine, command) -> result, or a task (generator)
DDL: dict[type, Entry] = {
    cmd.Show: Entry(show, NOW),
    cmd.Set: Entry(catalog.set_config, CATALOG),
    cmd.CreateStorage: Entry(catalog.create_storage, CATALOG),
    cmd.AlterStorage: Entry(catalog.alter_storage, CATALOG),
    cmd.DropStorage: Entry(catalog.drop_storage, CATALOG),
    cmd.CreateCloud: Entry(catalog.create_cloud, CATALOG),
    cmd.AlterCloud: Entry(catalog.alter_cloud, CATALOG),
    cmd.DropCloud: Entry(catalog.drop_cloud, CATALOG),
    cmd.AlterPipeline: Entry(catalog.alter_pipeline, CATALOG),
    cmd.CreatePartition: Entry(partitions.create_partition, NOW),
    cmd.Refresh: Entry(partitions.refresh_partitions, PARTITIONS),
    cmd.Move: Entry(partitions.move_partitions, PARTITIONS),
    cmd.Drop: Entry(partitions.drop_partitions, PARTITIONS),
    cmd.Upload: Entry(partitions.transfer, PARTITIONS),
    cmd.Download: Entry(partitions.transfer, PARTITIONS),
    cmd.Rebalance: Entry(partitions.rebalance_now, PARTITIONS),
    cmd.Checkpoint: Entry(partitions.checkpoint_now, PARTITIONS),
}

# control: handler(server, conn, message, reply); what a command starts takes its own lock
CONTROL: dict[type, Entry] = {
    msg.Hello: Entry(control.hello, NOW),
    msg.Bye: Entry(control.bye, NOW),
    msg.GetConfig: Entry(control.get_config, NOW),
    msg.EnsurePartitions: Entry(control.ensure_partitions, NOW),
    msg.RefreshSoon: Entry(control.refresh_soon, NOW),
    msg.RefreshNow: Entry(control.refresh_now, NOW),
    msg.WaitMemory: Entry(control.wait_memory, NOW),
    msg.Execute: Entry(control.execute, NOW),
}
