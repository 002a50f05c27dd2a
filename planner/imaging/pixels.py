"""Pixel decoding straight into a preallocated output array.

* Native (uncompressed little-endian) pixel data is read from the byte offset the header scan
  recorded, into a small per-thread scratch buffer (or directly into the output slice when no
  conversion is needed), then rescaled into the output slice: no full-size temporary array.
* Everything else (JPEG, JPEG-LS, JPEG 2000, RLE, deflate, big endian, 1-bit) goes through pydicom's
  decoder plug-ins, frame by frame. A transfer syntax without an installed decoder is reported by
  name and UID.
* Files are decoded by a thread pool (file reads, numpy and the C decoders release the GIL). Each file
  has a time limit: a decoder that does not return in time is abandoned (its result is discarded),
  the file is reported as skipped and the import goes on. Cancelling stops the pool promptly.

Values: Rescale Slope/Intercept are applied (integer types when slope and intercept are integers,
float32 otherwise; see :func:`planner.imaging.series.plan_dtype`); bits above Bits Stored are masked
(unsigned) or sign-extended (signed); MONOCHROME1 images are inverted as ``v -> invert_sum - v`` where
``invert_sum`` is the sum of the smallest and largest value the rescaled type can hold, so higher
values are always brighter.
"""

from __future__ import annotations

import concurrent.futures as cf
import concurrent.futures.process  # noqa: F401 - BrokenProcessPool
import io
import logging
import os
import threading
import time
import warnings
from collections import defaultdict
from typing import Any, Callable, Optional

import numpy as np

from planner.imaging.dicom_scan import DicomFile, DicomFrame, syntax_name

log = logging.getLogger(__name__)

#: Seconds one file may take to decode before it is abandoned (a damaged file must not hang the import).
FILE_TIME_LIMIT_S = 60.0
_local = threading.local()
_COMPRESSED_OK = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}


class FrameError(Exception):
    """A file's pixels could not be decoded (the message is the reason)."""


def default_workers() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def _scratch(nbytes: int) -> memoryview:
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < nbytes:
        buf = bytearray(nbytes)
        _local.buf = buf
    return memoryview(buf)[:nbytes]


def stored_dtype(h: dict[str, Any]) -> np.dtype:
    ba = int(h.get("BitsAllocated") or 16)
    signed = h.get("PixelRepresentation") == 1
    table = {8: ("<i1", "<u1"), 16: ("<i2", "<u2"), 32: ("<i4", "<u4")}
    if ba not in table:
        raise FrameError(f"unsupported Bits Allocated {ba} for direct reading")
    return np.dtype(table[ba][0 if signed else 1])


def fix_bits(a: np.ndarray, h: dict[str, Any]) -> np.ndarray:
    """Mask bits above Bits Stored (unsigned) or sign-extend from Bits Stored (signed). In place when
    possible; returns the array to use."""
    if a.dtype.kind not in "ui":
        return a
    nbits = a.dtype.itemsize * 8
    bs = h.get("BitsStored")
    if not isinstance(bs, int) or bs <= 0 or bs >= nbits:
        return a
    if a.dtype.kind == "u" and h.get("PixelRepresentation") != 1:
        mask = (1 << bs) - 1
        if not a.flags.writeable:
            a = a.copy()
        np.bitwise_and(a, a.dtype.type(mask), out=a)
        return a
    if a.dtype.kind == "u":  # signed data delivered as unsigned
        a = a.view(a.dtype.str.replace("u", "i"))
    shift = nbits - bs
    hi = (1 << (bs - 1)) - 1
    lo = -(1 << (bs - 1))
    if a.size and (a.max() > hi or a.min() < lo):
        if not a.flags.writeable:
            a = a.copy()
        np.left_shift(a, shift, out=a)
        np.right_shift(a, shift, out=a)
    return a


def store(dst: np.ndarray, a: np.ndarray, slope: float, intercept: float, invert_sum: Optional[float]) -> None:
    """Write rescaled (and, for MONOCHROME1, inverted) values of ``a`` into ``dst``."""
    if a.shape != dst.shape:
        if a.size != dst.size:
            raise FrameError(f"decoded image has shape {a.shape}, the header says {dst.shape}")
        a = a.reshape(dst.shape)
    if dst.dtype.kind == "f":
        if slope == 1.0 and intercept == 0.0 and invert_sum is None:
            np.copyto(dst, a, casting="unsafe")
        else:  # in float64, rounded once into the output type
            tmp = a.astype(np.float64)
            tmp *= slope
            tmp += intercept
            if invert_sum is not None:
                np.subtract(invert_sum, tmp, out=tmp)
            np.copyto(dst, tmp, casting="unsafe")
        return
    if slope == 1.0 and intercept == 0.0:
        if invert_sum is None:
            np.copyto(dst, a, casting="unsafe")
        else:
            np.subtract(np.int64(invert_sum), a, out=dst, casting="unsafe")
        return
    s, i = int(slope), int(intercept)
    if invert_sum is not None:
        # invert_sum - (s * a + i)
        tmp = a.astype(np.int64) * (-s)
        tmp += int(invert_sum) - i
        np.copyto(dst, tmp, casting="unsafe")
    elif s == 1:
        np.add(a, np.int64(i), out=dst, casting="unsafe")
    else:
        tmp = a.astype(np.int64) * s
        tmp += i
        np.copyto(dst, tmp, casting="unsafe")


# ------------------------------------------------------------------ one file
Job = list[tuple[DicomFrame, np.ndarray]]  # (frame, destination view)


def _decode_native(f: DicomFile, job: Job, invert_sum: Optional[float], abandoned: threading.Event) -> None:
    h = f.header
    sdt = stored_dtype(h)
    first = job[0][0]
    frame_bytes = first.rows * first.cols * sdt.itemsize
    base = f.pixel.offset  # type: ignore[union-attr]
    bits_ok = not (isinstance(h.get("BitsStored"), int) and h["BitsStored"] < sdt.itemsize * 8)
    if f.ref.member is not None:
        fh: Any = io.BytesIO(f.ref.read_bytes())
    else:
        fh = open(f.ref.path, "rb", buffering=0)
    try:
        for fr, dst in job:
            idx = fr.frame or 0
            fh.seek(base + idx * frame_bytes)
            direct = (bits_ok and invert_sum is None and fr.slope == 1.0 and fr.intercept == 0.0
                      and dst.dtype == sdt and dst.flags.c_contiguous)
            if direct:
                if abandoned.is_set():
                    return
                n = fh.readinto(memoryview(dst).cast("B"))
                if n != frame_bytes:
                    raise FrameError(f"file truncated in the pixel data (frame {idx})")
                continue
            mv = _scratch(frame_bytes)
            n = fh.readinto(mv)
            if n != frame_bytes:
                raise FrameError(f"file truncated in the pixel data (frame {idx})")
            a = np.frombuffer(mv, dtype=sdt).reshape(fr.rows, fr.cols)
            a = fix_bits(a, h)
            if abandoned.is_set():
                return
            store(dst, a, fr.slope, fr.intercept, invert_sum)
    finally:
        fh.close()


def check_decoder(ts: str) -> None:
    """Raise :class:`FrameError` naming the transfer syntax when no installed decoder handles it."""
    if not ts or ts in _COMPRESSED_OK:
        return
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    try:
        dec = get_decoder(UID(ts))
    except NotImplementedError:
        raise FrameError(f"no decoder is available for the transfer syntax {syntax_name(ts)}") from None
    except Exception:
        return
    if not dec.is_available:
        raise FrameError(f"no decoder plug-in is installed for the transfer syntax {syntax_name(ts)}")


def _read_dataset(f: DicomFile) -> Any:
    import pydicom

    if f.ref.member is None:
        with open(f.ref.path, "rb") as fh:
            head = fh.read(132)
        src: Any = f.ref.path
    else:
        data = f.ref.read_bytes()
        head, src = data[:132], io.BytesIO(data)
    prefix = len(head) >= 132 and head[128:132] == b"DICM"
    return pydicom.dcmread(src, force=not prefix)


def _decode_pydicom(f: DicomFile, job: Job, invert_sum: Optional[float], abandoned: threading.Event,
                    color: bool) -> None:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, iter_pixels

    check_decoder(f.transfer_syntax)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _read_dataset(f)
        if not getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None):
            ds.file_meta = getattr(ds, "file_meta", None) or __import__("pydicom").dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = f.transfer_syntax or "1.2.840.10008.1.2"
        h = f.header
        palette = str(h.get("PhotometricInterpretation") or "").startswith("PALETTE")
        modality_lut = bool(h.get("ModalityLUTSequence"))
        wanted = {fr.frame or 0: (fr, dst) for fr, dst in job}
        if f.n_frames <= 1:
            arrays = [(0, ds.pixel_array)]
        else:
            arrays = zip(sorted(wanted), iter_pixels(ds, indices=sorted(wanted)))  # type: ignore[assignment]
        for idx, a in arrays:
            fr, dst = wanted[idx]
            if abandoned.is_set():
                return
            if color:
                if palette:
                    a = apply_color_lut(a, ds)
                if a.ndim == 2:  # grey image in a colour group
                    a = np.repeat(a[..., None], 3, axis=-1)
                if dst.dtype == np.uint8 and a.dtype.itemsize > 1:
                    a = (a >> (8 * a.dtype.itemsize - 8)) if a.dtype.kind in "ui" else a
                np.copyto(dst, a.reshape(dst.shape), casting="unsafe")
                continue
            if a.ndim == 3 and a.shape[-1] == 3 and dst.ndim == 2:
                raise FrameError("colour pixels in a greyscale series")
            if modality_lut:
                a = apply_modality_lut(a, ds)
                store(dst, a, 1.0, 0.0, invert_sum)
            else:
                a = fix_bits(np.asarray(a), h)
                store(dst, a, fr.slope, fr.intercept, invert_sum)


# ------------------------------------------------------------------ many files
#: Compressed greyscale series with at least this many files are decoded in worker processes: the
#: JPEG 2000 / JPEG-LS / JPEG decoders hold the GIL, so threads cannot run them in parallel. A decoder
#: that crashes there on a damaged file cannot take the application down either.
PROCESS_MIN_FILES = 8
_proc_lock = threading.Lock()
_proc_pool: Optional[cf.ProcessPoolExecutor] = None


_proc_disabled = False
#: Seconds the first start of the worker processes may take (they import numpy and pydicom).
PROCESS_START_TIMEOUT_S = 60.0


def _ping() -> int:
    return os.getpid()


def _process_pool() -> Optional[cf.ProcessPoolExecutor]:
    """The shared decoding process pool, started (and checked with a trivial task) on first use; None
    on a single-core machine or where worker processes cannot start (e.g. an interpreter whose main
    module cannot be re-imported): decoding then stays in threads."""
    global _proc_pool, _proc_disabled
    n = min(os.cpu_count() or 1, 8)
    if n < 2 or _proc_disabled:
        return None
    with _proc_lock:
        if _proc_pool is None:
            import multiprocessing

            pool = cf.ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"))
            try:
                pool.submit(_ping).result(timeout=PROCESS_START_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - fall back to threads for the whole session
                log.warning("decoding worker processes could not start (%s); decoding in threads", type(exc).__name__)
                _proc_disabled = True
                try:
                    pool.shutdown(wait=False, cancel_futures=True)
                except Exception:
                    pass
                return None
            _proc_pool = pool
        return _proc_pool


def prestart_decoders() -> None:
    """Start the decoding worker processes in the background (call once at application start, so the
    first compressed series does not wait for them)."""
    threading.Thread(target=_process_pool, name="bvn-decoder-start", daemon=True).start()


def _discard_process_pool(pool: Optional[cf.ProcessPoolExecutor], kill: bool) -> None:
    """Forget a broken pool (or one with a stuck worker); ``kill`` terminates its processes."""
    global _proc_pool
    if pool is None:
        return
    with _proc_lock:
        if _proc_pool is pool:
            _proc_pool = None
    if kill:
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            try:
                proc.terminate()
            except Exception:
                pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:
        pass


def _decode_in_process(path: Optional[str], data: Optional[bytes], indices: list[int], n_frames: int) -> list[Any]:
    """Worker-process side: the stored (not rescaled) frames ``indices`` of one file."""
    import pydicom
    from pydicom.pixels import iter_pixels

    src: Any = path if path is not None else io.BytesIO(data or b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path is not None:
            with open(path, "rb") as fh:
                head = fh.read(132)
        else:
            head = (data or b"")[:132]
        ds = pydicom.dcmread(src, force=not (len(head) >= 132 and head[128:132] == b"DICM"))
        if n_frames <= 1:
            return [np.ascontiguousarray(ds.pixel_array)]
        return [np.ascontiguousarray(a) for a in iter_pixels(ds, indices=indices)]


def _process_eligible(f: DicomFile, color: bool) -> bool:
    h = f.header
    return (f.decode == "pydicom" and not color and f.transfer_syntax not in _COMPRESSED_OK
            and not h.get("ModalityLUTSequence") and h.get("BitsAllocated") in (8, 16, 32)
            and str(h.get("PhotometricInterpretation") or "") in ("MONOCHROME1", "MONOCHROME2"))


def decode_into(out: np.ndarray, frames: list[DicomFrame], slots: list[int], *, invert_sum: Optional[float],
                color: bool = False, cancel: Any = None, on_file_done: Optional[Callable[[int, int], None]] = None,
                time_limit_s: float = FILE_TIME_LIMIT_S, workers: Optional[int] = None,
                processes: Optional[bool] = None) -> dict[Any, str]:
    """Decode ``frames`` into ``out[slots[i]]``. Returns {FileRef: reason} for the files that failed.

    Native pixels are read by a thread pool; compressed greyscale series of at least
    :data:`PROCESS_MIN_FILES` files are decoded by a process pool (``processes`` forces it on or off).
    ``cancel`` (an object with ``is_set()``) stops the work promptly; files not yet decoded are then
    returned with the reason "cancelled". A file whose decoding exceeds ``time_limit_s`` is abandoned
    and reported.
    """
    jobs: dict[DicomFile, Job] = defaultdict(list)
    for fr, s in zip(frames, slots):
        jobs[fr.file].append((fr, out[s]))
    failures: dict[Any, str] = {}
    files = list(jobs)
    total = len(files)
    if not files:
        return failures
    abandoned = {f.ref: threading.Event() for f in files}
    started: dict[Any, float] = {}

    def run(f: DicomFile) -> None:
        started[f.ref] = time.monotonic()
        if f.decode == "native" and not color:
            _decode_native(f, jobs[f], invert_sum, abandoned[f.ref])
        else:
            _decode_pydicom(f, jobs[f], invert_sum, abandoned[f.ref], color)

    def store_decoded(f: DicomFile, arrays: list[Any]) -> None:
        if abandoned[f.ref].is_set():
            return
        if len(arrays) != len(jobs[f]):
            raise FrameError(f"{len(arrays)} frame(s) decoded, {len(jobs[f])} expected")
        for (fr, dst), a in zip(jobs[f], arrays):
            store(dst, fix_bits(np.asarray(a), f.header), fr.slope, fr.intercept, invert_sum)

    by_process = [f for f in files if _process_eligible(f, color)]
    use_processes = processes if processes is not None else len(by_process) >= PROCESS_MIN_FILES
    ppool = _process_pool() if use_processes and by_process else None
    if ppool is None:
        by_process = []
    n_workers = workers or default_workers()
    # always in worker threads, even for one file, so that a decoder that never returns is abandoned
    # after ``time_limit_s`` instead of hanging the import
    tpool = cf.ThreadPoolExecutor(max_workers=max(1, min(n_workers, total)), thread_name_prefix="bvn-decode")
    futs: dict[cf.Future, DicomFile] = {}
    in_process: set[cf.Future] = set()
    crashed: list[DicomFile] = []
    stuck_worker = False
    try:
        for f in files:
            if f in by_process:
                try:
                    check_decoder(f.transfer_syntax)
                except FrameError as exc:
                    failures[f.ref] = str(exc)
                    continue
                indices = sorted({fr.frame or 0 for fr, _dst in jobs[f]})
                fut = ppool.submit(_decode_in_process,  # type: ignore[union-attr]
                                   f.ref.path if f.ref.member is None else None,
                                   f.ref.read_bytes() if f.ref.member is not None else None, indices, f.n_frames)
                in_process.add(fut)
            else:
                fut = tpool.submit(run, f)
            futs[fut] = f
        pending = set(futs)
        done_count = len(failures)
        while pending:
            done, pending = cf.wait(pending, timeout=0.05, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                f = futs.pop(fut)  # drop the future at once: it holds the decoded frames of a process task
                done_count += 1
                if fut.cancelled():
                    failures[f.ref] = "cancelled"
                    continue
                exc = fut.exception()
                if exc is None and fut in in_process:
                    in_process.discard(fut)
                    try:
                        store_decoded(f, fut.result())
                    except Exception as store_exc:  # noqa: BLE001
                        exc = store_exc
                if isinstance(exc, cf.process.BrokenProcessPool):
                    crashed.append(f)
                elif exc is not None:
                    failures[f.ref] = describe_failure(exc, f)
            if done and on_file_done:
                on_file_done(done_count, total)
            if cancel is not None and cancel.is_set():
                for fut in pending:
                    fut.cancel()
                    abandoned[futs[fut].ref].set()
                    failures[futs[fut].ref] = "cancelled"
                break
            now = time.monotonic()
            for fut in list(pending):
                f = futs[fut]
                if fut in in_process and f.ref not in started and fut.running():
                    started[f.ref] = now
                t0 = started.get(f.ref)
                if t0 is not None and now - t0 > time_limit_s and not fut.done():
                    abandoned[f.ref].set()
                    failures[f.ref] = f"decoding took longer than {time_limit_s:.0f} s (damaged or unsupported data)"
                    pending.discard(fut)
                    done_count += 1
                    stuck_worker = stuck_worker or fut in in_process
    finally:
        tpool.shutdown(wait=False, cancel_futures=True)
        if crashed or stuck_worker:
            _discard_process_pool(ppool, kill=True)
    if crashed and not (cancel is not None and cancel.is_set()):
        failures.update(_retry_isolated(crashed, jobs, store_decoded, time_limit_s))
    return failures


def _retry_isolated(files: list[DicomFile], jobs: dict[DicomFile, Job], store_decoded: Callable[..., None],
                    time_limit_s: float) -> dict[Any, str]:
    """After a worker process crashed: decode the affected files one by one, each in its own process,
    so the file that crashes the decoder is found and the others still load."""
    import multiprocessing

    failures: dict[Any, str] = {}
    ctx = multiprocessing.get_context("spawn")
    for f in files:
        pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        try:
            indices = sorted({fr.frame or 0 for fr, _dst in jobs[f]})
            fut = pool.submit(_decode_in_process, f.ref.path if f.ref.member is None else None,
                              f.ref.read_bytes() if f.ref.member is not None else None, indices, f.n_frames)
            store_decoded(f, fut.result(timeout=time_limit_s))
        except cf.process.BrokenProcessPool:
            failures[f.ref] = f"the {syntax_name(f.transfer_syntax)} decoder crashed on this file (damaged data)"
        except cf.TimeoutError:
            failures[f.ref] = f"decoding took longer than {time_limit_s:.0f} s (damaged or unsupported data)"
            _discard_process_pool(pool, kill=True)
        except Exception as exc:  # noqa: BLE001
            failures[f.ref] = describe_failure(exc, f)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
    return failures


def describe_failure(exc: BaseException, f: DicomFile) -> str:
    if isinstance(exc, FrameError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the pixel data"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = " ".join(lines)
    if len(msg) > 300:
        msg = msg[:300] + "..."
    ts = syntax_name(f.transfer_syntax)
    return f"pixel data could not be decoded ({ts}): {type(exc).__name__}{': ' + msg if msg else ''}"
