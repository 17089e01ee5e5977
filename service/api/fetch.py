"""Fetching an image by URL for a caller, without becoming an open proxy into the private network.

Off unless ``settings.url_fetch_allowlist`` names hosts. When on:

* only well-formed ``http``/``https`` URLs (no whitespace or control characters, a valid port)
  whose host is on the allowlist (exact name, ``*.suffix``, or an IP literal / CIDR network), on
  the entry's port when it names one (``host:port``, ``[v6]:port``);
* never the gateway itself (its own host and port), whatever the allowlist says;
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
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from ..errors import InvalidArgument
from ..settings import Settings
from .streams import read_limited

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 4096
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Entry:
    """One allowlist entry: a host name (``*.suffix`` allowed) or an IP network, and maybe a port."""

    name: str | None
    network: IPNetwork | None
    port: int | None

    def matches_port(self, port: int) -> bool:
        return self.port is None or self.port == port


def parse_entry(text: str) -> Entry | None:
    """``host``, ``host:port``, ``*.example.com[:port]``, ``10.0.0.0/8``, ``10.0.0.5:8080``,
    ``::1``, ``[::1]:8080``, ``[fd00::/8]:8080``; None for an entry that is none of these."""
    text = text.strip().lower().rstrip(".")
    port: int | None = None
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        text, port_text = inner, rest[1:] if rest else None
    else:
        try:
            return Entry(None, ipaddress.ip_network(text, strict=False), None)
        except ValueError:
            pass
        text, sep, port_text = text.rpartition(":") if text.count(":") == 1 else (text, "", None)
    if port_text is not None:
        if not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return None
        port = int(port_text)
    try:
        return Entry(None, ipaddress.ip_network(text, strict=False), port)
    except ValueError:
        pass
    if not text or any(c in text for c in "/:@[] "):
        return None
    return Entry(text.rstrip("."), None, port)


def _entries(allowlist: list[str]) -> list[Entry]:
    return [e for e in map(parse_entry, allowlist) if e is not None]


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_allowed(host: str, allowlist: list[str], port: int | None = None) -> bool:
    """``host`` (and ``port``, when given) is on the allowlist by name, address or network."""
    host = host.lower().rstrip(".")
    ip = _literal(host)
    for entry in _entries(allowlist):
        if port is not None and not entry.matches_port(port):
            continue
        if ip is not None:
            if entry.network is not None and ip in entry.network:
                return True
        elif entry.name is not None and (entry.name == host or
                                          (entry.name.startswith("*.") and host.endswith(entry.name[1:]))):
            return True
    return False


def address_allowed(ip: IPAddress, allowlist: list[str], port: int | None = None) -> bool:
    """Public addresses are fine; others only inside an allowlisted IP or network (and its port)."""
    if ip.is_global and not ip.is_multicast:
        return True
    return any(e.network is not None and ip in e.network and (port is None or e.matches_port(port))
               for e in _entries(allowlist))


def is_local_address(ip: IPAddress) -> bool:
    """An address of this host: loopback, unspecified, or one a socket can bind to here."""
    if ip.is_loopback or ip.is_unspecified:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(ip), 0))
    except OSError:
        return False
    return True


async def resolve(host: str, port: int) -> list[IPAddress]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise InvalidArgument(f"the host {host!r} cannot be resolved: {reason}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


def parse_url(url: str) -> tuple[SplitResult, int]:
    """The URL's parts and port, or ``InvalidArgument`` saying what is malformed."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidArgument(f"the URL is {len(url)} characters long; the limit is {MAX_URL_LENGTH}")
    # urlsplit quietly strips leading spaces and drops tabs and line breaks anywhere (WHATWG);
    # a URL that needs such repairs is refused instead of fetched as something else
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise InvalidArgument(f"the URL {url!r} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"the URL {url!r} is malformed: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(f"only http and https URLs can be fetched, not {parts.scheme or 'no scheme'!r}")
    if port == 0:
        raise InvalidArgument(f"the URL {url!r} names port 0")
    return parts, port or (443 if parts.scheme == "https" else 80)


async def checked_target(url: str, allowlist: list[str],
                         own: tuple[str, int] | None = None) -> tuple[httpx.URL, str, IPAddress]:
    """Validate one URL; return it, its host name and the address to connect to.

    ``own``: the gateway's own (host, port), never fetched from (it would let a caller reach the
    gateway's private routes, such as /metrics, through its own URL fetcher).
    """
    parts, port = parse_url(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidArgument(f"the URL {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidArgument("URLs with credentials are not fetched")
    if not allowlist:
        raise InvalidArgument("fetching images by URL is off on this gateway "
                              "(VISIONGATE_URL_FETCH_ALLOWLIST lists the hosts it may fetch from)")
    if not host_allowed(host, allowlist, port):
        raise InvalidArgument(f"the host {host!r} (port {port}) is not on this gateway's URL allowlist")
    addresses = await resolve(host, port)
    refused = [str(ip) for ip in addresses if not address_allowed(ip, allowlist, port)]
    if refused or not addresses:
        raise InvalidArgument(f"the host {host!r} resolves to a private, loopback or link-local address "
                              f"({', '.join(refused)}); only allowlisted addresses may be fetched from")
    if own is not None and port == own[1] and any(_is_own(ip, own[0]) for ip in addresses):
        raise InvalidArgument(f"the URL points at this gateway itself ({host}:{port}); it does not fetch "
                              "from itself")
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise InvalidArgument(f"the URL {url!r} is malformed: {exc}") from exc
    return target, host, addresses[0]


def _is_own(ip: IPAddress, listen_host: str) -> bool:
    """``ip`` reaches a gateway listening on ``listen_host``."""
    listening = _literal(listen_host)
    if listening is not None and not listening.is_unspecified:
        return ip == listening or (ip.is_loopback and listening.is_loopback)
    return is_local_address(ip)  # a name or 0.0.0.0 / ::: it listens on this host's addresses


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
    own = (settings.host, settings.port)

    async def run() -> bytes:
        current = url
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                target, host, ip = await checked_target(current, allowlist, own)
                try:
                    status, location, body = await _get_once(client, target, host, ip, settings.max_body_bytes)
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    raise InvalidArgument(f"the URL could not be fetched: {type(exc).__name__}: {exc}") from exc
                if location is not None:
                    try:
                        current = urljoin(current, location)
                    except ValueError as exc:
                        raise InvalidArgument(f"the URL redirected to a malformed URL {location!r}") from exc
                    continue
                if status != 200:
                    raise InvalidArgument(f"the URL answered HTTP {status}, not an image")
                return body
        raise InvalidArgument(f"the URL redirected more than {MAX_REDIRECTS} times")

    try:
        return await asyncio.wait_for(run(), timeout)
    except TimeoutError:
        raise InvalidArgument(f"the URL did not answer within {timeout:g} s") from None
