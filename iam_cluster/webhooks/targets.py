"""Where webhooks may go: http(s) URLs whose host resolves only to public addresses (no SSRF).

Loopback, private, link-local (cloud metadata at 169.254.169.254 included), shared, multicast and
reserved addresses are refused unless the deployment allows private targets (``WEBHOOK_ALLOW_PRIVATE``,
for tests and all-internal setups). The check runs when a URL is registered and again at each
delivery, and the delivery connects to the very address that was checked (no DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from iam_cluster.errors import IAMError


class UnsafeTarget(IAMError):
    """The webhook URL is not an allowed target."""

    code = "invalid_value"


def check(url: str, allow_private: bool = False) -> list[str]:
    """Validate a target URL and resolve its host.

    Returns:
        The addresses to connect to (all checked).

    Raises:
        UnsafeTarget: not http(s), no host, unresolvable, or some address is not public.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget(f"webhook URL must be http(s) with a host: {url!r}")
    if parts.username or parts.password:
        raise UnsafeTarget("webhook URL must not carry credentials")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"webhook host {parts.hostname!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not allow_private:
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            if not ip.is_global or ip.is_multicast:
                raise UnsafeTarget(f"webhook host {parts.hostname!r} resolves to {address}, which is not "
                                   "a public address (loopback, private, link-local and metadata are refused)")
    return addresses
