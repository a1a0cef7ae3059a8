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

from . import output
from .progress import Progress

QUIT = ("quit", "exit", "\\q")


class Failed(Exception):
    """A command failed; its message is already printed."""


class Runner:
    """Runs statements against an open repository and prints what they return."""

    def __init__(self, db, mode: str = "json", out=None, err=None,
                 width: int | None = None) -> None:
        """mode: how SHOW prints, one of output.MODES: json (as SHOW returns it), table,
        csv or line. width: the columns a table may take (None: COLUMNS, else the
        terminal's, else output.DEFAULT_WIDTH)."""
        if mode not in output.MODES:
            raise ValueError(f"output mode '{mode}': one of {', '.join(output.MODES)} expected")
        self.db = db
        self.mode = mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.width = width
        self.printed = False  # a result was: the next is set off by a blank line

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
                    return self._print(self.db.execute(statement), command)
            self._print(self.db.execute(statement), command)
        except monotone.MonotoneError as e:
            raise Failed(f"error: {e}") from None

    def help(self, topic: str) -> str:
        if not topic:
            return language.overview()
        if topic.strip().upper() == "SET":
            try:
                values, which = self.db.show("ALL"), "Variables"
            except monotone.MonotoneError:  # no repository yet: what a new one would have
                closed = getattr(self.db, "db", None) or monotone.Monotone()
                values, which = closed.show("ALL"), "Variables (of a new repository)"
            width = max(len(n) for n in values)
            return language.describe("SET") + f"\n\n{which}:\n" + "\n".join(
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
            return self._print(self.db.execute(statement), c)
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
    def _print(self, result: str | None, command) -> None:
        """What a command returned, in the runner's mode; JSON exactly as returned."""
        if result is None:
            return
        if self.mode == "json":
            print(result, file=self.out)
            return
        value = json.loads(result)
        names = [_name(i) for i in command.items] if isinstance(command, cmd.Show) else ["value"]
        items = list(zip(names, value)) if len(names) > 1 else [(names[0], value)]
        width = self.width or output.terminal_width(self.out)
        text = output.render(items, self.mode, width)
        if text:
            self.out.write(("\n" if self.printed else "") + text)
            self.printed = True


def _name(item: cmd.ShowItem) -> str:
    """What a SHOW item's scalar is called in a table: the variable's name."""
    return item.name if item.what == "var" else item.what
