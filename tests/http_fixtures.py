"""A loopback HTTP server (127.0.0.1, ephemeral port, own thread) that imitates the two weight hosts.

* ``/uc?export=download&id=ID`` behaves like Google Drive for a large file today: it answers an HTML "can't scan
  this file for viruses" page whose form (GET to ``/download``) carries hidden ``id``, ``export``, ``confirm`` and
  ``uuid`` inputs; ``/download`` serves the bytes only with that exact ``uuid``.
* ``/uc-cookie?export=download&id=ID`` is the older Drive variant: a ``download_warning_*`` cookie holds a token
  and the bytes come only when ``&confirm=TOKEN`` is appended.
* ``/uc-quota?...`` answers Drive's "quota exceeded" HTML page with no way forward.
* ``/files/NAME`` serves a file plainly, as www.robots.ox.ac.uk does; ``/short/NAME`` announces the full
  length but closes the connection after half the bytes.

It also writes the synthetic weight files these hosts serve, in the official formats (spec 5.1, 5.2).
"""
import http.server
import shutil
import urllib.parse
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import torch

from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO, expected_shapes
from tests.loopback_http import LoopbackHttpServer
from tests.parity_recipes import gen_state_dict

_CONFIRM_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p>Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="{action}" method="get">
<input type="submit" id="uc-download-link" value="Download anyway"/>
<input type="hidden" name="id" value="{file_id}"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="{uuid}">
</form></body></html>"""
_COOKIE_PAGE = """<html><head><title>Google Drive - Virus scan warning</title></head>
<body><p>This file is too large for Google to scan for viruses. Download anyway?</p></body></html>"""
_QUOTA_PAGE = """<html><head><title>Google Drive - Quota exceeded</title></head>
<body><p>Too many users have viewed or downloaded this file recently.</p></body></html>"""
_COOKIE_TOKEN = "Xy9_token"


def write_mimamo_checkpoint(path: Path, legacy: bool = True, epoch: int = 13, prefix: str = "") -> Path:
    """Saves ``{'epoch': epoch, 'state_dict': seeded TwoStreamRNN tensors}`` as the training code did (about 10 MB).

    Args:
        path: where to write.
        legacy: use the pre-1.6 (non-zip) serialisation, as the official file probably does.
        epoch: the stored epoch.
        prefix: prepended to every key (e.g. "module." as DataParallel saves).
    """
    template = {key: torch.empty(shape) for key, shape in expected_shapes(MIMAMO).items()}
    state_dict = {prefix + key: value for key, value in gen_state_dict(template, 3003).items()}
    torch.save({"epoch": epoch, "state_dict": state_dict}, path, _use_new_zipfile_serialization=not legacy)
    return path


def backbone_tensors(compact: bool = True, num_batches_tracked: bool = True) -> Dict[str, torch.Tensor]:
    """Zero-valued tensors with every key and shape of the ResNet-50 FER+ state_dict.

    Args:
        compact: every float tensor is a stride-0 view of one shared element, so a saved file is ~40 KB; False
            gives real 95 MB of float32 zeros.
        num_batches_tracked: include the 53 int64 ``num_batches_tracked`` scalars.
    """
    one = torch.zeros(1)
    tensors = {}
    for key, shape in expected_shapes(BACKBONE).items():
        if key.endswith("num_batches_tracked"):
            if num_batches_tracked:
                tensors[key] = torch.zeros((), dtype=torch.int64)
        else:
            tensors[key] = one.expand(shape) if compact else torch.zeros(shape)
    return tensors


def write_backbone_weights(
    path: Path, legacy: bool = True, compact: bool = True, num_batches_tracked: bool = False
) -> Path:
    """Saves a plain backbone state_dict (see ``backbone_tensors``), by default as an old PyTorch export."""
    tensors = backbone_tensors(compact=compact, num_batches_tracked=num_batches_tracked)
    torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    return path


class WeightsHosts(LoopbackHttpServer):
    """Serves ``drive_files`` (Drive file id -> path) and ``plain_files`` (name -> path) on 127.0.0.1.

    Use as a context manager; ``requests`` lists every request path (with query) in arrival order.
    """

    def __init__(self, drive_files: Dict[str, Path], plain_files: Dict[str, Path]) -> None:
        self.drive_files = dict(drive_files)
        self.plain_files = dict(plain_files)
        self.requests: List[str] = []
        self._uuids: Dict[str, str] = {}
        hosts = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                hosts.requests.append(self.path)
                hosts._answer(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (quiet test output)
                pass

        super().__init__(Handler)

    def drive_url(self, file_id: str, variant: str = "uc") -> str:
        """The share link of a Drive file; ``variant`` is "uc" (form page), "uc-cookie" or "uc-quota"."""
        return f"{self.base_url}/{variant}?export=download&id={file_id}"

    def file_url(self, name: str, route: str = "files") -> str:
        """URL of a plainly served file; ``route`` "short" sends only half of it."""
        return f"{self.base_url}/{route}/{name}"

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(handler.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        file_id = query.get("id", "")
        if parts.path == "/uc" and file_id in self.drive_files:
            self._uuids[file_id] = str(uuid.uuid4())
            page = _CONFIRM_PAGE.format(action=f"{self.base_url}/download", file_id=file_id, uuid=self._uuids[file_id])
            _send_html(handler, page)
        elif parts.path == "/download" and file_id in self.drive_files:
            if query.get("confirm") == "t" and query.get("uuid") == self._uuids.get(file_id):
                _send_file(handler, self.drive_files[file_id])
            else:
                _send_html(handler, "<html><title>403 Forbidden</title></html>", status=403)
        elif parts.path == "/uc-cookie" and file_id in self.drive_files:
            cookie_ok = f"download_warning_1305_{file_id}={_COOKIE_TOKEN}" in (handler.headers.get("Cookie") or "")
            if query.get("confirm") == _COOKIE_TOKEN and cookie_ok:
                _send_file(handler, self.drive_files[file_id])
            else:
                cookie = f"download_warning_1305_{file_id}={_COOKIE_TOKEN}; Path=/"
                _send_html(handler, _COOKIE_PAGE, cookie=cookie)
        elif parts.path == "/uc-quota":
            _send_html(handler, _QUOTA_PAGE)
        elif parts.path.startswith("/files/") and parts.path[len("/files/") :] in self.plain_files:
            _send_file(handler, self.plain_files[parts.path[len("/files/") :]])
        elif parts.path.startswith("/short/") and parts.path[len("/short/") :] in self.plain_files:
            _send_file(handler, self.plain_files[parts.path[len("/short/") :]], fraction=0.5)
        else:
            _send_html(handler, "<html><title>404 Not Found</title></html>", status=404)


def _send_html(
    handler: http.server.BaseHTTPRequestHandler, page: str, status: int = 200, cookie: Optional[str] = None
) -> None:
    body = page.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    if cookie:
        handler.send_header("Set-Cookie", cookie)
    handler.end_headers()
    handler.wfile.write(body)


def _send_file(handler: http.server.BaseHTTPRequestHandler, path: Path, fraction: float = 1.0) -> None:
    """Sends ``path`` with its full Content-Length, but only the first ``fraction`` of its bytes."""
    size = path.stat().st_size
    handler.send_response(200)
    handler.send_header("Content-Type", "application/octet-stream")
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    with open(path, "rb") as stream:
        if fraction >= 1.0:
            shutil.copyfileobj(stream, handler.wfile, 1 << 20)
        else:
            handler.wfile.write(stream.read(int(size * fraction)))
            handler.close_connection = True
