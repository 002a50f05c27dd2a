#!/usr/bin/env python3
"""Import benchmark (issue 3): builds a study of >= 1,000 DICOM files (several series, 512x512 slices)
in a temporary folder and prints, in one run:

* header scan + grouping time for the whole study (``scan_path``), goal < 1 s for 1,000 files;
* full pixel load time of the 300-slice series next to SimpleITK's ``ImageSeriesReader`` on the same
  files, as a ratio (goal <= 1.0), both as "decode only" (file list known) and "folder to volume";
* peak memory of our load above the baseline, as a multiple of the voxel data (goal < 1.5), measured
  in a fresh process (VmHWM), with SimpleITK's for comparison.

Uncompressed pixels are read by threads straight into the output array; with ``--compressed``
(JPEG 2000 lossless) the frames are decoded by worker processes, because the decoders hold the GIL.

The files carry a real scanner header (Siemens CT from ../shared/data, with its private elements)
when that is available, else a synthetic one; pixels are uncompressed 16-bit. Timings are taken with
the files in the page cache (just written), best of ``--repeat`` runs, alternating the two readers.

    python bench/import_bench.py [--repeat 3] [--keep DIR] [--compressed]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SERIES = [  # (name, slices, orientation)
    ("ct_300", 300, (1, 0, 0, 0, 1, 0)),
    ("ct_soft_250", 250, (1, 0, 0, 0, 1, 0)),
    ("mr_sag_t2_160", 160, (0, 1, 0, 0, 0, -1)),
    ("mr_sag_t1_160", 160, (0, 1, 0, 0, 0, -1)),
    ("mr_ax_t2_150", 150, (1, 0, 0, 0, 0.966, -0.259)),
]


def real_header():
    import pydicom

    folder = ROOT.parent / "shared" / "data" / "totalseg_example" / "ct_dicom"
    if not folder.is_dir():
        return None
    return pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)


def build_study(out: Path, compressed: bool) -> dict[str, Path]:
    from pydicom.uid import generate_uid

    from planner.imaging.synthetic import write_series

    header = real_header()
    study = generate_uid()
    dirs = {}
    ts = "1.2.840.10008.1.2.4.90" if compressed else "1.2.840.10008.1.2.1"
    for n, (name, slices, iop) in enumerate(SERIES):
        d = out / name
        write_series(d, n=slices, rows=512, cols=512, pixel_spacing=(0.7, 0.7), slice_gap=1.0, iop=iop,
                     modality="CT" if name.startswith("ct") else "MR", transfer_syntax=ts, study_uid=study,
                     description=name, series_number=n + 1, seed=n, header=header, shuffle_files=True,
                     rescale=(1.0, -1024.0) if name.startswith("ct") else (1.0, 0.0))
        dirs[name] = d
    return dirs


def _hwm_kb() -> int:
    """Peak resident memory of this process (VmHWM, reset by exec; ru_maxrss is not on Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _child(mode: str, folder: str) -> None:
    """Run in a fresh process: load one series and print JSON with time and memory."""
    base_kb = _hwm_kb()
    if mode == "ours":
        from planner.imaging import load_series, scan_path

        res = scan_path(folder)
        (group,) = res.groups.values()
        base_kb = _hwm_kb()
        t0 = time.perf_counter()
        vol = load_series(group)
        dt = time.perf_counter() - t0
        nbytes = vol.array.nbytes
    else:
        import SimpleITK as sitk

        r = sitk.ImageSeriesReader()
        files = r.GetGDCMSeriesFileNames(folder)
        r.SetFileNames(files)
        base_kb = _hwm_kb()
        t0 = time.perf_counter()
        img = r.Execute()
        dt = time.perf_counter() - t0
        nbytes = img.GetNumberOfPixels() * img.GetSizeOfPixelComponent()
    peak_kb = _hwm_kb()
    print(json.dumps({"time": dt, "base_mb": base_kb / 1024, "peak_mb": peak_kb / 1024, "voxel_mb": nbytes / 2**20}))


def measure_memory(mode: str, folder: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(folder)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", metavar="DIR", help="build the study in DIR and keep it")
    ap.add_argument("--compressed", action="store_true", help="JPEG 2000 lossless instead of uncompressed pixels")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return 0

    import SimpleITK as sitk

    from planner.imaging import load_path, load_series, scan_path

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bvn-import-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        dirs = build_study(tmp, args.compressed)
        n_files = sum(1 for d in dirs.values() for _ in d.iterdir())
        size_mb = sum(p.stat().st_size for d in dirs.values() for p in d.iterdir()) / 2**20
        print(f"study: {n_files} files, {len(dirs)} series, 512x512, {size_mb:.0f} MB "
              f"({'JPEG 2000 lossless' if args.compressed else 'uncompressed'}), built in "
              f"{time.perf_counter() - t0:.1f} s in {tmp}")
        print(f"machine: {os.cpu_count()} CPU cores; files in the page cache; best of {args.repeat}")

        # 1. header scan + grouping of the whole study
        scan_times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            res = scan_path(tmp)
            scan_times.append(time.perf_counter() - t0)
        assert len(res.groups) == len(SERIES), sorted(res.groups)
        best_scan = min(scan_times)
        print(f"\n[1] header scan + grouping, {n_files} files: {best_scan:.3f} s "
              f"({1000 * best_scan / n_files:.2f} ms/file; goal < 1 s per 1,000 files: "
              f"{'met' if best_scan * 1000 / n_files < 1.0 else 'NOT met'})")

        # 2. pixel load of the 300-slice series vs SimpleITK
        folder = dirs["ct_300"]
        group = next(g for g in scan_path(folder).groups.values())
        reader = sitk.ImageSeriesReader()
        files = reader.GetGDCMSeriesFileNames(str(folder))
        ours_decode, sitk_decode, ours_folder, sitk_folder = [], [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            vol = load_series(group)
            ours_decode.append(time.perf_counter() - t0)
            r = sitk.ImageSeriesReader()
            r.SetFileNames(files)
            t0 = time.perf_counter()
            img = r.Execute()
            sitk_decode.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res1 = load_path(folder)
            ours_folder.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r2 = sitk.ImageSeriesReader()
            r2.SetFileNames(r2.GetGDCMSeriesFileNames(str(folder)))
            img2 = r2.Execute()
            sitk_folder.append(time.perf_counter() - t0)
        same = np.array_equal(vol.array, sitk.GetArrayFromImage(img))
        assert same and len(res1.images) == 1 and img2.GetSize()[2] == 300
        od, sd, of, sf = min(ours_decode), min(sitk_decode), min(ours_folder), min(sitk_folder)
        print(f"\n[2] pixel load, 300 slices 512x512 ({vol.array.nbytes / 2**20:.0f} MB, {vol.array.dtype}; "
              f"voxels identical to SimpleITK: {same})")
        print(f"    decode only (file list known):  ours {od:.3f} s   SimpleITK ImageSeriesReader {sd:.3f} s   "
              f"ratio {od / sd:.2f}")
        print(f"    folder to volume (scan + sort): ours {of:.3f} s   SimpleITK (GetGDCMSeriesFileNames + "
              f"Execute) {sf:.3f} s   ratio {of / sf:.2f}")
        print(f"    goal ratio <= 1.0: {'met' if od / sd <= 1.0 and of / sf <= 1.0 else 'NOT met'}")

        # 3. peak memory (fresh processes)
        m_ours = measure_memory("ours", folder)
        m_sitk = measure_memory("sitk", folder)
        rel = (m_ours["peak_mb"] - m_ours["base_mb"]) / m_ours["voxel_mb"]
        rel_s = (m_sitk["peak_mb"] - m_sitk["base_mb"]) / m_sitk["voxel_mb"]
        print(f"\n[3] peak memory for the 300-slice load ({m_ours['voxel_mb']:.0f} MB of voxels):")
        print(f"    ours: baseline {m_ours['base_mb']:.0f} MB, peak {m_ours['peak_mb']:.0f} MB, "
              f"increase {rel:.2f} x voxel data (goal < 1.5: {'met' if rel < 1.5 else 'NOT met'})")
        print(f"    SimpleITK: baseline {m_sitk['base_mb']:.0f} MB, peak {m_sitk['peak_mb']:.0f} MB, "
              f"increase {rel_s:.2f} x voxel data")
        if args.compressed:
            print("    (compressed series are decoded by worker processes; their own memory, about one decoded "
                  "frame each plus the interpreter, is not in these numbers)")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
