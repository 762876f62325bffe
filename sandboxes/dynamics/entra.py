"""A Microsoft Entra ID stand-in for the Dataverse sandbox: discovery and client credentials.

It answers what msal's ``ConfidentialClientApplication`` asks for:

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the OpenID document. Its endpoints
  are always advertised as ``https://`` (msal refuses anything else), even though the sandbox
  itself serves plain HTTP: clients reach it through a transport adapter
  (``adapters/_kit/loopback.py``).
- ``POST /{tenant}/oauth2/v2.0/token`` with ``grant_type=client_credentials`` and either a
  ``client_secret`` or a ``client_assertion`` (a JWT signed with the registered certificate's
  key, ``x5t`` or ``x5t#S256`` naming it). The answer is ``{token_type, expires_in,
  ext_expires_in, access_token}``; errors use the AAD shape (``invalid_client`` with
  AADSTS7000215 for a wrong secret, AADSTS700027 for a bad assertion, ``unauthorized_client``
  AADSTS700016 for an unknown application, ``invalid_scope`` for a resource that is not this
  organisation).
- ``GET /common/discovery/instance``: instance discovery, for clients that do not turn it off.

Tokens live in memory and expire on the sandbox clock, so moving the clock forward (or the
``expire_tokens`` control) makes a client's cached token go stale mid-run.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from werkzeug.wrappers import Request, Response

from sandboxes.dynamics.errors import AadError
from sandboxes.kit.server import json_response

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def generate_certificate(common_name: str) -> tuple[str, str]:
    """A self-signed certificate and its RSA key, both PEM: ``(certificate, private_key)``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def thumbprints(cert_pem: str) -> tuple[str, str]:
    """``(sha1, sha256)`` thumbprints of a PEM certificate, upper-case hex."""
    certificate = x509.load_pem_x509_certificate(cert_pem.encode())
    sha1 = certificate.fingerprint(hashes.SHA1()).hex().upper()
    return sha1, certificate.fingerprint(hashes.SHA256()).hex().upper()


def _b64(hex_digest: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(hex_digest)).decode().rstrip("=")


@dataclass
class EntraTenant:
    """One tenant with one registered application (a client secret and a certificate)."""

    tenant_id: str
    client_id: str
    client_secret: str
    certificate_pem: str
    now: Callable[[], datetime]
    token_lifetime: int = 3599
    accepted_hosts: Callable[[], set[str]] = field(default=lambda: set())
    _tokens: dict[str, tuple[float, str]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    issued: int = 0

    # --- tokens --------------------------------------------------------------------------

    def issue(self, resource_host: str) -> tuple[str, int]:
        """A new access token for ``resource_host`` and its lifetime in seconds."""
        token = "eyJ0eXAiOiJKV1QifQ." + secrets.token_urlsafe(48)
        expires = self.now().timestamp() + self.token_lifetime
        with self._lock:
            self._tokens[token] = (expires, resource_host)
            self.issued += 1
        return token, self.token_lifetime

    def valid(self, token: str | None, host: str) -> bool:
        """Whether ``token`` is a live token for the organisation at ``host``."""
        if not token:
            return False
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            return False
        expires, resource_host = entry
        return self.now().timestamp() < expires and _same_host(resource_host, host)

    def expire_all(self) -> None:
        """Every token issued so far stops working."""
        with self._lock:
            self._tokens.clear()

    # --- endpoints -----------------------------------------------------------------------

    def discovery(self, request: Request, tenant: str) -> Response:
        """The OpenID configuration document (always with https endpoints)."""
        if tenant.lower() not in (self.tenant_id, "common", "organizations"):
            error = AadError(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
            return json_response(error.body(), error.status)
        base = f"https://{request.host}/{tenant}"
        return json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": f"https://{request.host}/{tenant}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token",
                                             "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"https://{request.host}/{self.tenant_id}/v2.0",
                "request_uri_parameter_supported": False,
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
            }
        )  # fmt: skip

    def instance_discovery(self, request: Request) -> Response:
        """Instance discovery metadata pointing back at this tenant's discovery document."""
        return json_response(
            {
                "tenant_discovery_endpoint": f"https://{request.host}/{self.tenant_id}/v2.0/"
                ".well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": request.host,
                              "preferred_cache": request.host, "aliases": [request.host]}],
            }
        )  # fmt: skip

    def token(self, request: Request, tenant: str) -> Response:
        """The client-credentials token endpoint."""
        try:
            host = self._check(request, tenant)
        except AadError as error:
            return json_response(error.body(), error.status)
        token, lifetime = self.issue(host)
        return json_response(
            {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime,
             "access_token": token}
        )  # fmt: skip

    def _check(self, request: Request, tenant: str) -> str:
        form = request.form
        if tenant.lower() != self.tenant_id:
            raise AadError(400, "invalid_request", 90002, f"Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            raise AadError(
                400, "unsupported_grant_type", 70003,
                "The app requested an unsupported grant type.",
            )  # fmt: skip
        client_id = form.get("client_id", "")
        if client_id != self.client_id:
            raise AadError(
                400, "unauthorized_client", 700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'.",
            )  # fmt: skip
        if form.get("client_assertion_type") == JWT_BEARER:
            self._check_assertion(request, form.get("client_assertion", ""))
        elif not hmac.compare_digest(form.get("client_secret", ""), self.client_secret):
            raise AadError(
                401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                f"is the client secret value, not the client secret ID, for a secret added to "
                f"app '{self.client_id}'.",
            )  # fmt: skip
        return self._resource(form.get("scope", ""))

    def _check_assertion(self, request: Request, assertion: str) -> None:
        refused = AadError(
            401, "invalid_client", 700027,
            "Client assertion failed signature validation.",
        )  # fmt: skip
        sha1, sha256 = thumbprints(self.certificate_pem)
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            raise refused from None
        named = {str(header.get(k, "")).rstrip("=") for k in ("x5t", "x5t#S256")}
        if not named & {_b64(sha1), _b64(sha256)}:
            raise AadError(
                401, "invalid_client", 700027,
                "Client assertion contains an invalid signature. The key was not found.",
            )  # fmt: skip
        certificate = x509.load_pem_x509_certificate(self.certificate_pem.encode())
        # the registered certificate is the sandbox's own, made by generate_certificate (RSA)
        public_key = cast(rsa.RSAPublicKey, certificate.public_key())
        try:
            claims = jwt.decode(
                assertion, public_key, algorithms=["RS256", "PS256"],
                options={"verify_aud": False, "require": ["exp", "aud", "iss", "sub"]},
                leeway=300,
            )  # fmt: skip
        except jwt.PyJWTError:
            raise refused from None
        audience = urlsplit(str(claims.get("aud", "")))
        if audience.path != request.path or not _same_host(audience.netloc, request.host):
            raise AadError(
                401, "invalid_client", 700024,
                "Client assertion audience claim does not match Realm issuer.",
            )  # fmt: skip
        if claims.get("iss") != self.client_id or claims.get("sub") != self.client_id:
            raise refused
        if float(claims["exp"]) < time.time() - 300:
            raise AadError(
                401, "invalid_client", 700024,
                "Client assertion is not within its valid time range.",
            )  # fmt: skip

    def _resource(self, scope: str) -> str:
        resources = [s for s in scope.split() if s.endswith("/.default")]
        if len(resources) != 1:
            raise AadError(
                400, "invalid_scope", 1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier.",
            )  # fmt: skip
        host = urlsplit(resources[0].removesuffix("/.default")).netloc
        if not any(_same_host(host, accepted) for accepted in self.accepted_hosts()):
            raise AadError(
                400, "invalid_resource", 500011,
                f"The resource principal named {resources[0].removesuffix('/.default')} was "
                f"not found in the tenant named {self.tenant_id}.",
            )  # fmt: skip
        return host


def _same_host(one: str, other: str) -> bool:
    """Hosts compare equal when only ``127.0.0.1`` vs ``localhost`` differs."""

    def normal(host: str) -> str:
        return host.lower().replace("localhost", "127.0.0.1")

    return normal(one) == normal(other)
