"""Fetching one image for someone else (classify-url): scheme allowlist, address checks, caps."""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urljoin, urlparse

import httpx

from labeling.imagecheck import ImageRejected, RejectReason

MAX_REDIRECTS = 3


class UnsafeUrl(ImageRejected):
    """A URL Loupe will not fetch: wrong scheme, or an address inside this network."""

    def __init__(self, detail: str):
        super().__init__(RejectReason.UNSAFE_URL, detail)


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


def check_url(url: str, allow_private: bool) -> str:
    """The address to connect to for url, after refusing non-http(s) URLs and hosts that resolve to
    loopback, private or link-local addresses (any of them)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs can be fetched")
    if not parsed.hostname:
        raise UnsafeUrl("the URL has no host name")
    try:
        infos = socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl(f"the host {parsed.hostname!r} cannot be resolved") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if not address.is_global or address.is_multicast:
                raise UnsafeUrl(f"{parsed.hostname} resolves to {address}, an address Loupe does not fetch from")
    return str(addresses[0])


def pinned(url: str, address: str) -> tuple[str, dict, dict]:
    """url aimed at the checked address, with the Host header and TLS name of the original host.

    The name is resolved once, in check_url; connecting by name would resolve it again, and a DNS
    answer that changed in between (rebinding) could point the request inside this network.
    """
    parsed = urlparse(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host + (f":{parsed.port}" if parsed.port else "")
    headers = {"Host": parsed.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": parsed.hostname} if parsed.scheme == "https" else {}
    return parsed._replace(netloc=netloc).geturl(), headers, extensions


def fetch_image_url(url: str, *, timeout_s: float, max_bytes: int, allow_private: bool) -> bytes:
    """The body at url, following at most MAX_REDIRECTS redirects, each hop checked and pinned."""
    deadline = time.monotonic() + timeout_s  # for the whole fetch, redirects included
    with httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            target, headers, extensions = pinned(url, check_url(url, allow_private))
            request = client.build_request("GET", target, headers=headers, extensions=extensions)
            try:
                response = client.send(request, stream=True)
                try:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        continue
                    if response.status_code >= 400:
                        raise ImageRejected(
                            RejectReason.DOWNLOAD_FAILED, f"the server answered HTTP {response.status_code}"
                        )
                    return read_body_capped(response, max_bytes, deadline)
                finally:
                    response.close()
            except httpx.TimeoutException:
                raise ImageRejected(RejectReason.DOWNLOAD_FAILED, f"no answer within {timeout_s:g} s") from None
            except TooSlow:
                slow = f"the download took longer than {timeout_s:g} s"
                raise ImageRejected(RejectReason.DOWNLOAD_FAILED, slow) from None
            except httpx.TransportError as error:
                raise ImageRejected(RejectReason.DOWNLOAD_FAILED, f"the connection failed: {error}") from None
    raise ImageRejected(RejectReason.DOWNLOAD_FAILED, f"more than {MAX_REDIRECTS} redirects")
