"""JWT helpers for the simulated fleet: Ed25519 keys, token minting, verification, scope rules.

Upstream storage services accept EdDSA only (`libs/utils/src/auth.rs` upstream); compute_ctl verifies against a
JWKS (`compute_tools/src/http/middleware/authorize.rs`).
One fleet-wide keypair signs every token; its PEM paths live in fleet.json `auth`.
"""

from __future__ import annotations

import base64
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# Scope each service's admin token carries (the scope that passes every route of that service).
SERVICE_SCOPES = {
    "pageserver": "pageserverapi",
    "safekeeper": "safekeeperdata",
    "storcon": "admin",
    "compute": "compute_ctl:admin",
}


class AuthError(Exception):
    """Token could not be verified (bad signature, wrong algorithm, malformed)."""


def generate_keypair(directory: str | Path) -> tuple[Path, Path]:
    """Write `auth_private.pem` and `auth_public.pem` into directory; returns (private, public) paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private_path = directory / "auth_private.pem"
    public_path = directory / "auth_public.pem"
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private_path, public_path


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def mint_token(private_key: Ed25519PrivateKey | str | Path, scope: str, tenant_id: str | None = None, **claims) -> str:
    """EdDSA JWT with {"scope", "tenant_id"} plus any extra claims (e.g. aud, compute_id, exp)."""
    if not isinstance(private_key, Ed25519PrivateKey):
        private_key = load_private_key(private_key)
    payload = {"scope": scope, "tenant_id": tenant_id, **claims}
    return jwt.encode(payload, private_key, algorithm="EdDSA")


def verify_token(token: str, public_key: Ed25519PublicKey) -> dict:
    """Claims of an EdDSA token; AuthError for anything else (HS256 included). `exp` is checked when present."""
    try:
        # aud is checked by the compute rule itself; storage services ignore it like upstream.
        return jwt.decode(token, public_key, algorithms=["EdDSA"], options={"require": [], "verify_aud": False})
    except jwt.PyJWTError as exc:
        raise AuthError(str(exc)) from exc


def service_tokens(private_key_path: str | Path) -> dict[str, str]:
    """One all-powerful token per service, plus the storcon upcall token; written to DIR/tokens.json."""
    key = load_private_key(private_key_path)
    tokens = {service: mint_token(key, scope) for service, scope in SERVICE_SCOPES.items()}
    tokens["compute"] = mint_token(key, "compute_ctl:admin", aud=["compute"])
    tokens["generations_api"] = mint_token(key, "generations_api")
    tokens["infra"] = mint_token(key, "infra")
    return tokens


def public_jwk(public_key_path: str | Path, kid: str = "neonsim") -> dict:
    """The fleet public key as an OKP JWK, for compute_ctl_config.jwks."""
    raw = load_public_key(public_key_path).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x}


# --- scope rules: rule(request, claims) -> bool; a node module passes one to make_http_app ---


def tenant_id_in_path(request) -> str | None:
    """The tenant id a route carries ({tenant_id} or the first 32 chars of {tenant_shard_id}), else None."""
    info = request.match_info
    if "tenant_id" in info:
        return info["tenant_id"].lower()
    if "tenant_shard_id" in info:
        return info["tenant_shard_id"][:32].lower()
    return None


def _tenant_scope_ok(request, claims: dict) -> bool:
    tenant = tenant_id_in_path(request)
    return tenant is not None and (claims.get("tenant_id") or "").lower() == tenant


def pageserver_scope_rule(request, claims: dict) -> bool:
    """pageserverapi → everything; tenant → only routes carrying that tenant id (upstream `pageserver/src/auth.rs`)."""
    scope = claims.get("scope")
    if scope == "pageserverapi":
        return True
    if scope == "tenant":
        return _tenant_scope_ok(request, claims)
    return False


def safekeeper_scope_rule(request, claims: dict) -> bool:
    """safekeeperdata → everything; tenant → only that tenant's routes (upstream `safekeeper/src/auth.rs`)."""
    scope = claims.get("scope")
    if scope == "safekeeperdata":
        return True
    if scope == "tenant":
        return _tenant_scope_ok(request, claims)
    return False


def storcon_scope(required: str):
    """Rule factory: scope == required or scope == admin (upstream `storage_controller/src/http.rs`)."""

    def rule(request, claims: dict) -> bool:
        return claims.get("scope") in (required, "admin")

    return rule


def compute_claims_ok(claims: dict, compute_id: str) -> tuple[bool, int]:
    """compute_ctl rule (upstream `compute_tools/src/http/middleware/authorize.rs`): (allowed, status if refused)."""
    if claims.get("compute_id") is not None:
        return (claims["compute_id"] == compute_id, 403)
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if claims.get("scope") == "compute_ctl:admin" and "compute" in auds:
        return (True, 200)
    return (False, 401)


PAGESERVER_ALLOW = ("/v1/status", "/v1/doc", "/swagger.yml", "/metrics", "/profile/cpu", "/profile/heap")
SAFEKEEPER_ALLOW = ("/v1/status", "/metrics", "/profile/cpu", "/profile/heap")
STORCON_ALLOW = ("/status", "/live", "/ready", "/metrics", "/profile/cpu", "/profile/heap")
COMPUTE_ALLOW = ("/metrics", "/autoscaling_metrics")
