"""Files read and written safely, for every place that touches user-chosen paths.

Reading (:func:`open_regular`, :func:`read_regular`):

* only regular files are opened: a named pipe (FIFO), a device (``/dev/zero``), a socket or a folder is
  refused with :class:`NotAFile` (an ``OSError`` whose ``strerror`` is the reason) before anything is
  read, so it can never block or stream without end; the file is opened non-blocking and checked
  again after opening (a file swapped for a FIFO in between is caught too);
* files of the kernel's pseudo file systems (``/proc``, ``/sys``) are refused: their sizes lie and
  reading them can be slow or endless;
* reads are capped: :func:`read_regular` refuses a file larger than its limit instead of reading it.

Writing (:func:`atomic_write_bytes`, :func:`atomic_write_text`, :func:`temporary_folder`):

* the data goes to a temporary file in the destination folder with an unpredictable name
  (``.<name>.<16 hex digits>.bvn-tmp``), created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and mode 0600,
  so a file or symlink planted at that name is never followed or overwritten; it is fsynced and then
  renamed over the target (atomic on POSIX; a symlink at the target name is replaced, not followed);
* every temporary is listed in a journal (``<data>/temporaries/<process>.log``) before it is created
  and struck from it once renamed or removed. :func:`remove_stale_temporaries` (run at every start by
  ``main.py`` and by the crash-recovery search) deletes what the journals of ended processes still
  list, so a save or export killed half-way leaves nothing behind after the next start.

Process identity (:class:`ProcessIdentity`): host, boot id, PID and the process's start time, so a
PID reused by another process (or a reboot) is never mistaken for the process that wrote a record.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

from planner.logsafe import data_dir

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: The suffix of every temporary file and folder this application creates beside a destination.
TEMP_SUFFIX = ".bvn-tmp"
_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{16}\.bvn-tmp(\.[A-Za-z0-9]{1,8})?$")
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_O_NOCTTY = getattr(os, "O_NOCTTY", 0)


class NotAFile(OSError):
    """A path that is not a regular file the application may read (``strerror`` says what it is)."""

    def __init__(self, path: PathLike, reason: str, code: int = errno.EINVAL) -> None:
        super().__init__(code, reason, os.fspath(path))


class FileTooLarge(OSError):
    """A file larger than the limit of the read (``strerror`` gives both sizes)."""

    def __init__(self, path: PathLike, size: int, limit: int) -> None:
        super().__init__(errno.EFBIG, f"the file is {_size_text(size)}, more than the limit of {_size_text(limit)}",
                         os.fspath(path))
        self.size, self.limit = size, limit


def _size_text(n: int) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"


# ---------------------------------------------------------------------------------------- reading
def describe_mode(mode: int) -> str:
    """What kind of file a ``st_mode`` names, in words ("a named pipe (FIFO)", "a device", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


_pseudo_devs: Optional[frozenset[int]] = None


def _pseudo_file_system_devices() -> frozenset[int]:
    """st_dev of /proc and /sys (the kernel's pseudo file systems), where they exist."""
    global _pseudo_devs
    if _pseudo_devs is None:
        devs = set()
        for root in ("/proc", "/sys"):
            try:
                devs.add(os.stat(root).st_dev)
            except OSError:
                pass
        _pseudo_devs = frozenset(devs)
    return _pseudo_devs


def system_path_reason(st: os.stat_result) -> Optional[str]:
    """Why a path with this stat result must not be read as user data (None when it may)."""
    if st.st_dev in _pseudo_file_system_devices():
        return "a file of the kernel's /proc or /sys file system, not a user file"
    return None


def check_readable(path: PathLike, st: Optional[os.stat_result] = None) -> os.stat_result:
    """``os.stat`` of a path that may be read as a regular user file; raises :class:`NotAFile` otherwise
    (and ``OSError`` when it cannot be looked at)."""
    if st is None:
        st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotAFile(path, f"{describe_mode(st.st_mode)}, not a regular file")
    reason = system_path_reason(st)
    if reason:
        raise NotAFile(path, reason)
    return st


def open_regular(path: PathLike) -> BinaryIO:
    """Open a regular file for binary reading; :class:`NotAFile` for anything else (never blocks)."""
    check_readable(path)
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_CLOEXEC | _O_NOCTTY)
    try:
        check_readable(path, os.fstat(fd))  # the path may have been swapped since the stat above
        if _O_NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: PathLike, limit: int) -> bytes:
    """The whole content of a regular file of at most ``limit`` bytes (:class:`FileTooLarge` above)."""
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise FileTooLarge(path, size, limit)
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while reading
        raise FileTooLarge(path, len(data), limit)
    return data


# ---------------------------------------------------------------------------------------- process identity
def _read_small(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(4096).decode("ascii", "replace").strip()
    except OSError:
        return ""


def boot_id() -> str:
    """This boot's id (Linux), "" where unknown: a record from another boot names a process that has ended."""
    return _read_small("/proc/sys/kernel/random/boot_id")


def process_start_time(pid: int) -> str:
    """The start time of process ``pid`` in clock ticks since boot (Linux /proc), "" where unknown."""
    text = _read_small(f"/proc/{int(pid)}/stat")
    end = text.rfind(")")  # the command name may hold spaces and parentheses
    fields = text[end + 2:].split() if end >= 0 else []
    return fields[19] if len(fields) > 19 else ""


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class ProcessIdentity:
    """Who wrote a record: host, boot, PID and that process's start time."""

    host: str
    boot_id: str
    pid: int
    start_time: str

    @classmethod
    def current(cls) -> "ProcessIdentity":
        pid = os.getpid()
        return cls(socket.gethostname(), boot_id(), pid, process_start_time(pid))

    def to_dict(self) -> dict[str, object]:
        return {"host": self.host, "boot_id": self.boot_id, "pid": self.pid, "start_time": self.start_time}

    @classmethod
    def from_dict(cls, d: dict) -> "ProcessIdentity":
        return cls(str(d.get("host", "")), str(d.get("boot_id", "")), int(d.get("pid", -1)),
                   str(d.get("start_time", "")))

    def is_current(self) -> bool:
        return self == ProcessIdentity.current()

    def may_be_running(self) -> bool:
        """False when the process has certainly ended: same host and another boot, no such PID, or the
        PID now belongs to a process started at another time. A process on another host may be running."""
        if self.host != socket.gethostname():
            return True
        if self.boot_id and boot_id() and self.boot_id != boot_id():
            return False
        if not _pid_alive(self.pid):
            return False
        if self.start_time:
            now = process_start_time(self.pid)
            if now and now != self.start_time:
                return False
        return True

    def slug(self) -> str:
        """A file-name form: host hash, boot id prefix, PID and start time."""
        return f"{_host_hash(self.host)}-{self.boot_id[:8] or 'noboot'}-{self.pid}-{self.start_time or '0'}"


def _host_hash(host: str) -> str:
    import hashlib

    return hashlib.sha1(host.encode("utf-8", "replace")).hexdigest()[:8]


# ---------------------------------------------------------------------------------------- temporary journal
def temporaries_dir() -> Path:
    return data_dir() / "temporaries"


_journal_lock = threading.Lock()
_journal_for: tuple[int, str, Optional[Path]] = (-1, "", None)


def _journal() -> Path:
    """This process's journal (a forked child gets its own)."""
    global _journal_for
    pid, home, path = _journal_for
    folder = temporaries_dir()
    if pid != os.getpid() or home != str(folder) or path is None:
        path = folder / f"{ProcessIdentity.current().slug()}.log"
        _journal_for = (os.getpid(), str(folder), path)
    return path


def _journal_write(op: str, path: Path) -> None:
    """Append ``+path`` / ``-path`` to this process's journal. A journal that cannot be written only
    costs the clean-up at the next start (logged), never the save itself."""
    line = f"{op}{os.fspath(path)}\n".encode("utf-8", "surrogateescape")
    with _journal_lock:
        jp = _journal()
        try:
            if op == "+":
                jp.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(jp, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("the list of temporary files could not be updated (%s)", exc.strerror or exc)


def is_temporary_name(name: str) -> bool:
    return bool(_TEMP_NAME.match(name))


def temporary_name(target: Path, keep_suffix: bool = False) -> Path:
    """An unpredictable temporary path beside ``target`` (not created); with ``keep_suffix`` it ends in the
    target's suffix too (for writers that choose the format by the suffix)."""
    stem = target.name[:80]  # keep the name within NAME_MAX whatever the target's length
    suffix = target.suffix if keep_suffix and re.fullmatch(r"\.[A-Za-z0-9]{1,8}", target.suffix) else ""
    return target.with_name(f".{stem}.{secrets.token_hex(8)}{TEMP_SUFFIX}{suffix}")


def _create_exclusive(target: Path, keep_suffix: bool = False) -> tuple[int, Path]:
    for _ in range(16):
        tmp = temporary_name(target, keep_suffix)
        _journal_write("+", tmp)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        except FileExistsError:  # something sits at that name: never touch it, take another name
            _journal_write("-", tmp)
            continue
        except BaseException:
            _journal_write("-", tmp)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", os.fspath(target))


@contextlib.contextmanager
def _replace_after(target: Path, keep_suffix: bool) -> Iterator[tuple[int, Path]]:
    """An exclusive temporary beside ``target`` (its open descriptor, which the block closes, and its path),
    renamed over ``target`` when the block ends without an exception, removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_exclusive(target, keep_suffix)
    try:
        yield fd, tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _journal_write("-", tmp)
        raise
    _journal_write("-", tmp)
    _fsync_dir(target.parent)


def atomic_write_bytes(target: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically (temporary file beside it, fsync, rename); returns the target."""
    target = Path(target)
    with _replace_after(target, keep_suffix=False) as (fd, _tmp):
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
    return target


def atomic_write_text(target: PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text (newlines kept as given)."""
    return atomic_write_bytes(target, text.encode("utf-8"))


@contextlib.contextmanager
def temporary_beside(target: PathLike) -> Iterator[Path]:
    """A fresh, empty temporary file beside ``target`` for a writer that needs a path; renamed over
    ``target`` when the block ends without an exception, removed otherwise. The temporary name ends in
    the target's suffix (writers that choose the format by it see the right one)."""
    with _replace_after(Path(target), keep_suffix=True) as (fd, tmp):
        os.close(fd)
        yield tmp
        if tmp.is_symlink() or not tmp.is_file():
            raise NotAFile(tmp, "the temporary file was replaced while it was written")


@contextlib.contextmanager
def temporary_folder(target: PathLike) -> Iterator[Path]:
    """A fresh private folder (0700) beside ``target``, journaled like a temporary file. The caller
    renames it into place; if it still exists when the block ends (an error or a cancel), it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(16):
        tmp = temporary_name(target)
        _journal_write("+", tmp)
        try:
            os.mkdir(tmp, 0o700)
            break
        except FileExistsError:
            _journal_write("-", tmp)
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", os.fspath(target))
    try:
        yield tmp
    finally:
        if os.path.lexists(tmp):
            _remove_temporary(tmp)
        _journal_write("-", tmp)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_temporary(path: Path) -> bool:
    """Delete a leftover temporary: only a name this module makes, a regular file or a real folder
    (a symlink at that name is removed as a link, never followed). True when something was removed."""
    if not is_temporary_name(path.name):
        return False
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)  # does not follow symlinks inside the folder
    else:
        os.unlink(path)
    return True


def remove_stale_temporaries() -> list[Path]:
    """Delete the temporaries listed in the journals of processes that have ended (a save or export
    killed half-way) and those journals; returns what was deleted. Cheap: one folder listing."""
    removed: list[Path] = []
    folder = temporaries_dir()
    try:
        journals = sorted(folder.glob("*.log"))
    except OSError:
        return removed
    mine = _journal().name
    host = socket.gethostname()
    boot = boot_id()
    for jp in journals:
        if jp.name == mine:
            continue
        m = re.fullmatch(r"([0-9a-f]{8})-([0-9a-z-]+?)-(\d+)-(\d+)\.log", jp.name)
        if m is None or m.group(1) != _host_hash(host):
            continue  # not ours, or a process of another computer sharing this folder
        same_boot = not boot or m.group(2) == boot[:8]
        ident = ProcessIdentity(host, "", int(m.group(3)), m.group(4) if m.group(4) != "0" else "")
        if same_boot and ident.may_be_running():
            continue
        try:
            lines = jp.read_bytes()[:16 * 1024 * 1024].decode("utf-8", "surrogateescape").splitlines()
        except OSError:
            continue
        pending: dict[str, None] = {}
        for line in lines:
            if line.startswith("+"):
                pending[line[1:]] = None
            elif line.startswith("-"):
                pending.pop(line[1:], None)
        for name in pending:
            p = Path(name)
            try:
                if _remove_temporary(p):
                    removed.append(p)
            except OSError as exc:
                log.warning("a leftover temporary file could not be removed (%s)", exc.strerror or exc)
        with contextlib.suppress(OSError):
            jp.unlink()
    return removed
