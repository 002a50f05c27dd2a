"""Retrieval speed against a local Orthanc (the test PACS of tests/orthanc.py), in one run:

* the app's default retrieve (``pacs.retrieve`` on a DIMSE node: C-GET, engine "auto": the series by DCMTK's
  getscu after a pynetdicom probe of its transfer syntax), the same with the "pynetdicom" engine, C-MOVE and
  WADO-RS;
* DCMTK ``getscu`` (with its defaults, and with the options the app's engine uses: ``+B -pdu 131072``) and
  ``movescu`` (Debian package dcmtk) with TCP_NODELAY, the references;
* a plain WADO-RS download of the series (one multipart request, urllib), a reference.

For a series of N CT images (512x512, 16 bit; default 300). Each method runs ``--repeat`` times into a new
folder, the methods in turn (round robin); the median is reported with every time and the load average, and
the ratio of the app's default to the fastest reference (the goal is 1.2 or less). Also checks that every
method delivered all N images. Usage::

    nice -n -5 .venv/bin/python bench/pacs_bench.py [--images 300] [--repeat 5]
    .venv/bin/python bench/pacs_bench.py --retrieves 500 [--images 20] [--cut-every 10]   # completeness (issue 14)
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydicom.uid import generate_uid  # noqa: E402

from planner.imaging import pacs  # noqa: E402
from planner.imaging.synthetic import write_series  # noqa: E402
from tests.orthanc import dicomweb_node, orthanc_available, planner_node, start_orthanc  # noqa: E402


def count(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def run_dcmtk(tool: str, server, study: str, series: str, out: Path, *options: str) -> None:
    out.mkdir(parents=True)
    keys = ["-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}", "-k", f"SeriesInstanceUID={series}"]
    if tool == "getscu":
        cmd = ["getscu", *options, "-aet", server.planner_aet, "-aec", server.aet, "-od", str(out), *keys, "127.0.0.1",
               str(server.dicom_port)]
    else:
        cmd = ["movescu", "-aet", server.planner_aet, "-aem", server.planner_aet, "-aec", server.aet,
               "--port", str(server.store_port), "-S", "-od", str(out), *keys, "127.0.0.1", str(server.dicom_port)]
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "TCP_NODELAY": "1"}, timeout=600)


def wado_download(server, study: str, series: str, out: Path) -> None:
    """The whole series in one WADO-RS request (multipart/related), written part by part."""
    from planner.imaging.pacs.dicomweb import _multipart_parts

    out.mkdir(parents=True)
    req = urllib.request.Request(
        f"{server.dicomweb_url}/studies/{study}/series/{series}",
        headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*',
                 "Authorization": "Basic " + base64.b64encode(f"{server.user}:{server.password}".encode()).decode()})
    with urllib.request.urlopen(req, timeout=600) as rsp:
        parts = _multipart_parts(rsp.headers.get("Content-Type", ""), rsp.read())
    for i, part in enumerate(parts):
        (out / f"{i:05d}.dcm").write_bytes(part)


def timed(methods: dict, n_expected: int, repeat: int, work: Path) -> dict[str, list[float]]:
    """Each method ``repeat`` times, round robin (so a change of the machine's load hits every method alike)."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    for i in range(repeat):
        for name, fn in methods.items():
            out = work / f"{len(times[name])}-{i}-{abs(hash(name))}"
            t0 = time.perf_counter()
            fn(out)
            times[name].append(time.perf_counter() - t0)
            got = count(out)
            if got != n_expected:
                raise SystemExit(f"{name}: {got} of {n_expected} images arrived")
            shutil.rmtree(out, ignore_errors=True)
    return times


def speed(server, work: Path, n: int, repeat: int) -> None:
    study, series = generate_uid(), generate_uid()
    src = work / "src"
    paths = write_series(src, n=n, rows=512, cols=512, study_uid=study, series_uid=series, bits_stored=12,
                         extra={"PatientID": "PT-BENCH", "PatientName": "BENCH^PACS"}, shuffle_files=False)
    for p in paths:
        server.upload(p)
    size_mb = sum(p.stat().st_size for p in paths) / 1e6
    shutil.rmtree(src)
    node = planner_node(server)
    pynetdicom_only = planner_node(server, retrieve_engine="pynetdicom")
    move = planner_node(server, retrieve_method="C-MOVE")
    web = dicomweb_node(server)

    def app(nd, method):
        def go(out: Path) -> None:
            r = pacs.retrieve(nd, study, [series], dest_folder=out, method=method, patient_id="PT-BENCH")
            if not r.ok:
                raise SystemExit(f"app {method}: {r.summary()}")
        return go

    default = "app default (C-GET, engine auto: getscu)"
    apps = {default: app(node, None), "app C-GET, engine pynetdicom": app(pynetdicom_only, "C-GET"),
            "app C-MOVE": app(move, "C-MOVE"), "app WADO-RS": app(web, "WADO-RS")}
    refs = {"DCMTK getscu (TCP_NODELAY)": lambda o: run_dcmtk("getscu", server, study, series, o),
            # the options the app's engine uses: bit-preserving files, 128 KB PDUs (faster than the defaults)
            "DCMTK getscu +B -pdu 131072 (TCP_NODELAY)": lambda o: run_dcmtk("getscu", server, study, series, o,
                                                                               "+B", "-pdu", "131072"),
            "DCMTK movescu (TCP_NODELAY)": lambda o: run_dcmtk("movescu", server, study, series, o),
            "WADO-RS download (one request)": lambda o: wado_download(server, study, series, o)}
    load = os.getloadavg()
    print(f"series: {n} CT images 512x512, {size_mb:.0f} MB, Orthanc on loopback; median of {repeat} "
          f"(round robin); load average before {load[0]:.1f}")
    times = timed({**apps, **refs}, n, repeat, work)
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in med.items():
        spread = ", ".join(f"{x:.2f}" for x in times[name])
        print(f"  {name:44s} {t:7.2f} s  {size_mb / t:6.1f} MB/s   ({spread})")
    fastest = min(refs, key=lambda k: med[k])
    print(f"load average after {os.getloadavg()[0]:.1f}")
    print(f"ratio app default / fastest reference ({fastest}): {med[default] / med[fastest]:.2f} (goal <= 1.2)")
    print(f"ratio app C-GET with pynetdicom only / fastest reference: "
          f"{med['app C-GET, engine pynetdicom'] / med[fastest]:.2f}")


def completeness(server, work: Path, n_images: int, retrieves: int, cut_every: int) -> None:
    """Many whole-study retrieves in a row: none may be reported complete while short. Every
    ``cut_every``-th retrieve is cut (cancelled) after a random number of images: it must be reported
    incomplete, and a second retrieve into the same folder must complete it fetching only the rest."""
    import random
    import threading

    rng = random.Random(14)
    study = generate_uid()
    for k, n in enumerate((n_images, 3, 1), start=1):
        for p in write_series(work / f"c{k}", n=n, study_uid=study, series_number=k,
                              extra={"PatientID": "PT-COMPLETE"}):
            server.upload(p)
    expected = n_images + 4
    node = planner_node(server)
    complete_while_short = reported_short = cuts = cuts_reported = resumed = 0
    t0 = time.perf_counter()
    for i in range(retrieves):
        out = work / f"r{i}"
        cancel = threading.Event()
        cut_at = rng.randint(1, expected - 1) if cut_every and i % cut_every == cut_every - 1 else 0

        def progress(_f: float, msg: str, cut_at: int = cut_at, cancel=cancel) -> None:
            if cut_at and msg.startswith(f"Received {cut_at} of"):
                cancel.set()

        r = pacs.retrieve(node, study, dest_folder=out, patient_id="PT-COMPLETE", progress=progress, cancel=cancel)
        got = count(out)
        if r.ok and got != expected:
            complete_while_short += 1
        if cut_at:
            cuts += 1
            cuts_reported += bool(r.incomplete) and not r.ok
            again = pacs.retrieve(node, study, dest_folder=out, patient_id="PT-COMPLETE")
            resumed += again.ok and count(out) == expected
        elif not r.ok:
            reported_short += 1
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(pacs.common.incomplete_folder(out), ignore_errors=True)
    print(f"{retrieves} whole-study retrieves ({expected} images in 3 series) in {time.perf_counter() - t0:.0f} s: "
          f"{complete_while_short} reported complete while short; {reported_short} uncut ones reported incomplete "
          f"or failed; {cuts} cut at a random point: {cuts_reported} reported incomplete, {resumed} resumed to "
          "complete")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--retrieves", type=int, default=0, help="run the completeness loop instead of the speed run")
    ap.add_argument("--cut-every", type=int, default=10, help="in the completeness loop, cut every N-th retrieve")
    args = ap.parse_args()
    reason = orthanc_available()
    if reason:
        print(reason)
        return 2
    for tool in ("getscu", "movescu"):
        if not shutil.which(tool):
            print(f"{tool} is missing: install the Debian package dcmtk (scripts/_setup.sh does)")
            return 2
    work = Path(tempfile.mkdtemp(prefix="pacs-bench-"))
    server = start_orthanc(work / "orthanc", dicomweb=True)
    os.environ.setdefault("BVN_PLANNER_HOME", str(work / "home"))
    try:
        if args.retrieves:
            completeness(server, work, args.images, args.retrieves, args.cut_every)
        else:
            speed(server, work, args.images, args.repeat)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
