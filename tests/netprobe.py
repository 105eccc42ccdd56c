"""Raw-socket probes of an HTTP server's connection limits (shared by the worker and mirror tests)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

WAIT_S = 60.0  # an upper bound for "closed by the server", far above any idle timeout the tests set


def connect(url: str, source: str | None = None) -> socket.socket:
    """A TCP connection to the URL's server, from the loopback address `source` if given (every
    127.x address is this machine's, so one test can be several clients)."""
    parts = urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S,
                                 source_address=(source, 0) if source else None)
    return s


def half_request(url: str, source: str | None = None) -> socket.socket:
    """A connection that sent half of a request's headers and then nothing."""
    s = connect(url, source)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    return s


def closed_by_server(s: socket.socket) -> bool:
    """Read until the server closes the connection (True) or WAIT_S pass (False)."""
    try:
        while True:
            if not s.recv(65536):
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.close()


def read_to_end(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def raw_get(url: str, path: str, headers: str = "", source: str | None = None) -> tuple[int, bytes]:
    """One GET on a fresh connection (Connection: close): (status, whole response)."""
    s = connect(url, source)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = read_to_end(s)
    finally:
        s.close()
    return int(data.split(b" ", 2)[1]), data
