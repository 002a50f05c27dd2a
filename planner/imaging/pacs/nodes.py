"""PACS node configuration: :class:`PacsNode`, the user's node list, and :func:`backend_for`, the one
factory that picks the protocol backend (DIMSE or DICOMweb) for a node."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

from planner.imaging.pacs import passwords
from planner.imaging.pacs.backend import PacsBackend
from planner.imaging.pacs.common import DICOMWEB, DIMSE, ENGINE_AUTO, PacsError
from planner.imaging.pacs.dicomweb import DicomwebBackend
from planner.imaging.pacs.dimse import DimseBackend
from planner.logsafe import data_dir
from planner.safefiles import atomic_write_text

log = logging.getLogger("planner.imaging.pacs")

#: protocol name -> backend class; the only dispatch on ``PacsNode.protocol``.
BACKENDS: dict[str, type[PacsBackend]] = {DIMSE: DimseBackend, DICOMWEB: DicomwebBackend}


@dataclass
class PacsNode:
    """A PACS (or any DICOM Q/R SCP) the planner talks to."""

    #: Shown to the user; by default the called AE title.
    name: str = ""
    #: The PACS's AE title (called AE).
    ae_title: str = ""
    host: str = ""
    port: int = 104
    #: This workstation's AE title (calling AE), which the PACS must know.
    calling_ae: str = "BVNPLANNER"
    #: "C-GET", "C-MOVE" or "WADO-RS" (DICOMweb).
    retrieve_method: str = "C-GET"
    #: C-MOVE destination AE title (empty: the calling AE title); the PACS must know it with this
    #: computer's address and :attr:`local_port`.
    move_ae: str = ""
    #: DIMSE retrieve engine: "auto" (large uncompressed series of a C-GET by DCMTK's getscu, the rest by
    #: pynetdicom; TLS nodes always by pynetdicom) or "pynetdicom" (everything by pynetdicom).
    retrieve_engine: str = ENGINE_AUTO
    #: Port of the local storage SCP started for a C-MOVE.
    local_port: int = 11113
    #: Seconds allowed for connecting, for the association and for each answer of an echo, query or send.
    timeout_s: float = 10.0
    #: Longest wait (seconds) between two messages of a retrieve.
    retrieve_timeout_s: float = 60.0
    #: "DIMSE" (C-FIND/C-GET/C-MOVE/C-STORE) or "DICOMweb" (QIDO-RS/WADO-RS/STOW-RS).
    protocol: str = DIMSE
    #: DICOMweb base URL, e.g. ``https://pacs.example.org/dicom-web``.
    dicomweb_url: str = ""
    username: str = ""
    password: str = ""
    #: Largest PDU this workstation accepts (bytes; 0: no limit). Larger PDUs mean fewer round trips.
    max_pdu: int = 0
    #: The interface the C-MOVE storage SCP listens on (loopback unless the PACS is on another computer;
    #: empty: every interface).
    local_bind: str = "127.0.0.1"
    #: DICOM TLS for DIMSE (the PACS's TLS port); DICOMweb uses TLS with an https:// URL.
    tls: bool = False
    #: CA bundle (PEM) that signs the PACS's certificate (empty: the system's trusted CAs).
    tls_ca_file: str = ""
    #: This workstation's certificate and key (PEM), when the PACS asks for one.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: Allow a password over plain http:// (only to a loopback address, e.g. a local test PACS).
    allow_http_password: bool = False
    #: Largest WADO reply accepted for one object (MB).
    max_object_mb: int = 2048
    #: "site" for a node from the site-wide file (the user's file holds only what the user changed),
    #: "user" for the user's own nodes. Not saved.
    origin: str = field(default="user", compare=False, repr=False)

    @property
    def secret_key(self) -> str:
        """Under which name the password is kept (:mod:`.passwords`)."""
        return "|".join((self.display_name, self.protocol, self.dicomweb_url or f"{self.host}:{self.port}",
                         self.username))

    # ------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return self.name or self.ae_title or self.host or "(unnamed)"

    @property
    def label(self) -> str:
        """``PACS ORTHANC at 127.0.0.1:4242`` (or the DICOMweb URL), for messages."""
        cls = BACKENDS.get(self.protocol)
        where = cls.address_of(self) if cls is not None else f"(unknown protocol {self.protocol!r})"
        return f"PACS {self.display_name} at {where}"

    @property
    def destination_ae(self) -> str:
        return self.move_ae or self.calling_ae

    def problems(self) -> list[str]:
        """What is wrong with the configuration (empty when it can be used)."""
        cls = BACKENDS.get(self.protocol)
        if cls is None:
            return [f"Unknown protocol '{self.protocol}' (use {' or '.join(BACKENDS)})."]
        out = list(cls.config_problems(self))
        if self.timeout_s <= 0 or self.retrieve_timeout_s <= 0:
            out.append("Timeouts must be positive.")
        if self.max_pdu != 0 and not (4096 <= self.max_pdu <= 1 << 30):
            out.append(f"The maximum PDU size {self.max_pdu} is not 0 (no limit) or between 4096 and 2^30 bytes.")
        if self.max_object_mb <= 0:
            out.append("The largest object size must be positive.")
        for what, path in (("CA file", self.tls_ca_file), ("certificate", self.tls_cert_file),
                           ("key", self.tls_key_file)):
            if path and not Path(path).is_file():
                out.append(f"The TLS {what} {path} does not exist.")
        if self.tls_key_file and not self.tls_cert_file:
            out.append("A TLS key is given without its certificate.")
        return out

    def to_dict(self) -> dict[str, Any]:
        """The settings as saved: without the password (kept in the keyring) and the origin."""
        data = asdict(self)
        data.pop("password")
        data.pop("origin")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PacsNode":
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in (data or {}).items():
            if key not in known or key == "origin":
                continue
            default = getattr(cls(), key)
            try:
                kwargs[key] = type(default)(value) if not isinstance(default, str) else str(value)
            except (TypeError, ValueError):
                continue
        return cls(**kwargs)


def backend_for(node: PacsNode) -> PacsBackend:
    """The backend that talks to ``node`` (raises PacsError when the node cannot be used)."""
    problems = node.problems()
    if problems:
        raise PacsError(f"{node.label} is not configured correctly: " + " ".join(problems))
    return BACKENDS[node.protocol](node)


def nodes_path() -> Path:
    """The user's node list (the user's own nodes and their changes to the site's)."""
    return data_dir() / "pacs-nodes.json"


def site_nodes_path() -> Path:
    """The site-wide node list an administrator installs (``$BVN_PACS_SITE_NODES``, else
    ``/etc/bvn-planner/pacs-nodes.json``); read-only for the application."""
    return Path(os.environ.get("BVN_PACS_SITE_NODES") or "/etc/bvn-planner/pacs-nodes.json")


def _read_list(path: Path, what: str) -> list[dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        log.warning("the %s PACS node list %s is unreadable; it is ignored", what, path)
        return []
    items = data.get("nodes", []) if isinstance(data, dict) else []
    return [d for d in items if isinstance(d, dict)]


def load_nodes() -> list[PacsNode]:
    """The site's nodes (with the user's changes) and then the user's own; passwords from the keyring."""
    site = {str(d.get("name", "")): d for d in _read_list(site_nodes_path(), "site-wide") if d.get("name")}
    user = _read_list(nodes_path(), "user's")
    overrides = {str(d.get("name", "")): d for d in user if str(d.get("name", "")) in site}
    nodes: list[PacsNode] = []
    for name, base in site.items():
        node = PacsNode.from_dict({**base, **overrides.get(name, {})})
        node.origin = "site"
        nodes.append(node)
    nodes += [PacsNode.from_dict(d) for d in user if str(d.get("name", "")) not in site]
    for node in nodes:
        if node.username:
            node.password = passwords.get_password(node.secret_key) or ""
    return nodes


def save_nodes(nodes: Sequence[PacsNode]) -> Path:
    """Save the user's nodes, and of a site node only what differs from the site file; passwords go to the
    keyring (or the private password file), never into the node list. The list is readable by the user only."""
    site = {str(d.get("name", "")): PacsNode.from_dict(d).to_dict()
            for d in _read_list(site_nodes_path(), "site-wide") if d.get("name")}
    out = []
    for node in nodes:
        data = node.to_dict()
        if node.origin == "site" and node.name in site:
            data = {"name": node.name, **{k: v for k, v in data.items() if site[node.name].get(k) != v}}
        out.append(data)
        if node.username or node.password:
            passwords.set_password(node.secret_key, node.password)
    path = nodes_path()
    atomic_write_text(path, json.dumps({"version": 2, "nodes": out}, indent=1))
    os.chmod(path, 0o600)
    return path
