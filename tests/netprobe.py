"""Raw-socket probes of an HTTP server's connection limits (shared by the worker and mirror tests)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

WAIT_S = 60.0  # an upper bound for "closed by the server", far above any idle timeout the tests set


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port), timeout=WAIT_S)
    return s


def half_request(url: str) -> socket.socket:
    """A connection that sent half of a request's headers and then nothing."""
    s = connect(url)
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


def raw_get(url: str, path: str, headers: str = "") -> tuple[int, bytes]:
    """One GET on a fresh connection (Connection: close): (status, whole response)."""
    s = connect(url)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    finally:
        s.close()
    return int(data.split(b" ", 2)[1]), data
