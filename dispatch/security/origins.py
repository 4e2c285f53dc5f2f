"""Which pages may open the websocket: the Origin check that CORS does not do for websockets."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """A browser always sends Origin with a websocket handshake. Allowed: the server's own
    pages (the Origin names the Host the request was sent to), and the origins listed in
    ``allowed`` (DISPATCH_WS_ALLOWED_ORIGINS). A client that sends no Origin is not a
    browser page, so no other site can be acting through it; it still has to send a valid
    token in its first frame."""
    if origin is None:
        return True
    if origin in set(allowed):
        return True
    try:
        page = urlsplit(origin)
        if page.scheme not in _DEFAULT_PORTS or not page.hostname or host is None:
            return False
        default = _DEFAULT_PORTS[page.scheme]
        served = urlsplit("//" + host)
        if not served.hostname:
            return False
        return (page.hostname, page.port or default) == (served.hostname, served.port or default)
    except ValueError:
        return False
