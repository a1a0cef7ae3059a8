"""Fixtures of the local-trust suite: a stranger (another uid), a directory every
account may write (as /tmp is), a victim's home with files an attacker would
aim links at, and Scene, which runs the victim and judges what the stranger
could see or change."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

import pytest
from conftest import check_no_leaks

from trust.stranger import NEEDS_ROOT, Stranger, free_uid, loot

VICTIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "victim.py")
DEADLINE = 90.0      # a victim that takes longer hangs: the test fails
LOG_LIMIT = 64 << 10  # bytes the repository's log may grow to in one scene


@pytest.fixture
def stranger():
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    s = Stranger(free_uid())
    yield s
    s.stop_all()


@pytest.fixture
def shared_dir():
    """A directory anyone may create files in, sticky, as /tmp."""
    path = tempfile.mkdtemp(prefix="monotone-shared-")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home(tmp_path):
    """The victim's own files outside the repository: what links would aim at."""
    path = tmp_path / "home"
    path.mkdir()
    for name, text in ((".profile", "export PATH\n"), (".bashrc", "alias ll='ls -l'\n")):
        (path / name).write_text(text)
        os.chmod(path / name, 0o644)
    return str(path)


def snapshot(directory: str) -> dict:
    """Every file under directory: (mode, size, mtime, content)."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            with open(path, "rb") as f:
                out[path] = (st.st_mode, st.st_size, st.st_mtime_ns, f.read())
    return out


class Scene:
    """One attack: the victim's repository (in a shared directory), what the victim
    did, and the checks every attack must pass."""

    def __init__(self, stranger: Stranger, shared: str, home: str, strict: bool) -> None:
        self.stranger = stranger
        self.shared = shared
        self.home = home
        self.strict = strict
        self.repo = os.path.join(shared, "repo")
        self.secret = "S3CRET-" + uuid.uuid4().hex
        self.marker = "EVENT-" + uuid.uuid4().hex
        self.outcomes: list[dict] = []
        self.home_before = snapshot(home)
        if not strict:
            # a directory shared on purpose: open to all, sticky, opened with
            # strict_modes off. Defences in depth must hold without the first one.
            os.mkdir(self.repo)
            os.chmod(self.repo, 0o1777)

    def victim(self, events: int = 50, **extra) -> dict:
        """Run the victim's session; its outcome (it must end within DEADLINE)."""
        spec = dict(repo=self.repo, strict=self.strict, secret=self.secret,
                    marker=self.marker, events=events, **extra)
        try:
            out = subprocess.run([sys.executable, VICTIM, json.dumps(spec)],
                                 capture_output=True, timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the victim hung (no end in {DEADLINE} s)") from None
        assert out.returncode == 0, out.stderr.decode()[-3000:]
        outcome = json.loads(out.stdout.decode().strip().splitlines()[-1])
        self.outcomes.append(outcome)
        return outcome

    def judge(self, *, allowed=(), reports: list | None = None) -> None:
        """What every attack must end in: each victim session worked, or failed with
        one of the allowed errors and a message that names the problem (in time:
        victim() fails a session that hangs);
        no event it did not write was read; nothing outside the repository
        changed; and nothing the stranger could read or was sent holds a secret,
        a key or an event."""
        for outcome in self.outcomes:
            if outcome["outcome"] == "error":
                assert outcome["type"] in allowed, outcome
                assert outcome["message"], outcome
            else:
                assert outcome["foreign"] == [], f"forged events were read: {outcome}"
        assert snapshot(self.home) == self.home_before, "files outside the repository changed"
        secrets = [self.secret, self.marker] + [o["key"] for o in self.outcomes if o["key"]]
        seen = self.stranger.run(loot, [self.repo, "/dev/shm"])
        leaked = {path: s for path, text in seen["got"].items() for s in secrets if s in text}
        assert not leaked, f"the stranger read secrets: {leaked}"
        for line in reports or []:
            text = json.dumps(line)
            assert not any(s in text for s in secrets), f"the stranger was sent: {line}"
        log = os.path.join(self.repo, "log")
        if os.path.isfile(log) and not os.path.islink(log):
            assert os.path.getsize(log) < LOG_LIMIT, "the repository log grew without bound"
        check_no_leaks(self.repo)


@pytest.fixture(params=["strict", "shared"])
def scene(request, stranger, shared_dir, home):
    """Each attack, against a repository in its own private directory (the
    default), and in a directory shared on purpose (strict_modes off)."""
    return Scene(stranger, shared_dir, home, request.param == "strict")
