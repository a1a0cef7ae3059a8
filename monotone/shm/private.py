"""Files and directories that only their owner can use.

A repository is exactly as private as its owner's files. Every file the
engine makes is created here with O_CREAT | O_EXCL | O_NOFOLLOW and mode
0600, under a name the engine chose, so a link or a file someone else put at
that name is never written through; every file it opens again is opened
without following a link and checked to be a regular file of its own uid.
Directories are made 0700. A directory the engine keeps files in must be its
owner's and writable by nobody else, nor may anyone else be able to swap it
for another: its ancestors are root's or the owner's, and those writable by
others are sticky (OpenSSH's StrictModes asks the same of ~/.ssh). A repository
opened with strict_modes off skips the directory checks, never the file ones.

The uid is read at each call: a process may change it after import.
"""
from __future__ import annotations

import errno
import os
import pwd
import stat

from .errors import BadPath, Untrusted

PATH_MAX = 4095   # bytes of a path, without its terminating zero (Linux)
NAME_MAX = 255    # bytes of one component
FILE_MODE = 0o600
DIR_MODE = 0o700
_EXCL = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def who(uid: int) -> str:
    """'uid 1001 (bob)', or 'uid 1001' for a uid with no account."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_path(path: str, what: str = "path") -> None:
    """A path Linux can use: at most PATH_MAX bytes, each component at most NAME_MAX."""
    size = len(os.fsencode(path))
    if size > PATH_MAX:
        raise BadPath(f"{what} is {size} bytes long; Linux takes paths of at most "
                      f"{PATH_MAX} bytes")
    for part in os.fsencode(path).split(b"/"):
        if len(part) > NAME_MAX:
            raise BadPath(f"{what} has a component of {len(part)} bytes; Linux takes at "
                          f"most {NAME_MAX} bytes a component")


# files
def create(path: str, flags: int = os.O_WRONLY, replace: bool = False) -> int:
    """A new file of ours, 0600, open with flags. replace: a file of ours already at
    path (a temporary left by a crash) goes first; anything else there is refused."""
    for attempt in range(2):
        try:
            return os.open(path, flags | _EXCL, FILE_MODE)
        except FileExistsError as e:
            if not replace or attempt:
                _explain(path, e)
                raise Untrusted(f"{path} already exists: the engine makes its files under "
                                "new names only, and does not write through one it did "
                                "not make") from None
            remove_own(path)
    raise AssertionError("unreachable")


def open_own(path: str, flags: int = os.O_RDONLY, create: bool = False) -> int:
    """Open a regular file of ours without following a link (create: make it 0600
    when missing). A file of ours that others may read or write is made 0600."""
    extra = (os.O_CREAT if create else 0) | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | extra, FILE_MODE)
    except OSError as e:
        _explain(path, e)
        raise
    try:
        st = os.fstat(fd)
        _check_file(path, st)
        if st.st_mode & 0o077:
            os.fchmod(fd, FILE_MODE)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _explain(path: str, error: OSError) -> None:
    """An open that failed on a link or on another user's file (the kernel says
    ELOOP, or EACCES where it protects sticky directories) raises Untrusted
    naming it; other failures are left to the caller."""
    if error.errno not in (errno.ELOOP, errno.EACCES, errno.EPERM, errno.EEXIST):
        return
    try:
        st = os.lstat(path)
    except OSError:
        return
    _check_file(path, st)


def _check_file(path: str, st: os.stat_result) -> None:
    """What lstat or fstat found at path must be a regular file of ours."""
    if stat.S_ISLNK(st.st_mode):
        raise Untrusted(f"{path} is a symbolic link (made by {who(st.st_uid)}): the engine "
                        "does not follow links it did not make; remove it")
    if not stat.S_ISREG(st.st_mode):
        raise Untrusted(f"{path} is not a regular file: the engine does not use it; "
                        "remove it")
    if st.st_uid != os.geteuid():
        raise Untrusted(f"{path} belongs to {who(st.st_uid)}, not to {who(os.geteuid())}: "
                        "the engine does not use files another user made; move it away")


def owned(path: str) -> os.stat_result:
    """lstat of a file that must be ours (before renaming or removing it)."""
    st = os.lstat(path)
    _check_file(path, st)
    return st


def remove_own(path: str) -> bool:
    """Remove a file of ours; False when there is none. Another's file stays."""
    try:
        owned(path)
    except FileNotFoundError:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


# directories
def make_dir(path: str, strict: bool = True, ancestors: bool = True) -> None:
    """path as a directory of ours, made 0700 if missing (and so are missing parents),
    and checked (check_dir). Iterative: no depth limit of its own."""
    check_path(path)
    path = os.path.abspath(path)
    missing = []
    head = path
    while not os.path.lexists(head):
        missing.append(head)
        parent = os.path.dirname(head)
        if parent == head:
            break
        head = parent
    for part in reversed(missing):
        try:
            os.mkdir(part, DIR_MODE)
        except FileExistsError:
            pass  # another process made it at the same time: checked below
    check_dir(path, strict, ancestors)


def check_dir(path: str, strict: bool = True, ancestors: bool = True) -> None:
    """A directory the engine may keep files in: a directory (not a link to one), its
    owner's, writable by no one else; ancestors (unless told not to look) root's
    or ours, and sticky where others may write. With strict off, only that it is
    a directory. (The repository's own directory is checked as strict_modes says;
    those the engine makes inside it, always, but not their ancestors.)"""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise Untrusted(f"{path} is a symbolic link: the engine keeps files only in a "
                        "directory it can check, not through a link to one")
    if not stat.S_ISDIR(st.st_mode):
        raise Untrusted(f"{path} is not a directory")
    if not strict:
        return
    me = os.geteuid()
    # what the user may do: a directory of theirs may be shared on purpose; one the
    # engine makes inside it is always its own
    allow = ("SET strict_modes TO false before open() to allow it" if ancestors else
             "the engine keeps the directories it makes private; move this one away")
    if st.st_uid != me:
        raise Untrusted(f"{path} belongs to {who(st.st_uid)}, not to {who(me)}: a "
                        f"repository is used by its owner only ({allow})")
    if st.st_mode & 0o022:
        raise Untrusted(f"{path} is writable by {_writers(st.st_mode)} (mode "
                        f"{stat.S_IMODE(st.st_mode):04o}): they could replace the "
                        f"repository's files; run chmod go-w {path}, or {allow}")
    head = os.path.dirname(os.path.abspath(path))
    while ancestors:
        up = os.stat(head)
        if up.st_uid not in (me, 0):
            raise Untrusted(f"{head}, above {path}, belongs to {who(up.st_uid)}, who could "
                            "move the repository away and put another in its place (SET "
                            "strict_modes TO false before open() to allow it)")
        if up.st_mode & 0o022 and not up.st_mode & stat.S_ISVTX:
            raise Untrusted(f"{head}, above {path}, is writable by {_writers(up.st_mode)} "
                            f"and not sticky (mode {stat.S_IMODE(up.st_mode):04o}): they "
                            "could move the repository away and put another in its place; "
                            f"run chmod +t {head} or chmod go-w {head}, or SET strict_modes "
                            "TO false before open() to allow it")
        parent = os.path.dirname(head)
        if parent == head:
            return
        head = parent


def _writers(mode: int) -> str:
    who_ = [name for bit, name in ((0o020, "its group"), (0o002, "others")) if mode & bit]
    return " and ".join(who_)


def tighten(directory: str) -> int:
    """Make the files of ours in directory that others may read 0600 (a repository
    written before files were made private); how many were changed."""
    changed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    me = os.geteuid()
    for name in names:
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == me and st.st_mode & 0o077:
            try:
                os.close(open_own(path))  # made 0600 through the descriptor: no link
            except (OSError, Untrusted):
                continue
            changed += 1
    return changed
