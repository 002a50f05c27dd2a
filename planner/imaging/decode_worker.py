"""The work done inside decoder processes (started by :mod:`planner.imaging.workers` as
``python -m planner.imaging.decode_worker FD``): decoding compressed or otherwise non-native DICOM pixel
data with pydicom's plug-ins, image captures with Pillow, and research files with SimpleITK. Each
function returns ``(arrays, meta)``; the arrays travel back as raw bytes. The worker's loop caps its
data memory for each task (``RLIMIT_DATA``) and reports its peak resident memory.

Nothing here runs in the application process: a decoder that hangs, crashes or allocates without bound
on a damaged file only ends its own worker process.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from typing import Any, Optional

import numpy as np


def _source(path: Optional[str], data: Optional[bytes]) -> tuple[Any, bool]:
    """A file object for pydicom and whether the file has the DICM prefix."""
    if path is not None:
        from planner.safefiles import open_regular

        fh: Any = open_regular(path)
    else:
        fh = io.BytesIO(data or b"")
    head = fh.read(132)
    fh.seek(0)
    return fh, len(head) >= 132 and head[128:132] == b"DICM"


def dicom_frames(path: Optional[str], data: Optional[bytes], indices: list[int], n_frames: int,
                 options: dict[str, Any]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The frames ``indices`` of one DICOM file: stored values, or after the Modality LUT (``meta["lut"]``),
    or colour (RGB, palette applied) when ``options["color"]``."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import apply_color_lut, apply_modality_lut, iter_pixels

    fh, prefix = _source(path, data)
    out: list[np.ndarray] = []
    lut = False
    with fh, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(fh, force=not prefix)
        if not getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None):
            ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = options.get("transfer_syntax") or "1.2.840.10008.1.2"
        if n_frames <= 1:
            arrays: Any = [ds.pixel_array]
        else:
            arrays = iter_pixels(ds, indices=indices)
        for a in arrays:
            if options.get("color"):
                if options.get("palette"):
                    a = apply_color_lut(a, ds)
                if a.ndim == 2:  # grey image in a colour group
                    a = np.repeat(a[..., None], 3, axis=-1)
            else:
                if a.ndim == 3 and a.shape[-1] == 3:
                    raise ValueError("colour pixels in a greyscale series")
                if options.get("modality_lut"):
                    a = apply_modality_lut(a, ds)
                    lut = True
            out.append(np.ascontiguousarray(a))
    if len(out) != len(indices):
        raise ValueError(f"{len(out)} frame(s) decoded, {len(indices)} expected")
    return out, {"lut": lut}


def capture_frames(path: Optional[str], data: Optional[bytes], fmt: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The frames of a PNG/JPEG/TIFF/BMP capture as one (n, rows, cols[, 3]) array."""
    from planner.imaging.formats import decode_capture

    if data is None:
        from planner.safefiles import open_regular

        with open_regular(path or "") as fh:
            data = fh.read()
    return [decode_capture(data, fmt)], {}


def simpleitk_volume(path: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    """A research file SimpleITK reads: the voxel array and the 4x4 ijk_to_lps."""
    import SimpleITK as sitk

    img = sitk.ReadImage(path)
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("not a 3D scalar image")
    arr = sitk.GetArrayFromImage(img)
    m = np.eye(4)
    d = np.array(img.GetDirection()).reshape(3, 3)
    m[:3, :3] = d * np.array(img.GetSpacing())[None, :]
    m[:3, 3] = img.GetOrigin()
    return [arr, m], {}


#: The functions a worker may run, by name.
FUNCTIONS = {"dicom_frames": dicom_frames, "capture_frames": capture_frames, "simpleitk_volume": simpleitk_volume}


# ------------------------------------------------------------------ the worker's loop
def _status_kb(field_name: str) -> int:
    try:
        with open("/proc/self/status", "rb") as fh:
            for line in fh:
                if line.startswith(field_name.encode() + b":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _set_data_limit(limit: Optional[int]) -> None:
    if sys.platform == "win32":  # no RLIMIT_DATA there (the resource module is POSIX only)
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    want = resource.RLIM_INFINITY if limit is None else int(limit)
    if hard != resource.RLIM_INFINITY and (want == resource.RLIM_INFINITY or want > hard):
        want = hard
    try:
        resource.setrlimit(resource.RLIMIT_DATA, (want, hard))
    except (ValueError, OSError):
        pass


def _worker_main(conn: Any) -> None:
    """Loop of a worker process: receive (function, args, memory), run, send the arrays back."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the application
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # decoders print to stderr; the import report gives the reason instead
    os.close(devnull)
    logging.getLogger().handlers[:] = [logging.NullHandler()]
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        name, args, memory = msg
        _reset_peak()
        _set_data_limit(_status_kb("VmData") * 1024 + memory)
        try:
            arrays, meta = FUNCTIONS[name](*args)
            arrays = [np.ascontiguousarray(a) for a in arrays]
            for a in arrays:
                if a.dtype.kind not in "biuf":
                    raise TypeError(f"unexpected pixel type {a.dtype}")
            reply: Any = ("ok", [(a.dtype.str, a.shape) for a in arrays], meta)
        except MemoryError:
            arrays, reply = [], ("error", "MemoryError: the decoder needed more memory than the image's size allows")
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as the file's reason
            text = " ".join(str(exc).split())[:500]
            arrays, reply = [], ("error", f"{type(exc).__name__}{': ' + text if text else ''}")
        finally:
            _set_data_limit(None)
        conn.send((*reply, _status_kb("VmHWM") * 1024))
        for a in arrays:
            conn.send_bytes(memoryview(a).cast("B") if a.nbytes else b"")
        del arrays


if __name__ == "__main__":  # a worker process: python -m planner.imaging.decode_worker FD
    import sys
    from multiprocessing.connection import Connection

    _worker_main(Connection(int(sys.argv[1])))
