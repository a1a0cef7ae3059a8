"""Golden transcripts, in the original's style: tests/golden/NAME.test is a script,
NAME.test.ok the transcript it must produce against a fresh repository.

Script language, one command per line:
    # text                  a comment: echoed as is
    (blank line)            skipped
    open | close | reopen   open the repository; close it; close and open it again.
                            The runner starts with a closed environment (SET lines before
                            `open` go to it) that has workers = 0; `close` leaves a fresh
                            closed environment (workers = 0 again), so a reopen sees only
                            what the repository persisted.
    write ID[:KEY][=VALUE] ...   write the events as one batch (ID `?`: a serial id; the
                            ids are printed when one is serial)
    delete ID[:KEY] ...     delete events, one batch
    select [ID]             every event from ID: `ID KEY VALUE` lines ("" for empty)
    files                   the partition files of every storage: `storage/file` lines
    partitions              SHOW PARTITIONS in short: one `[min, max] storage ...` line each
    anything else           execute(): its result, or `error: <message>`
The transcript echoes each command line, then its output. Values that change from run
to run are masked: uuids (<uuid1>, <uuid2>, ... by first appearance), nonzero
created/refreshed times (<time>), 64-digit keys (<key>), the repository path (<base>).

Run with MONOTONE_GOLDEN_FIX=1 to (re)write the .ok files instead of comparing; then
read every changed transcript: it is the expected behaviour from then on.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import sys

import pytest

import monotone
from monotone import Event

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
SCRIPTS = sorted(n[:-len(".test")] for n in os.listdir(GOLDEN) if n.endswith(".test"))

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r'"(created|refreshed)": [1-9][0-9]*')
_KEY = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")


class Runner:
    def __init__(self, base: str, script: str) -> None:
        self.base = base
        self.script = script
        self.uuids: dict[str, str] = {}
        self.out: list[str] = []
        self.db = self._environment()
        self.opened = False

    @staticmethod
    def _environment() -> monotone.Monotone:
        env = monotone.Monotone()
        env.execute("SET workers TO 0")
        return env

    # masking
    def mask(self, text: str) -> str:
        for base in {os.path.realpath(self.base), self.base}:
            text = text.replace(base, "<base>")

        def uuid(m: re.Match) -> str:
            if m.group(0) in self.script:  # written by the script itself: show it
                return m.group(0)
            return self.uuids.setdefault(m.group(0), f"<uuid{len(self.uuids) + 1}>")

        text = _UUID.sub(uuid, text)
        text = _TIME.sub(lambda m: f'"{m.group(1)}": <time>', text)
        return _KEY.sub(lambda m: m.group(0) if m.group(0) in self.script else "<key>", text)

    def emit(self, text: str) -> None:
        self.out.append(self.mask(text))

    # directives
    def open(self) -> None:
        self.db.open(self.base)
        self.opened = True

    def close(self) -> None:
        self.db.close()
        self.db = self._environment()
        self.opened = False

    def write(self, args: list[str], delete: bool) -> None:
        events = []
        for arg in args:
            head, _, value = arg.partition("=")
            id_, _, key = head.partition(":")
            events.append(Event(id=None if id_ == "?" else int(id_), key=key.encode(),
                                value=value.encode(), delete=delete))
        ids = self.db.write(events)
        if any(ev.id is None for ev in events):
            self.emit("ids: " + " ".join(map(str, ids)))

    def select(self, args: list[str]) -> None:
        with self.db.cursor(id=int(args[0]) if args else None) as cur:
            for ev in cur:
                self.emit(f"{ev.id} {_text(ev.key)} {_text(ev.value)}")

    def files(self) -> None:
        storages = json.loads(self.db.execute("SHOW STORAGES"))
        for name, storage in storages.items():
            cfg = storage["config"]
            path = cfg["path"]
            directory = os.path.join(self.base, path, cfg["uuid"])
            if not os.path.isdir(directory):
                self.emit(f"{name}/ (no directory)")
                continue
            for file in sorted(os.listdir(directory)):
                self.emit(f"{name}/{file}")

    def partitions(self) -> None:
        for p in json.loads(self.db.execute("SHOW PARTITIONS")):
            self.emit(f"[{p['min']}, {p['max']}] {p['storage']} events={p['events']} "
                      f"events_heap={p['events_heap']} refreshes={p['refreshes']} "
                      f"on_storage={str(p['on_storage']).lower()}")

    def line(self, line: str) -> None:
        words = line.split()
        verb = words[0].lower()
        try:
            if verb == "open" and len(words) == 1:
                self.open()
            elif verb == "close" and len(words) == 1:
                self.close()
            elif verb == "reopen" and len(words) == 1:
                self.close()
                self.open()
            elif verb in ("write", "delete") and len(words) > 1:
                self.write(words[1:], delete=verb == "delete")
            elif verb == "select" and len(words) <= 2:
                self.select(words[1:])
            elif verb == "files" and len(words) == 1:
                self.files()
            elif verb == "partitions" and len(words) == 1:
                self.partitions()
            else:
                result = self.db.execute(line)
                if result is not None:
                    self.emit(result)
        except monotone.MonotoneError as e:
            self.emit(f"error: {e}")

    def run(self) -> str:
        try:
            for raw in self.script.splitlines():
                line = raw.strip()
                if not line:
                    continue
                self.out.append(line)
                if not line.startswith("#"):
                    self.line(line)
        finally:
            self.db.close()
        return "\n".join(self.out) + "\n"


def _text(data: bytes) -> str:
    if not data:
        return '""'
    text = data.decode("ascii", "backslashreplace")
    return text if text.isprintable() and " " not in text else repr(data)[1:]


def transcript(base: str, script: str) -> str:
    return Runner(base, script).run()


@pytest.mark.parametrize("name", SCRIPTS)
def test_golden(repo, name):
    with open(os.path.join(GOLDEN, name + ".test")) as f:
        script = f.read()
    got = transcript(repo, script)
    ok_path = os.path.join(GOLDEN, name + ".test.ok")
    if os.environ.get("MONOTONE_GOLDEN_FIX") == "1":
        with open(ok_path, "w") as f:
            f.write(got)
        return
    assert os.path.exists(ok_path), f"{ok_path} is missing: run with MONOTONE_GOLDEN_FIX=1"
    with open(ok_path) as f:
        want = f.read()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            name + ".test.ok", "got"))
        pytest.fail(f"transcript differs from {name}.test.ok:\n{diff}", pytrace=False)


if __name__ == "__main__":  # python tests/test_golden.py NAME: print a transcript
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, \
            open(os.path.join(GOLDEN, sys.argv[1] + ".test")) as f:
        sys.stdout.write(transcript(os.path.join(tmp, "repo"), f.read()))
