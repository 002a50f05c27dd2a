"""TLS for both protocols: DICOM TLS (PS3.15 Annex B, the TLS secure transport profile) for DIMSE and
HTTPS for DICOMweb, each with an optional site CA bundle (to trust a hospital's own certificate
authority) and an optional client certificate with its key (for a PACS that asks this workstation to
identify itself). The PACS's certificate is always verified, host name included.

Node settings used: ``tls`` (DIMSE over TLS), ``tls_ca_file``, ``tls_cert_file``, ``tls_key_file``.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any, Optional

from planner.imaging.pacs.common import PacsError


def _context(node: Any, purpose: ssl.Purpose) -> ssl.SSLContext:
    ca = (node.tls_ca_file or "").strip()
    try:
        ctx = ssl.create_default_context(purpose, cafile=ca or None)
    except (OSError, ssl.SSLError) as exc:
        raise PacsError(f"{node.label}: the CA file {ca} cannot be used ({getattr(exc, 'strerror', None) or exc}).") \
            from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    cert, key = (node.tls_cert_file or "").strip(), (node.tls_key_file or "").strip()
    if cert:
        try:
            ctx.load_cert_chain(cert, key or None)
        except (OSError, ssl.SSLError) as exc:
            raise PacsError(f"{node.label}: the certificate {Path(cert).name} or its key cannot be used "
                            f"({getattr(exc, 'strerror', None) or exc}).") from None
    return ctx


def client_context(node: Any) -> ssl.SSLContext:
    """The context for connecting to the node (verifies the PACS's certificate and host name)."""
    return _context(node, ssl.Purpose.SERVER_AUTH)


def client_tls_args(node: Any) -> Optional[tuple[ssl.SSLContext, str]]:
    """``tls_args`` for ``AE.associate`` (None without TLS)."""
    if not node.tls:
        return None
    return client_context(node), node.host


def server_tls_context(node: Any) -> Optional[ssl.SSLContext]:
    """The context of the local C-MOVE storage SCP with TLS (this workstation's certificate; the PACS must
    present a certificate the CA file trusts)."""
    if not node.tls:
        return None
    if not (node.tls_cert_file or "").strip():
        raise PacsError(f"{node.label}: C-MOVE over TLS needs this workstation's certificate and key "
                        "(the PACS connects back to it); set them or use C-GET.")
    ctx = _context(node, ssl.Purpose.CLIENT_AUTH)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def describe_ssl_error(node: Any, exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or ""
    detail = getattr(exc, "verify_message", None) or reason or str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return (f"{node.label} presented a certificate that is not trusted ({detail}); check the CA file "
                "and the host name, or ask the PACS administrator.")
    if "CERTIFICATE_REQUIRED" in str(exc) or "UNKNOWN_CA" in str(exc) or "BAD_CERTIFICATE" in str(exc):
        return (f"{node.label} refused this workstation's certificate ({detail}); check the client "
                "certificate and key.")
    if "WRONG_VERSION_NUMBER" in str(exc) or "UNEXPECTED_EOF" in str(exc) or "RECORD_LAYER" in str(exc):
        return f"{node.label} does not speak TLS on this port ({detail}); check the port and the TLS setting."
    return f"{node.label} could not set up a secure (TLS) connection ({detail})."


def tls_problem(node: Any, assoc: Any, exc: Optional[BaseException] = None) -> str:
    """Why a TLS association failed ("" when TLS is off or the handshake itself works)."""
    if not node.tls:
        return ""
    if isinstance(exc, ssl.SSLError):
        return describe_ssl_error(node, exc)
    if assoc is not None and assoc.is_rejected:
        return ""
    try:
        ctx = client_context(node)
        with socket.create_connection((node.host, int(node.port)), timeout=min(node.timeout_s, 5.0)) as raw:
            with ctx.wrap_socket(raw, server_hostname=node.host) as tls:
                tls.settimeout(min(node.timeout_s, 5.0))
                # a server that wants a client certificate may only say so on the first read
                try:
                    tls.recv(1)
                except (socket.timeout, TimeoutError):
                    pass
    except ssl.SSLError as err:
        return describe_ssl_error(node, err)
    except (OSError, PacsError):
        return ""
    return ""
