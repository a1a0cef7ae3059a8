"""What another local account can do to a repository: every attack ends safely.

Each test is one attack by a stranger (another uid, trust/stranger.py) on a
victim using its repository as users do (trust/victim.py), twice: with the
repository in a private directory of its own (the default), and in a
directory shared on purpose (open to all, sticky, opened with strict_modes
off), where the defences behind the directory's permissions must hold by
themselves. Scene.judge() then asks the same of every attack: the victim
worked, or failed fast with a clear error; it read no forged event; nothing
outside the repository changed; the stranger could read, or was sent, no
secret, key or event; the log stayed small; nothing leaked.

A new attack is a function of stranger.py (or a few lines of plain os calls)
and a test here naming what the victim may meet.
"""
from __future__ import annotations

import os

import pytest

from trust import stranger as do


def prepare(scene, fn, *args):
    """Run fn(repo, *args) as the stranger before the victim comes. In the strict
    scene the repository does not exist yet: the stranger makes its directory
    first (the only way to put anything in it)."""
    def body(repo, strict, *rest):
        if strict:
            os.mkdir(repo)
            os.chmod(repo, 0o777)
        return fn(repo, *rest) if fn else None
    return scene.stranger.run(body, scene.repo, scene.strict, *args)


def expect_refused(outcome, scene, *words):
    """The victim was refused, with an error naming the stranger and (in the shared
    scene, where the directory passes) the object the stranger made; in the strict
    scene the directory the stranger made is refused first."""
    assert outcome["outcome"] == "error" and outcome["type"] == "AccessDenied", outcome
    words = (scene.repo,) if scene.strict else words
    for word in (f"uid {scene.stranger.uid}",) + words:
        assert word in outcome["message"], outcome


@pytest.mark.parametrize("answer", [True, False], ids=["answering", "silent"])
def test_a_squatter_on_the_socket_is_sent_nothing(scene, answer):
    """A listener at the coordinator's socket name, before the victim opens: one that
    answers like a coordinator, or one that never answers."""
    prepare(scene, None)
    squatter = scene.stranger.start(do.squat, os.path.join(scene.repo, "monotone.sock"),
                                    answer)
    squatter.next()
    outcome = scene.victim()
    expect_refused(outcome, scene)
    if not scene.strict:  # it reached the socket: the client named who holds it
        assert f"pid {squatter.pid}" in outcome["message"], outcome
        assert "nothing was sent" in outcome["message"]
    received = [line for line in squatter.stop() if line.get("received")]
    assert received == [], f"the squatter was sent {received}"
    scene.judge(allowed=("AccessDenied",))


LINKS = ["config.json.incomplete", "config.json", "log", "monotone.lock", "monotone.sock",
         "wal"]


@pytest.mark.parametrize("name", LINKS)
def test_links_at_the_engine_names_are_never_followed(scene, name):
    """A symbolic link where the engine makes a file (or the WAL's directory),
    aiming at the victim's own files: nothing is written through it."""
    target = scene.home if name == "wal" else os.path.join(scene.home, ".profile")
    prepare(scene, lambda repo: os.symlink(target, os.path.join(repo, name)))
    outcome = scene.victim()
    if scene.strict or outcome["outcome"] == "error":
        assert outcome["type"] == "AccessDenied", outcome
        assert (scene.repo if scene.strict else name) in outcome["message"], outcome
    scene.judge(allowed=("AccessDenied",))


def test_a_file_kept_at_the_config_temp_name_learns_no_secret(scene):
    """The stranger keeps making config.json.incomplete, open to all, and reads it,
    while the victim creates a cloud with a secret and an encrypted storage."""
    prepare(scene, None)
    spy = scene.stranger.start(do.keep_creating,
                               os.path.join(scene.repo, "config.json.incomplete"), 0)
    spy.next()
    outcome = scene.victim()
    if scene.strict:
        expect_refused(outcome, scene)
    scene.judge(allowed=("AccessDenied",), reports=spy.stop())


def test_a_forged_config_is_not_read(scene):
    """A config.json of the stranger's, naming a cloud of theirs."""
    forged = '{"uuid": "11111111-1111-1111-1111-111111111111", "clouds": []}'

    def plant(repo):
        with open(os.path.join(repo, "config.json"), "w") as f:
            f.write(forged)
    prepare(scene, plant)
    expect_refused(scene.victim(), scene, "config.json")
    scene.judge(allowed=("AccessDenied",))


def test_a_wal_directory_made_by_the_stranger_is_refused(scene):
    """wal/ made by the stranger (so it could drop a forged WAL file in it, or delete
    the victim's): the engine uses only a WAL directory of its own."""
    prepare(scene, lambda repo: os.mkdir(os.path.join(repo, "wal"), 0o777))
    expect_refused(scene.victim(), scene, "wal")
    scene.judge(allowed=("AccessDenied",))


def test_the_repository_is_closed_to_the_stranger_after_use(scene):
    """After the victim used its repository: the stranger can open none of its files,
    not even the lock file read-only (a shared lock would stall the victim), and
    cannot put a file in it or in its WAL directory."""
    assert scene.victim()["outcome"] == "ok"
    repo = scene.repo
    reads = ["config.json", "monotone.lock", "log", "monotone.sock"]
    writes = ["wal/x.wal"] + (["new-file"] if scene.strict else [])  # shared: on purpose
    ends = scene.stranger.run(lambda: {
        name: do.can_open(os.path.join(repo, name),
                          os.O_RDONLY if name in reads else os.O_CREAT | os.O_WRONLY)
        for name in reads + writes})
    assert "ok" not in ends.values(), ends
    held = scene.stranger.start(do.hold_locks, os.path.join(repo, "monotone.lock"), [2, 1024])
    with pytest.raises(AssertionError, match="PermissionError|EACCES|ended"):
        held.next(timeout=10)
    assert scene.victim(events=10)["outcome"] == "ok"
    scene.judge()


def test_a_lock_file_made_by_the_stranger_is_refused_at_once(scene):
    """A monotone.lock the stranger made, open to all, with shared locks held on the
    bytes the victim needs (the sequence lock, a partition's): the victim does not
    wait on it."""
    def plant(repo):
        fd = os.open(os.path.join(repo, "monotone.lock"), os.O_CREAT | os.O_RDWR, 0o666)
        os.fchmod(fd, 0o666)
        os.close(fd)
    prepare(scene, plant)
    holder = scene.stranger.start(do.hold_locks, os.path.join(scene.repo, "monotone.lock"),
                                  [0, 2, 3, 4, 1024, 1025])
    holder.next()
    outcome = scene.victim()
    expect_refused(outcome, scene, "monotone.lock")
    holder.stop()
    scene.judge(allowed=("AccessDenied",))


def test_shared_memory_names_taken_first_are_skipped(scene):
    """The stranger pre-creates the names the old scheme used, and watches /dev/shm
    to take the next memtable names of the victim as soon as it sees one."""
    from monotone.protocol import repo_id
    repo_id_ = repo_id(scene.repo)

    def plant():
        for kind in ("catalog", "mt0", "mt1", "mt2", ".catalog"):
            os.close(os.open(f"/dev/shm/mtn.{repo_id_}.{kind}", os.O_CREAT | os.O_RDWR, 0o666))
    scene.stranger.run(plant)
    taker = scene.stranger.start(do.take_names, "/dev/shm", f"mtn.{repo_id_}.")
    taker.next()
    try:
        outcome = scene.victim(events=200)
        assert outcome["outcome"] == "ok" and outcome["events"] == 200, outcome
        taken = [line["took"] for line in taker.stop() if "took" in line]
        for name in taken:  # what the stranger made stays the stranger's
            assert os.stat(f"/dev/shm/{name}").st_uid == scene.stranger.uid
        scene.judge()
    finally:
        taker.stop()
        for name in os.listdir("/dev/shm"):
            if name.startswith(f"mtn.{repo_id_}.") and \
                    os.stat(f"/dev/shm/{name}").st_uid == scene.stranger.uid:
                os.unlink(f"/dev/shm/{name}")


def test_a_flood_of_connections_neither_reaches_nor_slows_the_victim(scene):
    """The stranger connects to the socket as fast as it can while the victim works."""
    flood = scene.stranger.start(do.flood, os.path.join(scene.repo, "monotone.sock"), 3.0)
    flood.next()
    outcome = scene.victim(events=500)
    assert outcome["outcome"] == "ok", outcome
    ends = flood.next(timeout=30)["ends"]
    assert ends and "connected" not in ends, ends
    scene.judge()
