# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""The one HTTP client for the Neon admin APIs. Internal to neonops.storage; may change in any release."""

from __future__ import annotations

import ipaddress
import json as _json
import math
import os
import re
from urllib.parse import urlsplit

from ansible_collections.neonops.storage.plugins.module_utils._echo import cut, echo

try:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.exceptions import MaxRetryError
    from urllib3.util.retry import Retry

    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as _import_error:  # reported by the module through missing_required_lib
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = _import_error
    Retry = object  # type: ignore[misc,assignment]  # keeps the class statement below importable

IDEMPOTENT_METHODS = frozenset({"GET", "PUT"})
READ_METHODS = frozenset({"GET", "HEAD"})
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
BACKOFF_MAX = 10.0
_UNSET = object()

# Limits of the client's own settings; modules check their options against the same numbers first.
MAX_TIMEOUT = 86400.0  # seconds, for each request
MAX_REQUEST_TIMEOUT = 7 * 86400.0  # a per-request timeout a caller derives (e.g. from flush_ms) is cut to this
MAX_RETRIES = 100
MAX_URL_LENGTH = 2048

# The 404 body the shared HTTP router (libs/http-utils/src/endpoint.rs in neondatabase/neon) gives for a route
# it does not serve. Handlers answer a missing object with ApiError::NotFound, whose "msg" names it:
# "NotFound: tenant <id>", "NotFound: Timeline <tsid>/<id> was not found", "Node 7 not registered", ...
UNKNOWN_ROUTE_MESSAGE = "page not found"
_NOT_FOUND_SUBJECT = re.compile(r"\b(tenant|timeline|shard|node)s?\b", re.IGNORECASE | re.ASCII)


class NeonAPIError(Exception):
    """A failed request: transport error (``status`` None) or an HTTP status the caller did not expect."""

    def __init__(self, method, url, status=None, message="", body=None):
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        self.body = body
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.status is None:
            return f"{self.method} {self.url}: {self.message}"
        return f"{self.method} {self.url}: HTTP {self.status}: {self.message}"

    def to_dict(self) -> dict:
        return {"method": self.method, "url": self.url, "status": self.status, "message": self.message}

    @property
    def not_found(self) -> bool:
        """An upstream 404 for the object asked about: a JSON error body whose message names a tenant, timeline,
        shard or node. A 404 from anything else (the router's "page not found", an HTML page, an empty body) is
        not: then the URL does not serve the API, and the object's absence is unknown."""
        if self.status != 404 or not isinstance(self.body, dict) or not isinstance(self.message, str):
            return False
        text = self.message.strip()
        return text.lower() != UNKNOWN_ROUTE_MESSAGE and _NOT_FOUND_SUBJECT.search(text) is not None

    @property
    def unknown_route(self) -> bool:
        """A 404 that is not an upstream "not found" for an object (see ``not_found``)."""
        return self.status == 404 and not self.not_found


class UnexpectedResponse(NeonAPIError):
    """A status the caller expected, with a body that is not the JSON the route returns."""


class ApiResponse:
    __slots__ = ("status", "data", "headers")

    def __init__(self, status, data, headers):
        self.status = status
        self.data = data
        self.headers = headers

    def __repr__(self) -> str:
        return f"ApiResponse(status={self.status}, data={self.data!r})"


class _WarningRetry(Retry):
    """urllib3 Retry that retries only GET/PUT (even on connect errors) and reports each retry."""

    def __init__(self, *args, warn=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.warn = warn

    def new(self, **kw):
        retry = super().new(**kw)
        retry.warn = self.warn
        return retry

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        # urllib3 retries connect errors for any method; POST/PATCH/DELETE must never be sent twice.
        if method is None or method.upper() not in IDEMPOTENT_METHODS:
            raise MaxRetryError(_pool, url, error)
        new_retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if self.warn is not None:
            reason = f"HTTP {response.status}" if response is not None and error is None else str(error)
            limit = len(self.history) + self.total if isinstance(self.total, int) else "?"
            where = f"{_pool.scheme}://{_pool.host}:{_pool.port}{url}" if _pool is not None else url
            self.warn(f"{method} {where}: {reason}; retrying (retry {len(new_retry.history)} of {limit})")
        return new_retry


def _redact(text: str, secret: str | None) -> str:
    if secret and isinstance(text, str):
        return text.replace(secret, "********")
    return text


def redact_url(url) -> str:
    """The URL with any user information (``user:password@``) masked, cut for an error message."""
    if not isinstance(url, str):
        return echo(url)
    return echo(re.sub(r"(?<=//)[^/?#]*@", "********@", url, count=1))


def hostname_problem(host: str) -> str | None:
    """Why ``host`` (as urlsplit gives it, without brackets) is not a usable host name or address, or None."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return "not a valid IPv6 address"
        return None
    if not host.isascii():
        return "the host name must be ASCII (write an internationalized name in its xn-- form)"
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        return "the host name is longer than 253 characters"
    for label in name.split("."):
        # RFC 1035 section 2.3.4: labels of 1 to 63 characters. "_" is tolerated as resolvers do.
        if not 1 <= len(label) <= 63:
            return "each dot-separated part of the host name must have 1 to 63 characters"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", label):
            return "the host name may only contain letters, digits, '-', '_' and '.'"
    return None


def check_url(url, schemes=("http", "https"), example="http(s)://host[:port]") -> str:
    """Validate a service URL from user input; return it without a trailing slash.

    Raises ``ValueError`` with the URL (user information masked, length cut) and what is wrong.
    """
    if not isinstance(url, str) or not url:
        raise ValueError(f"invalid URL {echo(url)}: expected {example}")
    shown = redact_url(url)
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"invalid URL {shown}: longer than {MAX_URL_LENGTH} characters")
    if any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(f"invalid URL {shown}: contains whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. a bracketed host that is not an IPv6 address
        raise ValueError(f"invalid URL {shown}: {cut(exc, 200)}") from None
    if parts.scheme not in schemes:
        raise ValueError(f"invalid URL {shown}: expected {example}")
    if "@" in parts.netloc:
        raise ValueError(
            f"invalid URL {shown}: must not carry user information (user:password@); pass credentials as a token"
        )
    if not parts.hostname:
        raise ValueError(f"invalid URL {shown}: expected {example}")
    problem = hostname_problem(parts.hostname)
    if problem:
        raise ValueError(f"invalid URL {shown}: {problem}")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(f"invalid URL {shown}: bad port (expected 1 to 65535)")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise ValueError(f"invalid URL {shown}: must not carry a query or fragment")
    return url.rstrip("/")


def _check_base_url(base_url) -> str:
    try:
        return check_url(base_url)
    except ValueError as exc:
        raise ValueError(str(exc).replace("invalid URL", "invalid API URL", 1)) from None


def check_ca_path(ca_path) -> None:
    """Raise ``ValueError`` naming ``ca_path`` when it is set but cannot be read (requests would fail later)."""
    if ca_path is None:
        return
    if not isinstance(ca_path, str) or not ca_path:
        raise ValueError(f"ca_path: {echo(ca_path)} is not a path")
    if not os.path.exists(ca_path):
        raise ValueError(
            f"ca_path: {echo(ca_path)} does not exist (expected a PEM file or a directory of CA certificates)"
        )
    if not os.access(ca_path, os.R_OK):
        raise ValueError(f"ca_path: {echo(ca_path)} is not readable")


def check_timeout(timeout, field="timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not math.isfinite(timeout):
        raise ValueError(f"{field}: must be a finite number of seconds, got {echo(timeout)}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"{field}: must be more than 0 and at most {MAX_TIMEOUT:g} seconds, got {echo(timeout)}")
    return float(timeout)


def check_retries(retries, field="retries") -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise ValueError(f"{field}: must be an integer from 0 to {MAX_RETRIES}, got {echo(retries)}")
    return retries


def _query_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


class NeonClient:
    """Session-based client: bearer token, TLS verification, finite timeout, retries for GET/PUT only."""

    def __init__(
        self,
        base_url,
        token=None,
        validate_certs=True,
        ca_path=None,
        timeout=30.0,
        retries=3,
        backoff_factor=0.5,
        warn=None,
        error_key="msg",
        session=None,
    ):
        if not HAS_REQUESTS:
            raise RuntimeError(f"the requests Python library is required: {REQUESTS_IMPORT_ERROR}")
        self.base_url = _check_base_url(base_url)
        self._token = token or None
        self.timeout = check_timeout(timeout) if timeout is not None else 30.0
        retries = check_retries(retries if retries is not None else 0)
        self.error_key = error_key
        self.warn = warn
        # Mutating requests the server accepted (2xx), as "METHOD url": a failure after one is a change.
        self.mutations = []
        self.session = session if session is not None else requests.Session()
        if validate_certs:
            check_ca_path(ca_path)
        # verify is also passed on every request: requests lets REQUESTS_CA_BUNDLE override a session-level False.
        self.session.verify = (ca_path or True) if validate_certs else False
        self.session.headers["Accept"] = "application/json"
        if self._token:
            self.session.headers["Authorization"] = f"Bearer {self._token}"
        retry = _WarningRetry(
            total=retries,
            connect=None,
            read=None,
            status=None,
            other=0,
            allowed_methods=IDEMPOTENT_METHODS,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=backoff_factor,
            backoff_max=BACKOFF_MAX,
            raise_on_status=False,
            respect_retry_after_header=False,  # keeps every call's duration bounded by our own backoff
            warn=self._warn,
        )
        adapter = HTTPAdapter(max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def _warn(self, text):
        if self.warn is not None:
            self.warn(_redact(text, self._token))

    def url_for(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method,
        path,
        params=None,
        json=_UNSET,
        expected=(200,),
        timeout=None,
        returns=None,
        check=None,
        mutating=None,
    ) -> ApiResponse:
        """Send one request; raise ``NeonAPIError`` unless the status is in ``expected``.

        ``returns`` is the JSON the route answers with on an expected status: a type or tuple of types among
        ``dict``, ``list``, ``str``, ``int``, ``bool`` and ``type(None)``; another body (text that is not
        JSON, or JSON of another type) raises ``UnexpectedResponse``. Without ``returns`` any JSON is accepted,
        but never text that is not JSON. ``check(data)`` may then return what else is wrong with the body (or
        None), which also raises ``UnexpectedResponse``. ``mutating=False`` marks a POST that only reads.
        """
        method = method.upper()
        url = self.url_for(path)
        if mutating is None:
            mutating = method not in READ_METHODS
        request_timeout = min(timeout or self.timeout, MAX_REQUEST_TIMEOUT)
        query = {k: _query_value(v) for k, v in params.items() if v is not None} if params else None
        data = headers = None
        if json is not _UNSET:
            # allow_nan=False: NaN and Infinity are not JSON; a value carrying them is refused, not sent.
            data = _json.dumps(json, allow_nan=False)
            headers = {"Content-Type": "application/json"}
        try:
            response = self.session.request(
                method,
                url,
                params=query,
                data=data,
                headers=headers,
                timeout=request_timeout,
                verify=self.session.verify,
            )
        except requests.exceptions.RequestException as exc:
            raise NeonAPIError(method, url, None, _redact(_transport_message(exc), self._token)) from None
        except (OSError, ValueError) as exc:  # e.g. an unreadable CA file, a URL urllib3 cannot encode
            raise NeonAPIError(method, url, None, _redact(f"{type(exc).__name__}: {exc}", self._token)) from None
        if mutating and 200 <= response.status_code < 300:
            self.mutations.append(f"{method} {url}")
        data, is_json = _parse_body(response)
        if response.status_code not in expected:
            message = _error_message(data, response, self.error_key)
            raise NeonAPIError(method, url, response.status_code, _redact(cut(message, 1000), self._token), data)
        problem = _unexpected_body(data, is_json, returns)
        if problem is None and check is not None:
            problem = check(data)
        if problem:
            raise UnexpectedResponse(
                method,
                url,
                response.status_code,
                _redact(f"{problem}; is this the right URL for the service?", self._token),
                data,
            )
        return ApiResponse(response.status_code, data, response.headers)

    def get(self, path, **kw) -> ApiResponse:
        return self.request("GET", path, **kw)

    def put(self, path, **kw) -> ApiResponse:
        return self.request("PUT", path, **kw)

    def post(self, path, **kw) -> ApiResponse:
        return self.request("POST", path, **kw)

    def patch(self, path, **kw) -> ApiResponse:
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw) -> ApiResponse:
        return self.request("DELETE", path, **kw)


def _parse_body(response):
    """``(data, is_json)``: the parsed JSON (None for an empty body), or the text when it is not JSON."""
    text = response.text
    if not text or not text.strip():
        return None, True
    try:
        return _json.loads(text), True
    except ValueError:
        return text, False


_JSON_KINDS = {
    bool: "true or false",  # before int: a bool is an int to Python
    dict: "a JSON object",
    list: "a JSON array",
    str: "a JSON string",
    int: "a JSON number",
    float: "a JSON number",
    type(None): "null or no body",
}


def _json_kind(data) -> str:
    for kind, name in _JSON_KINDS.items():
        if isinstance(data, kind):
            return name
    return type(data).__name__


def _unexpected_body(data, is_json, returns) -> str | None:
    """Why ``data`` is not what the route returns, or None."""
    if not is_json:
        return f"the response is not JSON: {echo(data)}"
    if returns is None:
        return None
    allowed = returns if isinstance(returns, tuple) else (returns,)
    if isinstance(data, allowed) and (bool in allowed or not isinstance(data, bool)):
        return None
    wanted = " or ".join(dict.fromkeys(_JSON_KINDS.get(kind, kind.__name__) for kind in allowed))
    return f"expected {wanted} in the response, got {_json_kind(data)}: {echo(data)}"


def _error_message(data, response, error_key) -> str:
    if isinstance(data, dict):
        for key in (error_key, "msg", "error", "message"):
            if isinstance(data.get(key), str):
                return data[key]
        return _json.dumps(data)[:2000]
    if isinstance(data, str):
        return data.strip()[:2000]
    return response.reason or "no response body"


def _transport_message(exc) -> str:
    reason = exc
    # unwrap requests -> urllib3 MaxRetryError -> the underlying cause, which is what the operator can act on
    if exc.args and isinstance(exc.args[0], MaxRetryError) and exc.args[0].reason is not None:
        reason = exc.args[0].reason
    return f"{type(exc).__name__}: {reason}"
