# Copyright: neonops.storage contributors
# Apache License 2.0 (see LICENSE)
"""The one HTTP client for the Neon admin APIs. Internal to neonops.storage; may change in any release."""

from __future__ import annotations

import json as _json
from urllib.parse import urlsplit

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
    Retry = object  # keeps the class statement below importable

IDEMPOTENT_METHODS = frozenset({"GET", "PUT"})
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
BACKOFF_MAX = 10.0
_UNSET = object()


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


def _check_base_url(base_url) -> str:
    if not isinstance(base_url, str) or not base_url.strip():
        raise ValueError(f"invalid API URL {base_url!r}: expected http(s)://host[:port]")
    parts = urlsplit(base_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid API URL {base_url!r}: expected http(s)://host[:port]")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"invalid API URL {base_url!r}: bad port") from None
    if parts.query or parts.fragment:
        raise ValueError(f"invalid API URL {base_url!r}: must not carry a query or fragment")
    return base_url.strip().rstrip("/")


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
        self.timeout = float(timeout) if timeout else 30.0
        self.error_key = error_key
        self.warn = warn
        self.session = session if session is not None else requests.Session()
        # verify is also passed on every request: requests lets REQUESTS_CA_BUNDLE override a session-level False.
        self.session.verify = (ca_path or True) if validate_certs else False
        self.session.headers["Accept"] = "application/json"
        if self._token:
            self.session.headers["Authorization"] = f"Bearer {self._token}"
        retry = _WarningRetry(
            total=max(int(retries or 0), 0),
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

    def request(self, method, path, params=None, json=_UNSET, expected=(200,), timeout=None) -> ApiResponse:
        method = method.upper()
        url = self.url_for(path)
        kwargs = {"timeout": timeout or self.timeout, "verify": self.session.verify}
        if params:
            kwargs["params"] = {k: _query_value(v) for k, v in params.items() if v is not None}
        if json is not _UNSET:
            kwargs["data"] = _json.dumps(json)
            kwargs["headers"] = {"Content-Type": "application/json"}
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.exceptions.RequestException as exc:
            raise NeonAPIError(method, url, None, _redact(_transport_message(exc), self._token)) from None
        data = _parse_body(response)
        if response.status_code not in expected:
            message = _error_message(data, response, self.error_key)
            raise NeonAPIError(method, url, response.status_code, _redact(message, self._token), data)
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
    text = response.text
    if not text or not text.strip():
        return None
    try:
        return _json.loads(text)
    except ValueError:
        return text


def _error_message(data, response, error_key) -> str:
    if isinstance(data, dict):
        for key in (error_key, "msg", "error", "message"):
            if isinstance(data.get(key), str):
                return data[key]
        return _json.dumps(data)
    if isinstance(data, str):
        return data.strip()[:2000]
    return response.reason or "no response body"


def _transport_message(exc) -> str:
    reason = exc
    # unwrap requests -> urllib3 MaxRetryError -> the underlying cause, which is what the operator can act on
    if exc.args and isinstance(exc.args[0], MaxRetryError) and exc.args[0].reason is not None:
        reason = exc.args[0].reason
    return f"{type(exc).__name__}: {reason}"
