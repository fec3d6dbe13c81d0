"""A threaded HTTP server on 127.0.0.1 at an ephemeral port, run in a thread of its own while used as a context
manager: the base of the test servers (``http_fixtures.WeightsHosts``, ``fault_proxy.FaultProxy``)."""
import http.server
import threading
from typing import Type


class LoopbackHttpServer:
    """Serves ``handler_class`` on 127.0.0.1; started by ``__enter__``, stopped and closed by ``__exit__``.

    Args:
        handler_class: the request handler.
    """

    def __init__(self, handler_class: Type[http.server.BaseHTTPRequestHandler]) -> None:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
