"""Downloading a content image (services/outreach/media.py): https only, public addresses only
(every resolved one and the one connected to), no redirects, a JPG or PNG within the size and
time limits, a file name with an extension; and content validation refusing a media_id."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from marshmallow import ValidationError

from services.outreach import media
from services.outreach.model import WeComPayloadSchema
from services.outreach.payloads import BadContent

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),  # loopback
        ("::1", False),
        ("10.0.0.5", False),  # private
        ("172.16.3.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # link-local (cloud metadata)
        ("fe80::1", False),
        ("224.0.0.1", False),  # multicast
        ("240.0.0.1", False),  # reserved
        ("0.0.0.0", False),  # noqa: S104 - unspecified
        ("100.64.0.1", False),  # shared (carrier-grade NAT)
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("fd00::1", False),  # unique local
    ],
)
def test_only_public_addresses_are_allowed(address, ok):
    assert media.public(address) is ok


def resolving(monkeypatch, *addresses: str) -> None:
    infos = [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
              (a, 443)) for a in addresses]  # fmt: skip
    monkeypatch.setattr(media.socket, "getaddrinfo", lambda *a, **k: infos)


@pytest.mark.parametrize(
    ("url", "addresses", "why"),
    [
        ("http://images.example/a.png", ("93.184.216.34",), "must be https"),
        ("https://127.0.0.1/a.png", ("127.0.0.1",), "not a public address"),
        ("https://metadata.example/a.png", ("169.254.169.254",), "not a public address"),
        # every resolved address counts, not just the first
        ("https://mixed.example/a.png", ("93.184.216.34", "10.0.0.5"), "not a public address"),
        ("ftp://images.example/a.png", (), "http(s) URL"),
    ],
)
def test_refused_before_any_connection(monkeypatch, url, addresses, why):
    resolving(monkeypatch, *addresses)
    monkeypatch.setattr(media.requests, "Session", None)  # nothing may be requested
    with pytest.raises(BadContent) as exc:
        media.fetch(url)
    assert why in str(exc.value)


class Handler(BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, tuple[int, dict[str, str], bytes]]] = {}

    def do_GET(self):
        status, headers, body = self.routes[self.path]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.mark.parametrize(
    ("path", "status", "headers", "body", "why"),
    [
        ("/moved.png", 302, {"Location": "http://169.254.169.254/"}, b"", "redirects"),
        ("/page.png", 200, {"Content-Type": "text/html"}, b"<html>" * 4, "not a JPG or PNG"),
        ("/none.png", 200, {}, PNG, "no content type"),
        ("/big.png", 200, {"Content-Type": "image/png",
                           "Content-Length": str(media.MAX_BYTES + 1)}, PNG, "over 10 MB"),
        ("/empty.png", 200, {"Content-Type": "image/png"}, b"", "empty"),
    ],
)  # fmt: skip
def test_what_the_server_answers_is_checked(server, path, status, headers, body, why):
    Handler.routes[path] = (status, headers, body)
    with pytest.raises(BadContent) as exc:
        media.fetch(server + path, allow_private=True)
    assert why in str(exc.value)


def test_an_image_arrives_and_gets_an_extension(server):
    Handler.routes["/img/logo"] = (200, {"Content-Type": "image/png; q=1"}, PNG)
    data, kind = media.fetch(server + "/img/logo", allow_private=True)
    assert (data, kind) == (PNG, "image/png")
    assert media.filename(server + "/img/logo", kind) == "logo.png"
    assert media.filename("https://x.example/a/photo.jpeg", "image/jpeg") == "photo.jpeg"
    assert media.filename("https://x.example/", "image/jpeg") == "image.jpg"


def test_the_address_connected_to_is_checked_too(server, monkeypatch):
    """A name that resolved to a public address at the check but connects to a private one
    (DNS rebinding) is refused at the connection."""
    monkeypatch.setattr(media, "_resolve_public", lambda host, port: None)
    port = server.rsplit(":", 1)[1]
    with pytest.raises(BadContent) as exc:
        media.fetch(f"https://127.0.0.1:{port}/a.png")
    assert "not a public address" in str(exc.value)


def test_the_download_has_a_total_deadline(server, monkeypatch):
    Handler.routes["/slow.png"] = (200, {"Content-Type": "image/png"}, PNG * 4000)
    ticks = iter(range(0, 10**6, 20))  # each reading of the clock: 20 s later
    monkeypatch.setattr(media.time, "monotonic", lambda: float(next(ticks)))
    monkeypatch.setattr(media, "DEADLINE_S", 30.0)
    with pytest.raises(BadContent) as exc:
        media.fetch(server + "/slow.png", allow_private=True)
    assert "took over 30 s" in str(exc.value)


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ({"url": "https://x.example/a.png"}, None),
        ({"pic_url": "https://wework.qpic.cn/a.png"}, None),
        ({"media_id": "3a8asd892asd8"}, "give the image's https url instead"),
        ({}, "a image attachment needs its image"),
    ],
)
def test_content_refuses_an_image_by_media_id(image, error):
    body = {"attachments": [{"msgtype": "image", "image": image}]}
    if error is None:
        WeComPayloadSchema().load(body)
        return
    with pytest.raises(ValidationError) as exc:
        WeComPayloadSchema().load(body)
    assert error in str(exc.value.messages)
