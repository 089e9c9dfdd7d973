"""HTTPS for the nodes' management API ports (contracts §5.6).

Upstream services serve their management API over HTTPS when given a listen address, a certificate and a key
(pageserver `listen_https_addr`, `ssl_cert_file`, `ssl_key_file`, `ssl_ca_file` in
`libs/pageserver_api/src/config.rs`; the storage controller's `--listen-https`, `--use-https-pageserver-api` and
`--ssl-ca-file` in `storage_controller/src/main.rs`). `neon_local` makes a private CA for its test fleets
(`generate_ssl_ca_cert` in `control_plane/src/local_env.rs`); neonsim does the same at `up`: DIR/tls/ca.pem and
one certificate per node, valid for 127.0.0.1 and localhost.

In a TLS fleet the node's `http_port` serves HTTPS only; the sim-only pg ports stay plain HTTP (they stand in
for libpq, whose TLS is out of scope).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TLS_DIR = "tls"
CA_FILE = "ca.pem"
# A fleet lives for a test run or a demo; a year is long enough and still short-lived.
VALIDITY = datetime.timedelta(days=365)
# Tolerates a controller clock slightly behind the one that issued the certificates.
BACKDATE = datetime.timedelta(hours=1)
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1",)


def tls_settings(directory: str | Path, enabled: bool) -> dict:
    """fleet.json's `tls` entry."""
    if not enabled:
        return {"enabled": False, "ca_path": None, "cert_dir": None}
    cert_dir = Path(directory).resolve() / TLS_DIR
    return {"enabled": True, "ca_path": str(cert_dir / CA_FILE), "cert_dir": str(cert_dir)}


def enabled(fleet: dict) -> bool:
    return bool((fleet.get("tls") or {}).get("enabled"))


def ca_path(fleet: dict) -> str | None:
    return (fleet.get("tls") or {}).get("ca_path") if enabled(fleet) else None


def scheme(fleet: dict) -> str:
    return "https" if enabled(fleet) else "http"


def api_url(fleet: dict, entry: dict) -> str:
    """Base URL of a node's management API (its `http_port`)."""
    return f"{scheme(fleet)}://127.0.0.1:{entry['http_port']}"


def requests_verify(fleet: dict) -> str | bool:
    """`verify=` for `requests` calls to a node's API: the fleet CA in a TLS fleet, else the default."""
    return ca_path(fleet) or True


def cert_paths(fleet: dict, name: str) -> tuple[Path, Path]:
    """(certificate, private key) of a node."""
    cert_dir = Path(fleet["tls"]["cert_dir"])
    return cert_dir / f"{name}.crt", cert_dir / f"{name}.key"


def server_context(fleet: dict, name: str) -> ssl.SSLContext | None:
    """The SSL context a node's API port serves with; None when the fleet has no TLS."""
    if not enabled(fleet):
        return None
    cert, key = cert_paths(fleet, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def client_context(fleet: dict) -> ssl.SSLContext | None:
    """An SSL context that trusts the fleet CA (and nothing else); None when the fleet has no TLS."""
    if not enabled(fleet):
        return None
    return ssl.create_default_context(cafile=ca_path(fleet))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "neonsim"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a key file that is 0600 from its creation on (never briefly world-readable)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_certificates(tls: dict, names: list[str]) -> dict[str, tuple[Path, Path]]:
    """A fresh CA in `tls["ca_path"]` and a server certificate per node name; returns {name: (cert, key)}.

    The CA's private key is not kept: nothing issues certificates after `up`. ECDSA P-256 keys, because they
    are quick to generate on a busy machine.
    """
    cert_dir = Path(tls["cert_dir"])
    cert_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name("neonsim fleet CA")
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_subject)
        .issuer_name(ca_subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    Path(tls["ca_path"]).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in SERVER_NAMES] + [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
    )
    out = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(ca_subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = cert_dir / f"{name}.crt", cert_dir / f"{name}.key"
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[name] = (cert_path, key_path)
    return out
