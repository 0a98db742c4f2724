"""download-apogee: streamed, resumable, verified downloads, against a local HTTP server (no internet)."""
from __future__ import annotations

import hashlib
import io
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from astropy.table import Table

from starfm import sas_download
from starfm.sas_download import DownloadError, check_fits, cli, download, fits_row_count

N_ROWS = 300


def small_fits() -> bytes:
    buf = io.BytesIO()
    Table({"APOGEE_ID": [f"2M{i:08d}" for i in range(N_ROWS)],
           "TEFF": np.linspace(4000, 5000, N_ROWS)}).write(buf, format="fits")
    return buf.getvalue()


PAYLOAD = small_fits()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` with optional Range support and scripted failures.

    Per request i: ``server.statuses[i]`` (if set) answers that status with no body;
    ``server.drop_after[i]`` (if set) sends only that many body bytes and closes the connection.
    """

    def log_message(self, *args):       # keep pytest output clean
        pass

    def do_GET(self):
        srv = self.server
        i = len(srv.seen)
        srv.seen.append(dict(self.headers))
        status = srv.statuses[i] if i < len(srv.statuses) else None
        if status:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload, start = srv.payload, 0
        rng = self.headers.get("Range")
        if rng and srv.honour_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(payload)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        drop = srv.drop_after[i] if i < len(srv.drop_after) else None
        self.wfile.write(body if drop is None else body[:drop])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.payload, srv.honour_range, srv.statuses, srv.drop_after, srv.seen = PAYLOAD, True, [], [], []
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/allStar-test.fits"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


FAST = dict(retries=3, backoff=0.0, timeout=5.0, chunk_size=1024)


def test_full_download(server, tmp_path):
    out = tmp_path / "sub" / "allStar.fits"
    assert download(server.url, out, expect_rows=N_ROWS, **FAST) == out
    assert out.read_bytes() == PAYLOAD
    assert not (tmp_path / "sub" / "allStar.fits.part").exists()
    assert len(server.seen) == 1 and "Range" not in server.seen[0]
    assert fits_row_count(out) == N_ROWS


def test_truncated_transfer_is_resumed_with_range(server, tmp_path, caplog):
    server.drop_after = [3000]                       # first response dies after 3000 bytes
    out = tmp_path / "allStar.fits"
    caplog.set_level(logging.WARNING)
    download(server.url, out, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert len(server.seen) == 2
    rng = server.seen[1]["Range"]
    resumed_at = int(rng.removeprefix("bytes=").rstrip("-"))
    # urllib3 may drop the last partial read when it detects the short body, so the resume
    # point is at most the 3000 bytes sent, and more than nothing
    assert rng == f"bytes={resumed_at}-" and 0 < resumed_at <= 3000
    assert "connection lost" in caplog.text or "ended after" in caplog.text


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, caplog):
    server.honour_range, server.drop_after = False, [3000]
    out = tmp_path / "allStar.fits"
    caplog.set_level(logging.WARNING)
    download(server.url, out, **FAST)
    assert out.read_bytes() == PAYLOAD               # not the first bytes twice
    assert "Range" in server.seen[1] and "ignored Range" in caplog.text


def test_complete_part_file_from_a_crash_is_finished(server, tmp_path):
    out = tmp_path / "allStar.fits"
    (tmp_path / "allStar.fits.part").write_bytes(PAYLOAD)   # crashed after the last byte
    download(server.url, out, **FAST)
    assert out.read_bytes() == PAYLOAD
    assert server.seen[0]["Range"] == f"bytes={len(PAYLOAD)}-"   # answered 416, nothing re-sent


@pytest.mark.parametrize("payload, message", [
    (b"<html><body>502 Bad Gateway</body></html>" * 100, "not a FITS file"),
    (PAYLOAD[:-100], "not a multiple of 2880"),
])
def test_corrupt_payload_is_rejected_and_nothing_left(server, tmp_path, payload, message):
    server.payload = payload
    out = tmp_path / "allStar.fits"
    with pytest.raises(DownloadError, match=message):
        download(server.url, out, **FAST)
    assert list(tmp_path.iterdir()) == []            # neither --out nor a .part to resume onto


def test_checksums_and_row_count(server, tmp_path):
    out = tmp_path / "a.fits"
    good = hashlib.sha256(PAYLOAD).hexdigest()
    download(server.url, out, sha256=good, md5=hashlib.md5(PAYLOAD).hexdigest(), **FAST)
    check_fits(out, expect_rows=N_ROWS)
    with pytest.raises(DownloadError, match="NAXIS2 = 300 rows, expected 733901"):
        check_fits(out, expect_rows=733901)
    with pytest.raises(DownloadError, match="sha256"):
        download(server.url, tmp_path / "b.fits", sha256="0" * 64, **FAST)
    assert not (tmp_path / "b.fits").exists()


def test_retries_with_backoff_then_give_up(server, tmp_path, monkeypatch):
    waits = []
    monkeypatch.setattr(sas_download.time, "sleep", waits.append)
    server.statuses = [503] * 10
    with pytest.raises(DownloadError, match=r"allStar-test.fits: giving up after 3 .*HTTP 503.*0 bytes"):
        download(server.url, tmp_path / "a.fits", retries=2, backoff=0.5, timeout=5.0)
    assert waits == [0.5, 1.0]                        # exponential back-off
    assert len(server.seen) == 3
    # transient errors followed by success
    server.seen.clear()
    server.statuses = [503, 500]
    waits.clear()
    download(server.url, tmp_path / "a.fits", retries=2, backoff=0.5, timeout=5.0)
    assert len(server.seen) == 3 and (tmp_path / "a.fits").read_bytes() == PAYLOAD


def test_permanent_http_error_and_refused_connection(server, tmp_path):
    server.statuses = [404]
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(server.url, tmp_path / "a.fits", **FAST)
    assert len(server.seen) == 1                      # a 404 is not retried
    with socket.socket() as s:                        # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}.*giving up after 2"):
        download(f"http://127.0.0.1:{port}/x.fits", tmp_path / "b.fits", retries=1, backoff=0.0,
                 timeout=2.0)


def test_cli(server, tmp_path, capsys):
    out = tmp_path / "allStar.fits"
    assert cli(["--url", server.url, "--out", str(out), "--expect-rows", str(N_ROWS),
                "--backoff", "0", "--log", str(tmp_path / "dl.log")]) == 0
    assert out.read_bytes() == PAYLOAD
    assert cli(["--url", server.url, "--out", str(tmp_path / "b.fits"), "--expect-rows", "5",
                "--backoff", "0"]) == 1
    assert "expected 5" in capsys.readouterr().err and not (tmp_path / "b.fits").exists()
