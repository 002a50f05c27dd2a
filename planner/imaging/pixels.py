"""Pixel decoding straight into a preallocated output array.

* Native (uncompressed little-endian) greyscale pixel data is read by a thread pool from the byte
  offset the header scan recorded, into a small per-thread scratch buffer (or directly into the output
  slice when no conversion is needed), then rescaled into the output slice: no full-size temporary
  array, and no decoder runs (the header scan checked that the bytes are present).
* Everything else (JPEG, JPEG-LS, JPEG 2000, RLE, deflate, big endian, 1-bit, colour, Modality LUT)
  goes through pydicom's decoder plug-ins in worker processes (:mod:`planner.imaging.workers`), in
  chunks of frames of at most :data:`TASK_BYTES`. Each file has a time limit: a worker that does not
  answer in time is killed, the file is reported as skipped and the import goes on; a decoder crash
  ends only its worker. Cancelling kills the busy workers at once. A transfer syntax without an
  installed decoder is reported by name and UID.

Values: Rescale Slope/Intercept are applied (integer types when slope and intercept are integers,
float32 otherwise; see :func:`planner.imaging.series.plan_dtype`); bits above Bits Stored are masked
(unsigned) or sign-extended (signed); MONOCHROME1 images are inverted as ``v -> invert_sum - v`` where
``invert_sum`` is the sum of the smallest and largest value the rescaled type can hold, so higher
values are always brighter.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
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
    """Native pixels read by offset (no decoder runs): bounded by the file's size, checked frame by frame."""
    h = f.header
    sdt = stored_dtype(h)
    first = job[0][0]
    frame_bytes = first.rows * first.cols * sdt.itemsize
    base = f.pixel.offset  # type: ignore[union-attr]
    bits_ok = not (isinstance(h.get("BitsStored"), int) and h["BitsStored"] < sdt.itemsize * 8)
    with f.ref.open() as fh:
        for fr, dst in job:
            if abandoned.is_set():
                return
            idx = fr.frame or 0
            fh.seek(base + idx * frame_bytes)
            direct = (bits_ok and invert_sum is None and fr.slope == 1.0 and fr.intercept == 0.0
                      and dst.dtype == sdt and dst.flags.c_contiguous)
            if direct:
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
            store(dst, a, fr.slope, fr.intercept, invert_sum)


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


# ------------------------------------------------------------------ many files
#: Decoded bytes of one worker task at most: a multi-frame file is decoded in chunks of frames, so no
#: result larger than this crosses between processes at once.
TASK_BYTES = 64 * 1024 * 1024


def prestart_decoders() -> None:
    """Start the decoder worker processes in the background (call once at application start, so the
    first compressed series does not wait for them)."""
    from planner.imaging.workers import prestart

    threading.Thread(target=prestart, name="bvn-decoder-start", daemon=True).start()


def _sample_bytes(f: DicomFile, color: bool) -> int:
    """Bytes of one decoded frame (upper bound, for the worker's output check)."""
    first_frame = f.header
    rows, cols = int(first_frame.get("Rows") or 0), int(first_frame.get("Columns") or 0)
    ba = int(first_frame.get("BitsAllocated") or 16)
    per_sample = 8 if ba > 32 else 4 if ba > 16 else 2 if ba > 8 else 1
    if str(first_frame.get("PhotometricInterpretation") or "").startswith("PALETTE"):
        per_sample = max(per_sample, 2)  # palette entries are 16-bit
    samples = 3 if color or int(first_frame.get("SamplesPerPixel") or 1) == 3 else 1
    # a Modality LUT may map to wider values than stored; pydicom may return float64
    return rows * cols * samples * max(per_sample, 8 if first_frame.get("ModalityLUTSequence") else per_sample)


def _worker_tasks(f: DicomFile, job: Job, color: bool) -> list[Any]:
    from planner.imaging.workers import Task

    h = f.header
    options = {"color": color, "palette": str(h.get("PhotometricInterpretation") or "").startswith("PALETTE"),
               "modality_lut": bool(h.get("ModalityLUTSequence")), "transfer_syntax": f.transfer_syntax}
    per_frame = _sample_bytes(f, color)
    per_task = max(1, TASK_BYTES // max(per_frame, 1))
    indices = sorted({fr.frame or 0 for fr, _dst in job})
    path = f.ref.path if f.ref.member is None else None
    data = f.ref.read_bytes() if f.ref.member is not None else None
    return [Task((f, tuple(chunk)), "dicom_frames", (path, data, list(chunk), f.n_frames, options),
                 per_frame * len(chunk))
            for chunk in (indices[i:i + per_task] for i in range(0, len(indices), per_task))]


def decode_into(out: np.ndarray, frames: list[DicomFrame], slots: list[int], *, invert_sum: Optional[float],
                color: bool = False, cancel: Any = None, on_file_done: Optional[Callable[[int, int], None]] = None,
                time_limit_s: float = FILE_TIME_LIMIT_S, workers: Optional[int] = None,
                memory_budget: Optional[int] = None) -> dict[Any, str]:
    """Decode ``frames`` into ``out[slots[i]]``. Returns {FileRef: reason} for the files that failed.

    Native greyscale pixels are read by a thread pool straight from the file (no decoder runs). Everything
    else (compressed, big endian, deflated, 1-bit, colour, Modality LUT) is decoded by worker processes
    (:mod:`planner.imaging.workers`), each file within ``time_limit_s`` or its worker is killed.
    ``cancel`` (an object with ``is_set()``) stops the work within 50 ms; files not yet decoded are then
    returned with the reason "cancelled".
    """
    jobs: dict[DicomFile, Job] = defaultdict(list)
    for fr, s in zip(frames, slots):
        jobs[fr.file].append((fr, out[s]))
    failures: dict[Any, str] = {}
    files = list(jobs)
    total = len(files)
    if not files:
        return failures
    done_count = 0

    def file_done() -> None:
        nonlocal done_count
        done_count += 1
        if on_file_done:
            on_file_done(done_count, total)

    native = [f for f in files if f.decode == "native" and not color]
    decoded = [f for f in files if f not in set(native)]
    _read_native(native, jobs, invert_sum, failures, cancel, file_done, time_limit_s, workers)
    if decoded and not (cancel is not None and cancel.is_set()):
        _decode_in_workers(decoded, jobs, invert_sum, color, failures, cancel, file_done, time_limit_s,
                           memory_budget)
    return failures


def _read_native(files: list[DicomFile], jobs: dict[DicomFile, Job], invert_sum: Optional[float],
                 failures: dict[Any, str], cancel: Any, file_done: Callable[[], None], time_limit_s: float,
                 workers: Optional[int]) -> None:
    if not files:
        return
    abandoned = {f.ref: threading.Event() for f in files}
    started: dict[Any, float] = {}

    def run(f: DicomFile) -> None:
        started[f.ref] = time.monotonic()
        _decode_native(f, jobs[f], invert_sum, abandoned[f.ref])

    tpool = cf.ThreadPoolExecutor(max_workers=max(1, min(workers or default_workers(), len(files))),
                                  thread_name_prefix="bvn-read")
    futs = {tpool.submit(run, f): f for f in files}
    pending = set(futs)
    try:
        while pending:
            done, pending = cf.wait(pending, timeout=0.05, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                f = futs[fut]
                if fut.cancelled():
                    failures[f.ref] = "cancelled"
                elif fut.exception() is not None:
                    failures[f.ref] = describe_failure(fut.exception(), f)  # type: ignore[arg-type]
                file_done()
            if cancel is not None and cancel.is_set():
                for fut in pending:
                    fut.cancel()
                    abandoned[futs[fut].ref].set()
                    failures[futs[fut].ref] = "cancelled"
                break
            now = time.monotonic()
            for fut in list(pending):  # a read of a regular file ends; this bounds a stalled network drive
                f = futs[fut]
                t0 = started.get(f.ref)
                if t0 is not None and now - t0 > time_limit_s:
                    abandoned[f.ref].set()  # the reading thread stops before its next frame
                    failures[f.ref] = f"reading took longer than {time_limit_s:.0f} s (stalled drive?)"
                    pending.discard(fut)
                    file_done()
    finally:
        tpool.shutdown(wait=False, cancel_futures=True)


def _decode_in_workers(files: list[DicomFile], jobs: dict[DicomFile, Job], invert_sum: Optional[float], color: bool,
                       failures: dict[Any, str], cancel: Any, file_done: Callable[[], None], time_limit_s: float,
                       memory_budget: Optional[int]) -> None:
    from planner.imaging.workers import Outcome, run_tasks

    tasks = []
    remaining: dict[DicomFile, int] = {}
    for f in files:
        try:
            check_decoder(f.transfer_syntax)
            ts = _worker_tasks(f, jobs[f], color)
        except (FrameError, OSError) as exc:
            failures[f.ref] = str(exc) if isinstance(exc, FrameError) else \
                f"cannot read the file ({getattr(exc, 'strerror', None) or exc})"
            file_done()
            continue
        tasks += ts
        remaining[f] = len(ts)

    def on_outcome(o: Outcome) -> None:
        f, chunk = o.key
        if f.ref not in failures:
            if o.status == "ok":
                try:
                    _store_decoded(f, jobs[f], chunk, o, invert_sum, color)
                except (FrameError, ValueError, TypeError) as exc:
                    failures[f.ref] = describe_failure(exc, f)
            else:
                failures[f.ref] = _outcome_reason(o, f, time_limit_s)
        remaining[f] -= 1
        if remaining[f] == 0:
            file_done()

    run_tasks(tasks, time_limit_s=time_limit_s, cancel=cancel, on_outcome=on_outcome, memory_budget=memory_budget)


def _outcome_reason(o: Any, f: DicomFile, time_limit_s: float) -> str:
    ts = syntax_name(f.transfer_syntax)
    if o.status == "timeout":
        return f"decoding took longer than {time_limit_s:.0f} s (damaged or unsupported data); the decoder was stopped"
    if o.status == "crash":
        return f"the {ts} decoder crashed on this file (damaged data)"
    if o.status == "cancelled":
        return "cancelled"
    if o.error.startswith("MemoryError"):
        return f"pixel data could not be decoded ({ts}): the decoder needed more memory than the image's size allows"
    msg = o.error if len(o.error) <= 300 else o.error[:300] + "..."
    return f"pixel data could not be decoded ({ts}): {msg}"


def _store_decoded(f: DicomFile, job: Job, chunk: tuple[int, ...], o: Any, invert_sum: Optional[float],
                   color: bool) -> None:
    if len(o.arrays) != len(chunk):
        raise FrameError(f"{len(o.arrays)} frame(s) decoded, {len(chunk)} expected")
    by_index = dict(zip(chunk, o.arrays))
    for fr, dst in job:
        a = by_index.get(fr.frame or 0)
        if a is None:
            continue
        if color:
            if a.ndim == 2:
                a = np.repeat(a[..., None], 3, axis=-1)
            if dst.dtype == np.uint8 and a.dtype.itemsize > 1 and a.dtype.kind in "ui":
                a = a >> (8 * a.dtype.itemsize - 8)
            np.copyto(dst, a.reshape(dst.shape), casting="unsafe")
        elif o.meta.get("lut"):
            store(dst, a, 1.0, 0.0, invert_sum)
        else:
            store(dst, fix_bits(a, f.header), fr.slope, fr.intercept, invert_sum)


def describe_failure(exc: BaseException, f: DicomFile) -> str:
    if isinstance(exc, FrameError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return "not enough memory to decode the pixel data"
    if isinstance(exc, OSError):
        return f"cannot read the file ({exc.strerror or exc})"
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    msg = " ".join(lines)
    if len(msg) > 300:
        msg = msg[:300] + "..."
    ts = syntax_name(f.transfer_syntax)
    return f"pixel data could not be decoded ({ts}): {type(exc).__name__}{': ' + msg if msg else ''}"
