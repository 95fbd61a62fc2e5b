"""classify-url's fetcher: one deadline for the whole fetch, and no IPv6 disguise of an inside address."""

from __future__ import annotations

import ipaddress
import time

import pytest
from conftest import LoopbackSite, image_bytes, serve_site

from labeling.imports.safe_fetch import UnsafeUrl, check_url, embedded_ipv4, fetch_image_url
from models.imagecheck import ImageRejected, RejectReason

HOP_DELAY_S = 0.9  # under the 1.5 s timeout alone; four hops take 3.6 s, over twice the timeout


class SlowRedirects(LoopbackSite):
    """/hop/N redirects to /hop/N+1 up to /hop/3, which is an image; every answer waits HOP_DELAY_S first."""

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        time.sleep(HOP_DELAY_S)
        hop = int(self.path.rsplit("/", 1)[-1])
        try:
            if hop < 3:
                self.send_response(302)
                self.send_header("Location", f"/hop/{hop + 1}")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_body(200, "image/png", image_bytes())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should


def test_redirect_hops_share_one_deadline():
    timeout_s = 1.5
    with serve_site(SlowRedirects) as url:
        # Each hop alone answers within the timeout; the four of them together (3.6 s) do not.
        started = time.monotonic()
        with pytest.raises(ImageRejected, match="took longer than 1.5 s") as refused:
            fetch_image_url(f"{url}/hop/0", timeout_s=timeout_s, max_bytes=10**6, allow_private=True)
        elapsed = time.monotonic() - started
    assert refused.value.reason == RejectReason.DOWNLOAD_FAILED
    assert elapsed < 2 * timeout_s


def test_a_short_redirect_chain_within_the_deadline_is_fetched():
    with serve_site(SlowRedirects) as url:
        assert fetch_image_url(f"{url}/hop/2", timeout_s=5, max_bytes=10**6, allow_private=True) == image_bytes()


# Each hides 127.0.0.1 (or another inside IPv4) in an IPv6 address; getaddrinfo resolves literals offline.
TEREDO_CLIENT_127_0_0_1 = "2001:0:4136:e378:8000:63bf:80ff:fffe"  # client bits are 127.0.0.1 XOR 0xffffffff
DISGUISED = [
    ("::127.0.0.1", "127.0.0.1"),  # IPv4-compatible
    ("::7f00:1", "127.0.0.1"),
    ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "10.0.0.1"),
    ("::ffff:0:127.0.0.1", "127.0.0.1"),  # SIIT
    ("64:ff9b::127.0.0.1", "127.0.0.1"),  # NAT64, well-known prefix
    ("64:ff9b::169.254.169.254", "169.254.169.254"),
    ("64:ff9b:1::127.0.0.1", "127.0.0.1"),  # NAT64, local-use prefix
    ("2002:7f00:0001::", "127.0.0.1"),  # 6to4
    ("2002:c0a8:0101::1", "192.168.1.1"),
    (TEREDO_CLIENT_127_0_0_1, "127.0.0.1"),
]


@pytest.mark.parametrize(("literal", "inner"), DISGUISED)
def test_embedded_ipv4_finds_the_hidden_address(literal, inner):
    assert embedded_ipv4(ipaddress.ip_address(literal)) == ipaddress.IPv4Address(inner)


@pytest.mark.parametrize(("literal", "inner"), DISGUISED)
def test_ipv6_forms_of_inside_addresses_are_refused(literal, inner):
    with pytest.raises(UnsafeUrl) as refused:
        check_url(f"http://[{literal}]/x.png", allow_private=False)
    assert str(ipaddress.ip_address(literal)) in refused.value.detail
    assert inner in refused.value.detail and "does not fetch from" in refused.value.detail


@pytest.mark.parametrize(
    "url",
    [
        "http://[::]/x.png",  # unspecified
        "http://0.0.0.0/x.png",
        "http://[::1]/x.png",
        "http://[ff02::1]/x.png",  # multicast
        "http://224.0.0.1/x.png",  # multicast, which ipaddress counts as global
        "http://240.0.0.1/x.png",  # reserved
        "http://192.0.0.8/x.png",  # IETF protocol assignments
        "http://[fec0::1]/x.png",  # deprecated site-local
        "http://[64:ff9b:1::808:808]/x.png",  # local-use NAT64 is never public, whatever it embeds
        "http://[2001:0:4136:e378:8000:63bf:f7f7:f7f7]/x.png",  # Teredo (client 8.8.8.8) is not global
    ],
)
def test_unspecified_multicast_and_reserved_addresses_are_refused(url):
    with pytest.raises(UnsafeUrl, match="does not fetch from"):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("literal", ["2606:4700::1111", "64:ff9b::8.8.8.8", "1.1.1.1"])
def test_public_addresses_pass_the_check(literal):
    host = f"[{literal}]" if ":" in literal else literal
    assert check_url(f"https://{host}/x.png", allow_private=False) == str(ipaddress.ip_address(literal))


def test_plain_ipv6_addresses_embed_nothing():
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1111")) is None
    assert embedded_ipv4(ipaddress.ip_address("::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("127.0.0.1")) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1/x.png", "Invalid IPv6 URL"),
        ("http://images.example:99999/x.png", "Port out of range"),
        ("http://127.0.0.1:1/a\x00b.png", "non-printable"),
    ],
)
def test_malformed_urls_are_refused_not_crashed_on(url, why):
    with pytest.raises(UnsafeUrl, match="malformed") as refused:
        fetch_image_url(url, timeout_s=1, max_bytes=10**6, allow_private=True)
    assert why in refused.value.detail


class HostEcho(LoopbackSite):
    """Remembers the Host header it was sent, and serves an image."""

    hosts: list[str] = []

    def do_GET(self):  # noqa: N802
        HostEcho.hosts.append(self.headers["Host"])
        self.send_body(200, "image/png", image_bytes())


def test_an_internationalised_host_is_sent_in_its_ascii_form(monkeypatch):
    import socket

    real_getaddrinfo = socket.getaddrinfo

    def resolve_to_loopback(host, *args, **kwargs):
        return real_getaddrinfo("127.0.0.1" if host == "bücher.example" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_to_loopback)
    HostEcho.hosts = []
    with serve_site(HostEcho) as url:
        port = url.rsplit(":", 1)[1]
        body = fetch_image_url(
            f"http://user:pw@bücher.example:{port}/x.png", timeout_s=5, max_bytes=10**6, allow_private=True
        )
    assert body == image_bytes()
    assert HostEcho.hosts == [f"xn--bcher-kva.example:{port}"]  # IDNA, and no credentials
