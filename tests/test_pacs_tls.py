"""DICOM TLS (issue 14 item 8): a query and a retrieve against an Orthanc configured for DICOM TLS with a test
CA pass; a PACS certificate the configured CA does not trust, and a workstation certificate the PACS does not
trust, are refused with a clear message. A second Orthanc (TLS only) for this module; openssl makes the CA."""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid

from planner.imaging import pacs
from planner.imaging.pacs import PacsError
from tests.orthanc import make_test_pki, orthanc_available, planner_node, start_orthanc, write_series

pytestmark = pytest.mark.pacs


@pytest.fixture(scope="module")
def tls_orthanc(tmp_path_factory):
    reason = orthanc_available()
    if reason:
        pytest.skip(reason)
    pki = make_test_pki(tmp_path_factory.mktemp("pki"))
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-tls"), dicomweb=False, extra_config={
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(pki["server_cert"]),
        "DicomTlsPrivateKey": str(pki["server_key"]), "DicomTlsTrustedCertificates": str(pki["ca"]),
        "DicomTlsRemoteCertificateRequired": True})
    study, series = generate_uid(), generate_uid()
    made = write_series(tmp_path_factory.mktemp("tls-src"), 3, study_uid=study, series_uid=series,
                        patient_name="TLS^TINA", patient_id="PT-TLS", study_date="20240701", accession="ACC-TLS")
    for path, _px in made.values():
        server.upload(path)
    yield server, pki, study, series
    server.stop()


def tls_node(server, pki, **changes):
    settings = dict(tls=True, tls_ca_file=str(pki["ca"]), tls_cert_file=str(pki["client_cert"]),
                    tls_key_file=str(pki["client_key"]), timeout_s=10.0)
    return planner_node(server, **{**settings, **changes})


def test_query_and_retrieve_over_tls(tls_orthanc, tmp_path):
    server, pki, study, series = tls_orthanc
    node = tls_node(server, pki)
    assert pacs.echo(node) >= 0
    [found] = pacs.find_studies(node, patient_id="PT-TLS")
    assert found.study_uid == study
    result = pacs.retrieve(node, study, dest_folder=tmp_path / "in", patient_id="PT-TLS")
    assert result.ok and result.complete == {series: 3}, result.summary()


def test_a_pacs_certificate_from_another_ca_is_refused_clearly(tls_orthanc):
    server, pki, _study, _series = tls_orthanc
    with pytest.raises(PacsError) as exc:
        pacs.find_studies(tls_node(server, pki, tls_ca_file=str(pki["other_ca"])))
    assert "presented a certificate that is not trusted" in str(exc.value)
    assert "check the CA file" in str(exc.value) and "Traceback" not in str(exc.value)


def test_a_workstation_without_a_trusted_certificate_is_refused_clearly(tls_orthanc):
    server, pki, _study, _series = tls_orthanc
    with pytest.raises(PacsError) as exc:
        pacs.echo(tls_node(server, pki, tls_cert_file="", tls_key_file=""))
    assert "refused this workstation's certificate" in str(exc.value) and "client certificate" in str(exc.value)


def test_plain_dicom_to_a_tls_port_is_explained(tls_orthanc):
    server, _pki, _study, _series = tls_orthanc
    with pytest.raises(PacsError) as exc:
        pacs.echo(planner_node(server, timeout_s=3.0))
    assert str(exc.value) == (f"PACS ORTHANC at 127.0.0.1:{server.dicom_port} closed the connection during the "
                              "association request (if the PACS uses DICOM TLS on this port, turn TLS on for this "
                              "node).")
