"""A loopback HTTP proxy (127.0.0.1, ephemeral port, own threads) in front of a storage server that answers
``503 Service Unavailable`` to chosen requests, as S3 and Cloud Storage do during an outage.

Every request is forwarded as it came (method, path, headers, body) unless a rule matches it: a rule names a
method and a path fragment and how many of the matching requests fail (``None``: all, until the rule is
removed). ``requests`` lists ``(method, path, status)`` of every request in arrival order.
"""
import http.client
import http.server
import threading
import urllib.parse
from typing import Dict, List, Optional, Tuple

from tests.loopback_http import LoopbackHttpServer

_S3_SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>ServiceUnavailable</Code>'
                 b'<Message>Please reduce your request rate.</Message></Error>')
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


class FaultProxy(LoopbackHttpServer):
    """Forwards to ``target`` (``http://host:port``); use as a context manager.

    Args:
        target: the storage server's URL.
    """

    def __init__(self, target: str) -> None:
        parsed = urllib.parse.urlparse(target)
        self._target = (parsed.hostname, parsed.port)
        self._rules: Dict[Tuple[str, str], Optional[int]] = {}
        self._lock = threading.Lock()
        self.requests: List[Tuple[str, str, int]] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                proxy._forward(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815 (http.server's names)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (quiet test output)
                pass

        super().__init__(Handler)

    def fail(self, method: str, path_fragment: str, times: Optional[int] = None) -> None:
        """Answers 503 to the next ``times`` requests with ``method`` whose path holds ``path_fragment`` (every
        one while ``times`` is None)."""
        with self._lock:
            self._rules[(method, path_fragment)] = times

    def heal(self) -> None:
        """Removes every rule: all requests pass again."""
        with self._lock:
            self._rules.clear()

    def count(self, method: str, path_fragment: str, status: Optional[int] = None) -> int:
        """Requests seen with ``method`` whose path holds ``path_fragment`` (and answered ``status``)."""
        return sum(1 for seen_method, path, seen_status in self.requests
                   if seen_method == method and path_fragment in path and status in (None, seen_status))

    def _should_fail(self, method: str, path: str) -> bool:
        with self._lock:
            for (rule_method, fragment), times in self._rules.items():
                if rule_method == method and fragment in urllib.parse.unquote(path):
                    if times is None:
                        return True
                    if times > 0:
                        self._rules[(rule_method, fragment)] = times - 1
                        return True
        return False

    def _forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if self._should_fail(handler.command, handler.path):
            self.requests.append((handler.command, urllib.parse.unquote(handler.path), 503))
            handler.send_response(503)
            handler.send_header("Content-Type", "application/xml")
            handler.send_header("Content-Length", str(len(_S3_SLOW_DOWN)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(_S3_SLOW_DOWN)
            return
        connection = http.client.HTTPConnection(*self._target, timeout=60)
        try:
            headers = {name: value for name, value in handler.headers.items() if name.lower() not in _HOP_BY_HOP}
            connection.request(handler.command, handler.path, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        self.requests.append((handler.command, urllib.parse.unquote(handler.path), response.status))
        handler.send_response(response.status)
        for name, value in response.getheaders():  # a HEAD answer keeps its Content-Length: the object's size
            if name.lower() not in _HOP_BY_HOP and (name.lower() != "content-length" or handler.command == "HEAD"):
                handler.send_header(name, value)
        if handler.command != "HEAD":
            handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(payload)
