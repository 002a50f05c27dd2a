"""Where images come from: folders (recursive), DICOMDIR (CD/DVD layout), zip archives and single
files. Produces :class:`FileRef` objects; a file inside a zip archive is read from the archive on
demand, never extracted to disk.

Only regular files are read: named pipes (FIFOs), devices, sockets and the kernel's ``/proc`` and
``/sys`` are skipped with the reason before anything is opened (:mod:`planner.safefiles`), so nothing
can block the import or stream without end. Whole-file reads are capped at :data:`MAX_READ_BYTES`;
zip members larger than :data:`MAX_ZIP_MEMBER_BYTES`, or large and implausibly compressed (a zip
bomb), are skipped from the archive's directory without decompressing anything.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Optional

from planner.safefiles import FileTooLarge, NotAFile, check_readable, describe_mode, open_regular, system_path_reason

#: Largest file read whole into memory (zip members, image captures, text voxel data).
MAX_READ_BYTES = 512 * 1024 * 1024
#: Largest zip member read (it is decompressed into memory).
MAX_ZIP_MEMBER_BYTES = MAX_READ_BYTES
#: A zip member above this size that is compressed more than :data:`MAX_ZIP_RATIO` times is skipped as
#: a zip bomb (real images compress 2 to 20 times; only long runs of one byte value compress ~1000 times).
ZIP_RATIO_MIN_BYTES = 64 * 1024 * 1024
#: Largest DICOMDIR read (a DICOMDIR of 100,000 images is about 50 MB).
MAX_DICOMDIR_BYTES = 128 * 1024 * 1024
MAX_ZIP_RATIO = 200

#: Names of files that are never images (operating-system clutter on CDs and USB sticks).
_SYSTEM_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "autorun.inf"}


@dataclass(frozen=True)
class FileRef:
    """One file to read: a path, or a member of a zip archive (``path`` is then the archive)."""

    path: str
    member: Optional[str] = None

    @property
    def name(self) -> str:
        """How the report names the file: the path, or ``archive.zip!member``."""
        return f"{self.path}!{self.member}" if self.member else self.path

    @property
    def suffix(self) -> str:
        name = (self.member or self.path).lower()
        if name.endswith(".nii.gz"):
            return ".nii.gz"
        return os.path.splitext(name)[1]

    def read_bytes(self, limit: Optional[int] = None) -> bytes:
        """The first ``limit`` bytes, or the whole file (:class:`FileTooLarge` above :data:`MAX_READ_BYTES`).
        Only regular files are read (:class:`planner.safefiles.NotAFile` otherwise)."""
        if self.member is None:
            with open_regular(self.path) as fh:
                if limit is not None:
                    return fh.read(limit)
                size = os.fstat(fh.fileno()).st_size
                if size > MAX_READ_BYTES:
                    raise FileTooLarge(self.path, size, MAX_READ_BYTES)
                return fh.read(MAX_READ_BYTES)
        return _zip_read(self.path, self.member, limit)

    def open(self) -> BinaryIO:
        """A binary file object: the regular file itself, or the zip member read into memory."""
        if self.member is None:
            return open_regular(self.path)
        return io.BytesIO(self.read_bytes())

    def size(self) -> int:
        if self.member is None:
            return os.path.getsize(self.path)
        with _zip_lock:
            return _zip_open(self.path).getinfo(self.member).file_size

    def sibling(self, name: str) -> "FileRef":
        """A file named ``name`` relative to this one's folder (for detached headers: .mhd/.raw, .nhdr)."""
        if self.member is None:
            return FileRef(os.path.join(os.path.dirname(self.path), name))
        base = os.path.dirname(self.member.replace("\\", "/"))
        return FileRef(self.path, f"{base}/{name}" if base else name)

    def exists(self) -> bool:
        if self.member is None:
            return os.path.isfile(self.path)
        with _zip_lock:
            try:
                _zip_open(self.path).getinfo(self.member)
                return True
            except KeyError:
                return False


# ------------------------------------------------------------------ zip archives
_zip_lock = threading.Lock()
_zip_cache: dict[str, zipfile.ZipFile] = {}


def _zip_open(path: str) -> zipfile.ZipFile:
    zf = _zip_cache.get(path)
    if zf is None:
        fh = open_regular(path)
        try:
            zf = zipfile.ZipFile(fh)
        except BaseException:
            fh.close()
            raise
        _zip_cache[path] = zf
    return zf


def _close_zip(zf: zipfile.ZipFile) -> None:
    fp = zf.fp
    zf.close()
    if fp is not None:  # opened by us (a file object passed to ZipFile is not closed by it)
        fp.close()


def zip_member_problem(info: zipfile.ZipInfo) -> Optional[str]:
    """Why a zip member is not read (from the archive's directory, before decompressing), or None."""
    if info.file_size > MAX_ZIP_MEMBER_BYTES:
        return (f"zip member of {info.file_size / 1e6:.0f} MB is larger than the limit of "
                f"{MAX_ZIP_MEMBER_BYTES / 1e6:.0f} MB for one file")
    if info.file_size > ZIP_RATIO_MIN_BYTES and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
        return (f"zip member compressed {info.file_size / max(info.compress_size, 1):.0f} times "
                f"({info.compress_size} bytes for {info.file_size / 1e6:.0f} MB): implausible for an image "
                "(a zip bomb?)")
    return None


def _zip_read(path: str, member: str, limit: Optional[int]) -> bytes:
    with _zip_lock:
        zf = _zip_open(path)
        info = zf.getinfo(member)
        if limit is None:
            problem = zip_member_problem(info)
            if problem:
                raise FileTooLarge(f"{path}!{member}", info.file_size, MAX_ZIP_MEMBER_BYTES)
        with zf.open(info) as fh:
            return fh.read(MAX_ZIP_MEMBER_BYTES if limit is None else limit)


def close_archives(paths: Optional[Iterable[str]] = None) -> None:
    """Close the zip archives kept open for reading members (those in ``paths``, or all). A closed
    archive is opened again when a member is read later."""
    with _zip_lock:
        for p in list(_zip_cache) if paths is None else [p for p in paths if p in _zip_cache]:
            try:
                _close_zip(_zip_cache.pop(p))
            except OSError:
                pass


def is_zip(path: str) -> bool:
    try:
        with open_regular(path) as fh:
            return fh.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    except OSError:
        return False


# ------------------------------------------------------------------ listing
@dataclass
class Listing:
    """The files found, plus files already decided on (name, status, reason) and general notes."""

    refs: list[FileRef]
    decided: list[tuple[str, str, str]]
    notes: list[str]


def _is_system_file(name: str) -> bool:
    low = name.lower()
    return low in _SYSTEM_NAMES or low.startswith("._")


def is_dicomdir_name(name: str) -> bool:
    return os.path.basename(name).upper() in ("DICOMDIR", "DICOMDIR.;1", "DICOMDIR.")


def list_sources(paths: Iterable[str | os.PathLike[str]],
                 cancelled: Callable[[], bool] = lambda: False) -> Listing:
    """Expand folders, DICOMDIRs and zip archives into the files to read, in a stable order."""
    out = Listing([], [], [])
    seen: set[FileRef] = set()

    def add(ref: FileRef) -> None:
        if ref not in seen:
            seen.add(ref)
            out.refs.append(ref)

    for raw in paths:
        p = os.fspath(raw)
        if cancelled():
            break
        try:
            _add_path(p, out, add, cancelled)
        except Exception as exc:  # noqa: BLE001 - a damaged medium must not stop the import
            out.notes.append(f"{p} could not be listed completely ({type(exc).__name__}: {exc})")
    return out


def _unreadable_reason(st: os.stat_result) -> Optional[str]:
    """Why a file with this stat result is not read (None for a regular user file)."""
    try:
        check_readable("", st)
    except NotAFile as exc:
        return f"{exc.strerror}: skipped"
    return None


def _add_path(p: str, out: Listing, add: Callable[[FileRef], None], cancelled: Callable[[], bool]) -> None:
    try:
        st = os.stat(p)
    except FileNotFoundError:
        out.decided.append((p, "skipped", "not found"))
        return
    except OSError as exc:
        out.decided.append((p, "skipped", f"cannot be read ({exc.strerror or exc})"))
        return
    system = system_path_reason(st)
    if system:
        out.decided.append((p, "skipped", f"{system}: skipped"))
    elif stat.S_ISDIR(st.st_mode):
        dicomdir = next((os.path.join(p, n) for n in sorted(os.listdir(p)) if is_dicomdir_name(n)
                         and os.path.isfile(os.path.join(p, n))), None)
        refs = _from_dicomdir(dicomdir, out) if dicomdir is not None else None
        if refs is not None:
            for r in refs:
                add(r)
        else:
            _walk(p, out, add, cancelled)
    elif is_dicomdir_name(p):
        refs = _from_dicomdir(p, out)
        if refs is None:
            _walk(os.path.dirname(os.path.abspath(p)), out, add, cancelled)
        else:
            for r in refs:
                add(r)
    elif not stat.S_ISREG(st.st_mode):
        out.decided.append((p, "skipped", f"{describe_mode(st.st_mode)}, not a regular file: skipped"))
    elif is_zip(p):
        _from_zip(p, out, add)
    else:
        add(FileRef(p))


def _walk(root: str, out: Listing, add: Callable[[FileRef], None], cancelled: Callable[[], bool]) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        if cancelled():
            return
        keep = []
        for d in sorted(dirnames):
            try:
                reason = system_path_reason(os.stat(os.path.join(dirpath, d)))
            except OSError:
                reason = None
            if reason:  # /proc or /sys mounted (or bound) inside the folder
                out.decided.append((os.path.join(dirpath, d), "skipped", f"{reason}: skipped"))
            else:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if cancelled():
                return
            full = os.path.join(dirpath, name)
            try:
                reason = _unreadable_reason(os.stat(full))
            except OSError as exc:
                reason = f"cannot be read ({exc.strerror or exc})"
            if reason:
                out.decided.append((full, "skipped", reason))
            elif _is_system_file(name):
                out.decided.append((full, "skipped", "operating-system file, not an image"))
            elif is_dicomdir_name(name):
                out.decided.append((full, "skipped", "DICOMDIR index (the folder's files were scanned directly)"))
            elif name.lower().endswith(".zip") and is_zip(full):
                _from_zip(full, out, add)
            else:
                add(FileRef(full))


def _from_zip(path: str, out: Listing, add: Callable[[FileRef], None]) -> None:
    try:
        with _zip_lock:
            zf = _zip_open(path)
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        out.decided.append((path, "skipped", f"damaged zip archive ({exc})"))
        return
    if not infos:
        out.decided.append((path, "skipped", "empty zip archive"))
    for info in sorted(infos, key=lambda i: i.filename):
        base = os.path.basename(info.filename)
        name = f"{path}!{info.filename}"
        problem = zip_member_problem(info)
        if problem:
            out.decided.append((name, "skipped", problem))
        elif _is_system_file(base) or info.filename.startswith("__MACOSX/"):
            out.decided.append((name, "skipped", "operating-system file, not an image"))
        elif is_dicomdir_name(base):
            out.decided.append((name, "skipped", "DICOMDIR index (the archive's files were scanned directly)"))
        elif info.flag_bits & 0x1:
            out.decided.append((name, "skipped", "encrypted zip member (password protected)"))
        elif base.lower().endswith(".zip"):
            out.decided.append((name, "skipped", "zip archive inside a zip archive: unpack it first"))
        else:
            add(FileRef(path, info.filename))


def _resolve_case_insensitive(base: Path, parts: list[str], cache: dict[str, dict[str, str]]) -> Optional[Path]:
    cur = base
    for i, part in enumerate(parts):
        key = str(cur)
        if key not in cache:
            try:
                cache[key] = {n.upper(): n for n in os.listdir(cur)}
            except OSError:
                return None
        names = cache[key]
        wanted = part.upper()
        hit = names.get(wanted) or names.get(wanted + ";1") or names.get(wanted + ".") or names.get(wanted + ".;1")
        if hit is None:
            return None
        cur = cur / hit
    return cur if cur.is_file() else None


def _from_dicomdir(path: str, out: Listing) -> Optional[list[FileRef]]:
    """Files referenced by a DICOMDIR, or None (with a note) when the DICOMDIR cannot be used."""
    import pydicom

    out.decided.append((path, "skipped", "DICOMDIR index (used to find the images)"))
    try:
        with open_regular(path) as fh:
            if os.fstat(fh.fileno()).st_size > MAX_DICOMDIR_BYTES:
                raise FileTooLarge(path, os.fstat(fh.fileno()).st_size, MAX_DICOMDIR_BYTES)
            ds = pydicom.dcmread(fh, force=True)
        records = ds.get("DirectoryRecordSequence") or []
    except Exception as exc:
        out.notes.append(f"The DICOMDIR {path} could not be read ({type(exc).__name__}: {exc}); "
                         "the folder was scanned instead.")
        return None
    base = Path(path).parent
    cache: dict[str, dict[str, str]] = {}
    refs: list[FileRef] = []
    missing = 0
    for rec in records:
        try:
            fid = rec.get("ReferencedFileID")
        except Exception:
            continue
        if fid is None or fid == "":
            continue
        parts = [str(x) for x in (fid if isinstance(fid, (list, tuple)) or type(fid).__name__ == "MultiValue"
                                  else [fid])]
        parts = [q for p in parts for q in p.replace("\\", "/").split("/") if q and q not in (".", "..")]
        hit = _resolve_case_insensitive(base, parts, cache)
        if hit is None:
            missing += 1
            out.decided.append((str(base.joinpath(*parts)), "skipped", "listed in the DICOMDIR but not found"))
            continue
        refs.append(FileRef(str(hit)))
    if not refs:
        out.notes.append(f"The DICOMDIR {path} lists no readable image files; the folder was scanned instead.")
        return None
    if missing:
        out.notes.append(f"{missing} file(s) listed in the DICOMDIR {path} were not found.")
    # keep a stable order and drop duplicates
    seen: set[str] = set()
    uniq = []
    for r in refs:
        if r.path not in seen:
            seen.add(r.path)
            uniq.append(r)
    return uniq
