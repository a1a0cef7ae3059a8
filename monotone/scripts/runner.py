"""Statements run against an open repository and printed: as a script, or one at a time
from the prompt."""
from __future__ import annotations

import json
import sys

import monotone
from monotone.ddl import commands as cmd
from monotone.ddl import help as language
from monotone.ddl import parse
from monotone.ddl.lexer import split_statements

from .progress import Progress

QUIT = ("quit", "exit", "\\q")


class Failed(Exception):
    """A command failed; its message is already printed."""


class Runner:
    """Runs statements against an open repository and prints what they return."""

    def __init__(self, db, table: bool = False, out=None, err=None) -> None:
        self.db = db
        self.table = table
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def script(self, lines, keep_going: bool, numbered: bool) -> int:
        """Every statement of the lines; 1 if one failed (stopping there unless keep_going).
        numbered: errors say which line (a script's)."""
        failed = False
        for number, line in enumerate(lines, 1):
            for statement in split_statements(line):
                if statement.lower() in QUIT:
                    return 1 if failed else 0
                try:
                    self.run(statement)
                except Failed as e:
                    where = f"line {number}: " if numbered else ""
                    print(f"monotone: {where}{e}", file=self.err, flush=True)
                    failed = True
                    if not keep_going:
                        return 1
        return 1 if failed else 0

    def run(self, statement: str) -> None:
        words = statement.split(None, 1)
        if words and words[0].lower() == "help":
            print(self.help(words[1] if len(words) > 1 else ""), file=self.out)
            return
        try:
            command = parse(statement)
            if isinstance(command, (cmd.Refresh, cmd.Move, cmd.Upload, cmd.Download)) \
                    and not command.single:
                return self._each_partition(statement, command)
            if isinstance(command, cmd.Checkpoint):
                return self._checkpoint()
            if isinstance(command, cmd.Rebalance):
                with Progress("rebalance", out=self.err):
                    return self._print(statement, self.db.execute(statement))
            self._print(statement, self.db.execute(statement))
        except monotone.MonotoneError as e:
            raise Failed(f"error: {e}") from None

    def help(self, topic: str) -> str:
        if not topic:
            return language.overview()
        if topic.strip().upper() == "SET":
            values = self.db.show("ALL")
            width = max(len(n) for n in values)
            return language.describe("SET") + "\n\nVariables:\n" + "\n".join(
                f"  {n:<{width}}  {json.dumps(v)}" for n, v in values.items())
        name = language.topic(topic)
        if name is None:
            return f"no help for '{topic}': `help` lists the commands"
        return language.describe(name)

    # long commands, a partition at a time so their progress shows
    def _each_partition(self, statement: str, c) -> None:
        partitions = sorted(self.db.show("PARTITIONS"), key=lambda p: p["min"])
        chosen = [partitions[i]["min"] for i in
                  cmd.range_members([(p["min"], p["max"]) for p in partitions], c.min, c.max)]
        if not chosen:  # nothing in range: the command as given (it checks its names)
            return self._print(statement, self.db.execute(statement))
        verb = type(c).__name__.upper()  # REFRESH, MOVE, UPLOAD, DOWNLOAD
        tail = ""
        if isinstance(c, cmd.Move):
            tail = f" INTO {c.into}"
        elif isinstance(c, (cmd.Upload, cmd.Download)) and c.if_cloud:
            tail = " IF CLOUD"
        self._partitions(verb.lower(), [f"{verb} PARTITION IF EXISTS {m}{tail}" for m in chosen])

    def _checkpoint(self) -> None:
        """CHECKPOINT queues a refresh of every partition with events in memory; here the
        same refreshes run one by one, so the command line can wait for them and show how
        far they got."""
        held = [p["min"] for p in self.db.show("PARTITIONS") if p["events_heap"]]
        self._partitions("checkpoint", [f"REFRESH PARTITION IF EXISTS {m}" for m in held])

    def _partitions(self, label: str, statements: list[str]) -> None:
        with Progress(label, total=len(statements), unit="partitions", out=self.err) as bar:
            for done, statement in enumerate(statements, 1):
                self.db.execute(statement)
                bar.update(done)

    # output
    def _print(self, statement: str, result: str | None) -> None:
        if result is None:
            return
        if self.table:
            rows = json.loads(result)
            if isinstance(rows, dict) and rows and all(isinstance(r, dict) for r in rows.values()):
                # STORAGES (a storage's figures; its options read better as JSON), CLOUDS
                rows = [{"name": name, **row.get("stats", row)} for name, row in rows.items()]
            if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
                return self._table(rows)
        print(result, file=self.out)

    def _table(self, rows: list[dict]) -> None:
        """One row per item, one column per field: cells are never cut short (a terminal
        narrower than the table wraps its lines instead)."""
        from rich.table import Table
        columns = list(dict.fromkeys(k for row in rows for k, v in row.items()
                                     if not isinstance(v, (dict, list))))
        cells = [[_cell(row.get(k)) for k in columns] for row in rows]
        widths = [max(len(k), *(len(r[i]) for r in cells)) for i, k in enumerate(columns)]
        table = Table()
        for name, width in zip(columns, widths):
            table.add_column(name, min_width=width, no_wrap=True)
        for row in cells:
            table.add_row(*row)
        console = rich_console(self.out)
        console.width = max(console.width, sum(widths) + 3 * len(widths) + 1)
        console.print(table)


def _cell(value) -> str:
    return "" if value is None else json.dumps(value) if isinstance(value, bool) else str(value)


def rich_console(out=None):
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=out or sys.stdout)
