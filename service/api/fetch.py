"""Fetching an image by URL for a caller, without becoming an open proxy into the private network.

Off unless ``settings.url_fetch_allowlist`` names hosts. When on:

* only ``http``/``https`` URLs whose host is on the allowlist (exact name, ``*.suffix``, or an IP
  literal / CIDR network);
* the host is resolved once and the connection goes to that address (so DNS cannot change its mind
  between the check and the connect); a name that resolves to a private, loopback, link-local or
  otherwise non-public address is refused unless that address is inside an allowlisted IP/network.
  A bare hostname on the allowlist never opens the private network by itself;
* redirects are followed by hand (at most ``MAX_REDIRECTS``), each target checked like the first URL;
* the body is streamed and cut at ``max_body_bytes``; the whole fetch has ``url_fetch_timeout_s``.

Every refusal is a ``InvalidArgument`` (400) naming the reason.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit

import httpx

from ..errors import InvalidArgument
from ..settings import Settings
from .streams import read_limited

MAX_REDIRECTS = 3
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(allowlist: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for entry in allowlist:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            continue
    return nets


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_allowed(host: str, allowlist: list[str]) -> bool:
    host = host.lower().rstrip(".")
    ip = _literal(host)
    if ip is not None:
        return any(ip in net for net in _networks(allowlist))
    for entry in (e.strip().lower().rstrip(".") for e in allowlist):
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def address_allowed(ip: IPAddress, allowlist: list[str]) -> bool:
    """Public addresses are fine; others only inside an allowlisted IP or network."""
    if ip.is_global and not ip.is_multicast:
        return True
    return any(ip in net for net in _networks(allowlist))


async def resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidArgument(f"the host {host!r} cannot be resolved: {exc.strerror}") from exc
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


async def checked_target(url: str, allowlist: list[str]) -> tuple[httpx.URL, str, IPAddress]:
    """Validate one URL; return it, its host name and the address to connect to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(f"only http and https URLs can be fetched, not {parts.scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidArgument(f"the URL {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidArgument("URLs with credentials are not fetched")
    if not allowlist:
        raise InvalidArgument("fetching images by URL is off on this gateway "
                              "(VISIONGATE_URL_FETCH_ALLOWLIST lists the hosts it may fetch from)")
    if not host_allowed(host, allowlist):
        raise InvalidArgument(f"the host {host!r} is not on this gateway's URL allowlist")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(host, port)
    refused = [str(ip) for ip in addresses if not address_allowed(ip, allowlist)]
    if refused or not addresses:
        raise InvalidArgument(f"the host {host!r} resolves to a private, loopback or link-local address "
                              f"({', '.join(refused)}); only allowlisted addresses may be fetched from")
    return httpx.URL(url), host, addresses[0]


async def _get_once(client: httpx.AsyncClient, url: httpx.URL, host: str, ip: IPAddress,
                    limit: int) -> tuple[int, str | None, bytes]:
    """One GET pinned to ``ip``: (status, Location header, body)."""
    pinned = url.copy_with(host=str(ip))
    headers = {"Host": url.netloc.decode("ascii"), "Accept": "image/*"}
    request = client.build_request("GET", pinned, headers=headers,
                                   extensions={"sni_hostname": host} if url.scheme == "https" else {})
    response = await client.send(request, stream=True)
    try:
        if 300 <= response.status_code < 400:
            return response.status_code, response.headers.get("location"), b""
        body = await read_limited(response.aiter_bytes(), limit, response.headers.get("content-length"),
                                  "the image at the URL")
        return response.status_code, None, body
    finally:
        await response.aclose()


async def fetch_image(url: str, settings: Settings) -> bytes:
    """The bytes at ``url``, following the rules in the module docstring."""
    allowlist = settings.url_fetch_allowlist
    timeout = settings.url_fetch_timeout_s

    async def run() -> bytes:
        current = url
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                target, host, ip = await checked_target(current, allowlist)
                try:
                    status, location, body = await _get_once(client, target, host, ip, settings.max_body_bytes)
                except httpx.HTTPError as exc:
                    raise InvalidArgument(f"the URL could not be fetched: {type(exc).__name__}: {exc}") from exc
                if location is not None:
                    current = urljoin(current, location)
                    continue
                if status != 200:
                    raise InvalidArgument(f"the URL answered HTTP {status}, not an image")
                return body
        raise InvalidArgument(f"the URL redirected more than {MAX_REDIRECTS} times")

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise InvalidArgument(f"the URL did not answer within {timeout:g} s") from None
