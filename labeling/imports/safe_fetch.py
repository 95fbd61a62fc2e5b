"""Fetching one image for someone else (classify-url), and POSTing event hooks through the same guard:
scheme allowlist, address checks, caps."""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlparse

import httpx

from models.imagecheck import ImageRejected, RejectReason

MAX_REDIRECTS = 3


class UnsafeUrl(ImageRejected):
    """A URL Loupe will not fetch: wrong scheme, or an address inside this network."""

    def __init__(self, detail: str):
        super().__init__(RejectReason.UNSAFE_URL, detail)


class ServerRefused(ImageRejected):
    """The server answered with an HTTP error; status_code says which."""

    def __init__(self, status_code: int):
        super().__init__(RejectReason.DOWNLOAD_FAILED, f"the server answered HTTP {status_code}")
        self.status_code = status_code


class InsideAddress(UnsafeUrl):
    """A host that resolves to an address inside this network (a refusal that waiting will not change)."""


def read_body_capped(response: httpx.Response, max_bytes: int, deadline: float | None = None) -> bytes:
    """A streamed response's body, refused as too large past max_bytes (announced or actual), or as too
    slow once time.monotonic() passes deadline (a server dripping bytes never trips the read timeout)."""
    declared = int(response.headers.get("content-length") or 0)
    if declared > max_bytes:
        raise ImageRejected(
            RejectReason.TOO_LARGE, f"the server announces {declared:,} bytes; the limit is {max_bytes:,}"
        )
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise ImageRejected(RejectReason.TOO_LARGE, f"the download passed the limit of {max_bytes:,} bytes")
        if deadline is not None and time.monotonic() > deadline:
            raise TooSlow
    return bytes(body)


class TooSlow(Exception):
    """The whole download ran past its deadline; the caller says how long it allowed."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits and that ipaddress has no property for.
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (RFC 4291)
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")  # ::ffff:0:a.b.c.d (RFC 2765)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # well-known NAT64 prefix (RFC 6052)
# Local-use NAT64 (RFC 8215): the operator picks the prefix length; /96 (IPv4 last) is the usual one, and
# the whole /48 is refused anyway (reserved), so the other layouts cannot reach inside either.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
# Not reachable from the internet, yet global to this Python's is_global (3.13 knows the first).
_ALSO_INSIDE = (ipaddress.ip_network("192.0.0.0/24"), ipaddress.ip_network("fec0::/10"))  # IETF use, site-local


def embedded_ipv4(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, SIIT, compatible, NAT64, 6to4, Teredo), or None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client, already XORed back with 0xffffffff
    last32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _IPV4_COMPATIBLE:
        return last32 if int(address) > 1 else None  # :: and ::1 are themselves, not 0.0.0.0 / 0.0.0.1
    if address in _SIIT or address in _NAT64 or address in _LOCAL_NAT64:
        return last32
    return None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether address is one Loupe may connect to on someone else's behalf."""
    if address.is_multicast or address.is_unspecified or any(address in net for net in _ALSO_INSIDE):
        return False
    if address in _NAT64:
        # is_reserved covers all of ::/8, well-known NAT64 included: on an IPv6-only network with DNS64
        # every IPv4 site has such an address, so judge it by the IPv4 it translates to.
        return True
    return address.is_global and not address.is_reserved


def _refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why address may not be fetched from (naming the IPv4 it hides, if that is the reason), or None."""
    inner = embedded_ipv4(address)
    if inner is not None and not _public(inner):
        return f"{address}, which embeds {inner},"
    if not _public(address):
        return f"{address},"
    return None


def check_url(url: str, allow_private: bool) -> str:
    """The address to connect to for url, after refusing non-http(s) URLs and hosts with any address that
    is not public: loopback, private, link-local, unspecified, multicast, reserved, or an IPv6 address
    embedding such an IPv4 one."""
    try:
        parsed = urlparse(url)
        port = parsed.port  # parsed lazily: "Port out of range" and "Invalid IPv6 URL" surface here
    except ValueError as error:
        raise UnsafeUrl(f"the URL is malformed ({error})") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs can be fetched")
    if not parsed.hostname:
        raise UnsafeUrl("the URL has no host name")
    try:
        infos = socket.getaddrinfo(parsed.hostname, port or (443 if parsed.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"the host {parsed.hostname!r} cannot be resolved") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for address in addresses:
            refused = _refusal(address)
            if refused is not None:
                raise InsideAddress(f"{parsed.hostname} resolves to {refused} an address Loupe does not fetch from")
    return str(addresses[0])


def pinned(url: str, address: str) -> tuple[str, dict, dict]:
    """url aimed at the checked address, with the Host header and TLS name of the original host.

    The name is resolved once, in check_url; connecting by name would resolve it again, and a DNS
    answer that changed in between (rebinding) could point the request inside this network.
    """
    parsed = urlparse(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parsed.port}" if parsed.port else "")
    # httpx's netloc: no credentials, and an internationalised name in its ASCII (IDNA) form, which is
    # what a Host header may carry.
    headers = {"Host": httpx.URL(url).netloc.decode("ascii")}
    extensions = {"sni_hostname": parsed.hostname} if parsed.scheme == "https" else {}
    return parsed._replace(netloc=netloc).geturl(), headers, extensions


def pinned_request(
    client: httpx.Client, method: str, url: str, address: str, timeout_s: float, headers=None, content=None
) -> httpx.Request:
    """A request for url sent to the checked address (see pinned), with headers and content added."""
    try:
        target, host, extensions = pinned(url, address)
        return client.build_request(
            method,
            target,
            headers={**(headers or {}), **host},
            content=content,
            extensions=extensions,
            timeout=httpx.Timeout(timeout_s),
        )
    except httpx.InvalidURL as error:  # a path or Host header httpx will not send
        raise UnsafeUrl(f"the URL is malformed ({error})") from None


class SendFailed(Exception):
    """A POST that got no answer: the sentence says what happened (timeout, refused connection)."""


def post_checked(url: str, body: bytes, headers: dict[str, str], *, timeout_s: float, allow_private: bool) -> int:
    """POST body to url through classify-url's guard (the address checked, then pinned for the connection)
    and return the answer's status code. Redirects are not followed, and the answer's body is not read.

    UnsafeUrl for an address the guard refuses; SendFailed when no answer came within timeout_s.
    """
    address = check_url(url, allow_private)
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        request = pinned_request(client, "POST", url, address, timeout_s, headers, body)
        try:
            response = client.send(request, stream=True)
        except httpx.TimeoutException:
            raise SendFailed(f"no answer within {timeout_s:g} s") from None
        except httpx.TransportError as error:
            raise SendFailed(f"the connection failed: {error or type(error).__name__}") from None
        response.close()  # unread: a receiver's answer is its status, and its body could be anything
        return response.status_code


@dataclass(frozen=True)
class TrustedOrigin:
    """One origin an admin named (a Label Studio): fetched from even at a private address, and the only one
    sent headers (its access token); a redirect elsewhere is checked as usual and gets none."""

    origin: str  # scheme://host[:port]
    headers: dict[str, str]

    def holds(self, url: str) -> bool:
        """Whether url is on this origin."""
        return origin_of(url) == origin_of(self.origin) != ""


def origin_of(url: str) -> str:
    """scheme://host:port of url, lower-cased with the default port filled in; "" when it has none."""
    try:
        parsed = urlparse(url)
        port = parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)
    except ValueError:
        return ""
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return ""
    return f"{parsed.scheme}://{parsed.hostname.lower()}:{port}"


def fetch_image_url(
    url: str, *, timeout_s: float, max_bytes: int, allow_private: bool, trusted: TrustedOrigin | None = None
) -> bytes:
    """The body at url, following at most MAX_REDIRECTS redirects, each hop checked and pinned, all of it
    (every hop's connect, headers and body) within timeout_s. A hop on the trusted origin may be private
    and carries its headers."""
    deadline = time.monotonic() + timeout_s
    too_slow = ImageRejected(RejectReason.DOWNLOAD_FAILED, f"the download took longer than {timeout_s:g} s")
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            own = trusted is not None and trusted.holds(url)
            address = check_url(url, allow_private or own)
            # Each hop may only use what is left: a chain of hops each slow to answer its headers would
            # otherwise hold a worker for (MAX_REDIRECTS + 1) × timeout_s.
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise too_slow
            request = pinned_request(client, "GET", url, address, remaining, trusted.headers if own else None)
            try:
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code >= 400:
                        raise ServerRefused(response.status_code)
                    return read_body_capped(response, max_bytes, deadline)
                finally:
                    response.close()
            except (httpx.TimeoutException, TooSlow):
                raise too_slow from None
            except httpx.TransportError as error:
                raise ImageRejected(RejectReason.DOWNLOAD_FAILED, f"the connection failed: {error}") from None
    raise ImageRejected(RejectReason.DOWNLOAD_FAILED, f"more than {MAX_REDIRECTS} redirects")
