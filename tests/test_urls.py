"""URL-list imports against a real HTTP server on loopback."""

from __future__ import annotations

import time

import pytest
from conftest import LoopbackSite, distinct_images, serve_site

from db import images as image_db
from db.imports import list_rejections
from labeling.imports.urls import import_url_lists, read_url_list
from models.imagecheck import RejectReason

IMAGES = distinct_images(4)


class ImageSite(LoopbackSite):
    """Serves good images, a 404, a slow page, HTML posing as a JPEG and a flaky 500."""

    hits: dict[str, int] = {}

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        ImageSite.hits[self.path] = ImageSite.hits.get(self.path, 0) + 1
        if self.path.startswith("/img/"):
            self.send_body(200, "image/png", IMAGES[int(self.path.split("/")[-1].split(".")[0])])
        elif self.path == "/slow.jpg":
            time.sleep(2)
            self.send_body(200, "image/jpeg", IMAGES[0])
        elif self.path == "/fake.jpg":
            self.send_body(200, "image/jpeg", b"<!doctype html><html><body>Sign in to continue</body></html>")
        elif self.path == "/flaky.png":
            if ImageSite.hits[self.path] == 1:
                self.send_body(503, "text/plain", b"try again")
            else:
                self.send_body(200, "image/png", IMAGES[3])
        else:
            self.send_body(404, "text/plain", b"no such thing")


@pytest.fixture
def site():
    ImageSite.hits = {}
    with serve_site(ImageSite) as url:
        yield url


def write_lists(tmp_path, site):
    cats = tmp_path / "cat.txt"
    cats.write_text(f"{site}/img/0.png\n{site}/img/1.png\n\n# a comment\n{site}/missing.png\n{site}/fake.jpg\n")
    dogs = tmp_path / "dog.csv"
    dogs.write_text(f"url,note\n{site}/img/2.png,good\n{site}/slow.jpg,slow\n{site}/flaky.png,flaky\nftp://x/y.png,\n")
    return [cats, dogs]


@pytest.mark.parametrize("workers", [0, 4])
def test_url_lists_import_with_failures_recorded(context, tmp_path, site, workers):
    summary = import_url_lists(context, write_lists(tmp_path, site), workers=workers, timeout_s=0.5, retries=1)
    assert summary.added == 4
    reasons = {r.item.removeprefix(site): r.reason for r in summary.rejected}
    assert reasons == {
        "/missing.png": RejectReason.DOWNLOAD_FAILED,
        "/fake.jpg": RejectReason.NOT_AN_IMAGE,
        "/slow.jpg": RejectReason.DOWNLOAD_FAILED,
        "ftp://x/y.png": RejectReason.DOWNLOAD_FAILED,
    }
    details = {r.item.removeprefix(site): r.detail for r in list_rejections(context.database, summary.batch_id)}
    assert "404" in details["/missing.png"]
    assert "0.5 s" in details["/slow.jpg"] and "2 tries" in details["/slow.jpg"]
    assert ImageSite.hits["/flaky.png"] == 2  # the 503 was retried
    assert ImageSite.hits["/missing.png"] == 1  # a 404 is not
    by_source = {r.source: r.label for r in image_db.iter_active_labeled(context.database)}
    assert by_source == {
        f"{site}/img/0.png": "cat",
        f"{site}/img/1.png": "cat",
        f"{site}/img/2.png": "dog",
        f"{site}/flaky.png": "dog",
    }


def test_byte_cap_stops_a_large_download(tmp_path, site, database_url):
    from conftest import open_context

    context = open_context(tmp_path / "data", database_url, max_image_bytes=50)
    (tmp_path / "cat.txt").write_text(f"{site}/img/0.png\n")
    summary = import_url_lists(context, [tmp_path / "cat.txt"], workers=2, timeout_s=2, retries=0)
    assert [r.reason for r in summary.rejected] == [RejectReason.TOO_LARGE]
    assert image_db.count_images(context.database) == 0
    context.database.dispose()


def test_missing_list_file_is_recorded(context, tmp_path):
    summary = import_url_lists(context, [tmp_path / "nope.txt"], workers=1)
    assert summary.added == 0 and [r.reason for r in summary.rejected] == [RejectReason.DOWNLOAD_FAILED]


def test_read_url_list_takes_plain_and_csv(tmp_path):
    listing = tmp_path / "x.csv"
    listing.write_text("url,title\nhttps://a/1.jpg,one\n\n# skipped\nhttps://a/2.jpg\nid7,https://a/3.jpg\n")
    assert read_url_list(listing) == ["https://a/1.jpg", "https://a/2.jpg", "https://a/3.jpg"]


def test_classify_url_connects_to_the_address_it_checked(site, monkeypatch):
    """DNS rebinding: the name resolves to a public address when checked, then to loopback. Loupe must
    connect to the address it checked (unreachable here), never resolve again and reach loopback."""
    import socket

    from labeling.imports.safe_fetch import fetch_image_url
    from models.imagecheck import ImageRejected

    real_getaddrinfo = socket.getaddrinfo
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("203.0.113.7", 80))]])
    # 203.0.113.7 is TEST-NET-3 and not global, so the test allows it by pretending it is public.
    monkeypatch.setattr("ipaddress.IPv4Address.is_global", property(lambda self: str(self) == "203.0.113.7"))

    def rebinding(host, *args, **kwargs):
        if host == "images.example":
            return next(answers, real_getaddrinfo("127.0.0.1", *args, **kwargs))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = site.rsplit(":", 1)[1]
    with pytest.raises(ImageRejected) as refused:
        fetch_image_url(f"http://images.example:{port}/img/0.png", timeout_s=1, max_bytes=10**6, allow_private=False)
    assert refused.value.reason == RejectReason.DOWNLOAD_FAILED
    assert ImageSite.hits == {}  # the loopback site was never reached
