"""Login endpoints: the OAuth 2.0 token endpoint and the SOAP ``login`` call.

Both answer with the sandbox's own ``http://127.0.0.1:PORT`` as the instance, so the SDK's later
calls come back to the sandbox. Failures look like Salesforce's: OAuth errors are
``{"error", "error_description"}`` with 400, SOAP failures a 500 fault with
``INVALID_LOGIN``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from werkzeug.wrappers import Request, Response

from sandboxes.kit.server import json_response
from sandboxes.salesforce.org import Org

_INVALID_LOGIN = "Invalid username, password, security token; or user locked out."


def _oauth_error(error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, 400)


def _token_body(org: Org) -> dict[str, str]:
    token = org.sessions.issue()
    issued_at = str(int(time.time() * 1000))
    identity = f"{org.base_url}/id/{org.org_id}/{org.records.user_id}"
    digest = hmac.new(token.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    return {
        "access_token": token,
        "instance_url": org.base_url,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(digest).decode(),
    }


def _password_matches(org: Org, password: str | None) -> bool:
    creds = org.credentials
    candidates = (creds.password, creds.password + creds.security_token)
    return password is not None and any(hmac.compare_digest(password, c) for c in candidates)


def oauth_token(org: Org, request: Request) -> Response:
    """``POST /services/oauth2/token``: password and client-credentials grants."""
    form = request.form
    grant = form.get("grant_type")
    creds = org.credentials
    if grant == "password":
        if form.get("client_id") != creds.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != creds.consumer_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        if form.get("username") != creds.username or not _password_matches(
            org, form.get("password")
        ):
            return _oauth_error("invalid_grant", "authentication failure")
        return json_response(_token_body(org))
    if grant == "client_credentials":
        basic = request.authorization
        key = basic.username if basic else form.get("client_id")
        secret = basic.password if basic else form.get("client_secret")
        if key != creds.consumer_key or secret != creds.consumer_secret:
            return _oauth_error("invalid_client", "invalid client credentials")
        return json_response(_token_body(org))
    return _oauth_error("unsupported_grant_type", "grant type not supported")


def _element_text(root: ElementTree.Element, local_name: str) -> str | None:
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == local_name:
            return element.text or ""
    return None


def soap_login(org: Org, request: Request, soap_version: str) -> Response:
    """``POST /services/Soap/u/{version}``: the partner API ``login`` call."""
    try:
        root = ElementTree.fromstring(request.get_data())
    except ElementTree.ParseError:
        return _soap_fault("INVALID_LOGIN", _INVALID_LOGIN)
    username = _element_text(root, "username")
    password = _element_text(root, "password")
    organization = _element_text(root, "organizationId")
    creds = org.credentials
    password_ok = _password_matches(org, password)
    if organization is not None:
        password_ok = password == creds.password and org.org_id.startswith(organization[:15])
    if username != creds.username or not password_ok:
        return _soap_fault("INVALID_LOGIN", _INVALID_LOGIN)
    token = org.sessions.issue()
    server = f"{org.base_url}/services/Soap/u/{soap_version}/{org.org_id[:15]}"
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns="urn:partner.soap.sforce.com"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><loginResponse><result>"
        f"<metadataServerUrl>{org.base_url}/services/Soap/m/{soap_version}/{org.org_id[:15]}"
        "</metadataServerUrl><passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
        f"<serverUrl>{server}</serverUrl><sessionId>{escape(token)}</sessionId>"
        f"<userId>{org.records.user_id}</userId>"
        f"<userInfo><organizationId>{org.org_id}</organizationId>"
        f"<userName>{escape(creds.username)}</userName></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, content_type="text/xml;charset=UTF-8")


def _soap_fault(code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"'
        ' xmlns:sf="urn:fault.partner.soap.sforce.com"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Response(body, status=500, content_type="text/xml;charset=UTF-8")
