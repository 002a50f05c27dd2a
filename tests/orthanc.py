"""A local Orthanc test PACS for the PACS tests (../shared/stack.md, section 7).

Started once per test session on free ports in a temporary folder:

* HTTP (REST and DICOMweb) with ``RemoteAccessAllowed: false`` and Basic authentication for a
  test-only user; WebDAV, Lua and REST writes to the file system disabled;
* DICOM with the called AE title checked, only the AEs in ``DicomModalities`` served (from
  127.0.0.1, host checked), and unknown SOP classes refused. ``DicomModalities`` lists the planner
  AE ``PLANNER`` with :attr:`OrthancServer.store_port`, the port on which the tests' own storage SCP
  listens for C-MOVE.

Orthanc 1.10 cannot bind to the loopback address only (it listens on 0.0.0.0); the settings above
are the mitigation. The server is stopped by its own PID (SIGTERM, then wait). When
``/usr/sbin/Orthanc`` (or ``$BVN_ORTHANC``) is missing, the PACS tests are skipped with that reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

ORTHANC_BINARY = os.environ.get("BVN_ORTHANC", "/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
#: Test fixture credentials only; never reuse them anywhere else.
TEST_USER = "planner"
TEST_PASSWORD = "planner-test-pw"
ORTHANC_AET = "ORTHANC"
PLANNER_AET = "PLANNER"


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def orthanc_available() -> Optional[str]:
    """None when Orthanc can be started, otherwise the reason why not."""
    if not (os.path.isfile(ORTHANC_BINARY) and os.access(ORTHANC_BINARY, os.X_OK)):
        return (f"Orthanc is not installed ({ORTHANC_BINARY} is missing); install the Debian packages "
                "'orthanc orthanc-dicomweb' (scripts/_setup.sh does) to run the PACS tests")
    return None


@dataclass
class OrthancServer:
    folder: Path
    http_port: int
    dicom_port: int
    store_port: int
    aet: str = ORTHANC_AET
    planner_aet: str = PLANNER_AET
    user: str = TEST_USER
    password: str = TEST_PASSWORD
    dicomweb: bool = False
    #: Extra environment for Orthanc. DCMTK (Orthanc's DICOM layer) sets TCP_NODELAY on its sockets when the
    #: variable TCP_NODELAY is 1; without it every DIMSE exchange waits about 40 ms for delayed ACKs, and
    #: C-STORE/C-GET of 100 small images take 5.6/5.2 s instead of 0.9/0.7 s.
    env: dict = field(default_factory=lambda: {"TCP_NODELAY": "1"})
    #: Extra configuration merged over :meth:`config` (e.g. the DICOM TLS settings of the TLS tests).
    extra_config: dict = field(default_factory=dict)
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)

    # ------------------------------------------------------------ URLs and REST
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.base_url}/dicom-web"

    @property
    def log_path(self) -> Path:
        return self.folder / "orthanc.log"

    def _auth(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")

    def rest(self, method: str, path: str, body: Optional[bytes] = None, timeout: float = 10.0):
        """Call the REST API with the test credentials; JSON answers are decoded."""
        req = urllib.request.Request(self.base_url + path, data=body, method=method,
                                     headers={"Authorization": self._auth()})
        with urllib.request.urlopen(req, timeout=timeout) as rsp:
            data = rsp.read()
            if rsp.headers.get_content_type() == "application/json":
                return json.loads(data.decode("utf-8")) if data else None
            return data

    def clear(self) -> None:
        """Delete every patient (tests that need an empty PACS call this first)."""
        for pid in self.rest("GET", "/patients") or []:
            self.rest("DELETE", f"/patients/{pid}")

    def upload(self, path: Path) -> dict:
        return self.rest("POST", "/instances", Path(path).read_bytes())

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------ life cycle
    def config(self) -> dict:
        cfg = {
            "Name": "BVN-TEST",
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "Plugins": [DICOMWEB_PLUGIN] if self.dicomweb else [],
            "ConcurrentJobs": 2,
            "SaveJobs": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "WebDavEnabled": False,
            "ExecuteLuaEnabled": False,
            "RestApiWriteToFileSystemEnabled": False,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "UnknownSopClassAccepted": False,
            "DicomScuTimeout": 10,
            "DicomModalities": {"planner": {"AET": self.planner_aet, "Host": "127.0.0.1", "Port": self.store_port}},
        }
        if self.dicomweb:
            cfg["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                               "Host": f"127.0.0.1:{self.http_port}", "Ssl": False}
        cfg.update(self.extra_config)
        return cfg

    def start(self, timeout: float = 30.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg_path = self.folder / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=1))
        self.proc = subprocess.Popen([ORTHANC_BINARY, str(cfg_path), f"--logfile={self.log_path}"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=str(self.folder), env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.proc.returncode} while starting; "
                                   f"log:\n{self.log_text()[-3000:]}")
            try:
                self.rest("GET", "/system", timeout=2.0)
                if self._dicom_listening():
                    return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout:.0f} s ({last}); log:\n{self.log_text()[-3000:]}")

    def _dicom_listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)          # by its own PID, never by name
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start_orthanc(folder: Path, *, dicomweb: Optional[bool] = None, extra_config: Optional[dict] = None) -> OrthancServer:
    """Start Orthanc in ``folder`` on free ports (DICOMweb when the plugin is installed)."""
    if dicomweb is None:
        dicomweb = os.path.isfile(DICOMWEB_PLUGIN)
    http_port, dicom_port, store_port = free_ports(3)
    server = OrthancServer(folder=Path(folder), http_port=http_port, dicom_port=dicom_port, store_port=store_port,
                           dicomweb=dicomweb, extra_config=dict(extra_config or {}))
    server.start()
    return server


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- test data (pydicom's bundled files only)
def planner_node(server: OrthancServer, **changes):
    """A :class:`planner.imaging.pacs.PacsNode` for the test server (DIMSE, calling AE ``PLANNER``)."""
    from planner.imaging.pacs import PacsNode

    node = PacsNode(name="ORTHANC", ae_title=server.aet, host="127.0.0.1", port=server.dicom_port,
                    calling_ae=server.planner_aet, local_port=server.store_port,
                    # generous: a loaded CI machine (2 cores, Xvfb) can keep Orthanc from answering for seconds
                    timeout_s=15.0, retrieve_timeout_s=45.0)
    for key, value in changes.items():
        setattr(node, key, value)
    return node


def dicomweb_node(server: OrthancServer, **changes):
    from planner.imaging.pacs import DICOMWEB, PacsNode

    node = PacsNode(name="ORTHANC-WEB", protocol=DICOMWEB, dicomweb_url=server.dicomweb_url, username=server.user,
                    password=server.password, timeout_s=15.0, retrieve_method="WADO-RS",
                    allow_http_password=True)  # plain http to loopback: the test PACS only
    for key, value in changes.items():
        setattr(node, key, value)
    return node


def write_series(folder: Path, n: int, *, study_uid: str, series_uid: str, patient_name: str, patient_id: str,
                 study_date: str, accession: str, series_number: int = 1, description: str = "",
                 source: str = "MR_small.dcm", spacing_mm: float = 4.0) -> dict:
    """``n`` slices made from a pydicom test file, stacked along the slice normal, each with different
    pixels. Returns {SOP Instance UID: (path, pixel array)}."""
    import numpy as np
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        ds = dcmread(get_testdata_file(source))
        compressed = ds.file_meta.TransferSyntaxUID.is_compressed
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.StudyDate = study_date
        ds.AccessionNumber = accession
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        if not compressed:
            pixels = ds.pixel_array.astype(np.int32) + 7 * i
            pixels = np.clip(pixels, np.iinfo(ds.pixel_array.dtype).min,
                             np.iinfo(ds.pixel_array.dtype).max).astype(ds.pixel_array.dtype)
            ds.PixelData = pixels.tobytes()
        if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
            iop = np.array([float(x) for x in ds.ImageOrientationPatient])
            normal = np.cross(iop[:3], iop[3:])
            pos = np.array([float(x) for x in ds.ImagePositionPatient]) + i * spacing_mm * normal
            ds.ImagePositionPatient = [f"{x:.4f}" for x in pos]
            ds.SliceThickness = spacing_mm
        path = folder / f"{series_number:03d}_{i:04d}.dcm"
        ds.save_as(str(path), enforce_file_format=True)
        out[str(ds.SOPInstanceUID)] = (path, dcmread(str(path)).pixel_array.copy())
    return out


# ---------------------------------------------------------------- a test certificate authority (openssl)
def make_test_pki(folder: Path) -> dict:
    """A test CA with a server certificate for 127.0.0.1 (Orthanc) and a client certificate (the planner), plus
    a second, unrelated CA: {name: path} for ca, server_cert, server_key, client_cert, client_key, other_ca.
    Test material only (short keys' lifetime, never reused)."""
    import subprocess

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=str(folder), timeout=60)

    for ca in ("ca", "other_ca"):
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=BVN test {ca}",
            "-keyout", f"{ca}.key", "-out", f"{ca}.pem")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who, cn in (("server", "127.0.0.1"), ("client", "PLANNER")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout", f"{who}.key", "-out", f"{who}.csr")
        run("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
            "-extfile", "san.cnf", "-out", f"{who}.pem")
    return {"ca": folder / "ca.pem", "server_cert": folder / "server.pem", "server_key": folder / "server.key",
            "client_cert": folder / "client.pem", "client_key": folder / "client.key", "other_ca": folder / "other_ca.pem"}
