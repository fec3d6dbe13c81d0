"""Fetch, import, verify and locate the two official weight files (spec 5.1, 5.2; issue item 8).

The official SHA-256s are unknown (spec 14), so a file counts as verified when it loads with
``weights_only=True`` and has exactly the keys and shapes of the in-project models. Its SHA-256, size, source and
time are then recorded in ``<cache>/manifest.json``; users may pin expected hashes. Downloads go to a temporary
file in the cache directory and are renamed into place only after verification, so the cache never holds half
a file. The ``resnet50_ferplus_dag.py`` model definition the original imported is never downloaded (spec 10.2).
"""
import datetime
import html.parser
import http.client
import http.cookiejar
import http.cookies
import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from mimamo_ops import __version__
from mimamo_ops.errors import CheckpointError, WeightsFetchError
from mimamo_ops.model.checkpoints import (
    BACKBONE,
    DESCRIPTIONS,
    MIMAMO,
    PathLike,
    identify_state_dict,
    load_backbone_weights,
    load_mimamo_checkpoint,
    read_torch_file,
    sha256_file,
)
from mimamo_ops.runtime.cache_dirs import default_cache_dir

__all__ = [
    "BACKBONE_URL",
    "FILENAMES",
    "MIMAMO_URL",
    "OFFICIAL_URLS",
    "SHA256_ENV",
    "CachedFile",
    "fetch_weights",
    "identify_weights_file",
    "import_weights",
    "inspect_cache",
    "resolve_weights",
    "verify_weights_file",
]

logger = logging.getLogger(__name__)

MIMAMO_URL = "https://docs.google.com/uc?export=download&id=1Lb-Z9iJR7uCtIEa5CEtijyqevesO2tpq"
BACKBONE_URL = "http://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/resnet50_ferplus_dag.pth"
OFFICIAL_URLS = {MIMAMO: MIMAMO_URL, BACKBONE: BACKBONE_URL}
FILENAMES = {MIMAMO: "model_weights.pth.tar", BACKBONE: "resnet50_ferplus_dag.pth"}
KINDS = (MIMAMO, BACKBONE)
SHA256_ENV = {MIMAMO: "MIMAMO_CHECKPOINT_SHA256", BACKBONE: "MIMAMO_BACKBONE_SHA256"}
MANIFEST_NAME = "manifest.json"

_MAX_CONFIRM_PAGES = 3  # Google Drive answers large files with one "can't scan for viruses" page
_MAX_HTML_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class CachedFile:
    """What the cache holds for one weights file (see ``inspect_cache``).

    Attributes:
        kind: ``MIMAMO`` or ``BACKBONE``.
        path: where the file is (or would be).
        present: whether the file exists.
        size_bytes: its size, or None when absent.
        sha256: its current SHA-256, or None when absent.
        verified: present and its SHA-256 equals the one recorded when it was verified.
        source: URL or imported path recorded in the manifest, or None.
        recorded_at: ISO-8601 UTC time of the verification, or None.
    """

    kind: str
    path: Path
    present: bool
    size_bytes: Optional[int]
    sha256: Optional[str]
    verified: bool
    source: Optional[str]
    recorded_at: Optional[str]


def _cache_dir(cache_dir: Optional[PathLike]) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _manual_steps(kind: str, cache: Path) -> str:
    return (
        f"to install it by hand, download {OFFICIAL_URLS[kind]} on a machine with internet access, then run "
        f"`mimamo weights import FILE` or copy it to {cache / FILENAMES[kind]}"
    )


def _manual_steps_lines(kind: str, cache: Path) -> str:
    """The manual steps as two short indented lines, for a download error shown on several lines."""
    return (f"    by hand: download {OFFICIAL_URLS[kind]} on a machine with internet access,\n"
            f"    then run `mimamo weights import FILE` (or copy it to {cache / FILENAMES[kind]})")


def _now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _read_manifest(cache: Path) -> Dict[str, dict]:
    path = cache / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError(f"'files' is a {type(files).__name__}")
        return files
    except (ValueError, KeyError, TypeError) as error:
        logger.warning("%s: unreadable manifest (%s); treating every cached file as unverified", path, error)
        return {}


def _record(cache: Path, kind: str, path: Path, sha256: str, source: str) -> None:
    """Adds or replaces the manifest entry of ``path``; the manifest is rewritten atomically."""
    files = _read_manifest(cache)
    files[path.name] = {
        "kind": kind,
        "sha256": sha256,
        "size_bytes": path.stat().st_size,
        "source": source,
        "verified_at": _now_utc(),
    }
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=f".{MANIFEST_NAME}.", suffix=".part")
    with os.fdopen(fd, "w") as stream:
        json.dump({"version": 1, "files": files}, stream, indent=2, sort_keys=True)
    os.replace(tmp, cache / MANIFEST_NAME)


def _pinned_sha256(kind: str, pins: Optional[Mapping[str, Optional[str]]]) -> Optional[str]:
    value = (pins or {}).get(kind) or os.environ.get(SHA256_ENV[kind])
    return value.strip().lower() if value else None


def verify_weights_file(path: PathLike, kind: str, expected_sha256: Optional[str] = None) -> str:
    """Checks a weights file: pinned hash (if any), then a strict ``weights_only`` load of keys and shapes.

    Args:
        path: the file.
        kind: ``MIMAMO`` or ``BACKBONE``.
        expected_sha256: hex digest the file must have, or None.

    Returns:
        The file's hex SHA-256.

    Raises:
        WeightsFetchError: the SHA-256 differs from ``expected_sha256``.
        CheckpointError: the file is unreadable, unsafe or not that model's weights.
    """
    sha256 = sha256_file(path)
    if expected_sha256 and sha256 != expected_sha256.lower():
        raise WeightsFetchError(f"{path}: SHA-256 {sha256} differs from the pinned {expected_sha256.lower()}")
    if kind == MIMAMO:
        load_mimamo_checkpoint(path)
    else:
        load_backbone_weights(path)
    return sha256


def identify_weights_file(path: PathLike) -> str:
    """Says whether a file is the MIMAMO checkpoint or the backbone, by its keys (loaded ``weights_only``).

    Raises:
        CheckpointError: unreadable, unsafe, or neither.
    """
    obj = read_torch_file(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    keys = [str(key).removeprefix("module.") for key in obj] if isinstance(obj, Mapping) else []
    kind = identify_state_dict(dict.fromkeys(keys))
    if kind is None:
        raise CheckpointError(
            f"{path}: neither the MIMAMO checkpoint nor the ResNet-50 FER+ backbone "
            f"({type(obj).__name__} with {len(keys)} keys)"
        )
    return kind


class _ConfirmPageParser(html.parser.HTMLParser):
    """Collects the forms, links and title of an HTML page (Google Drive's download confirmation)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: List[Tuple[str, Dict[str, str]]] = []  # (action, hidden inputs)
        self.links: List[str] = []
        self.title = ""
        self._in_form = False
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, Optional[str]]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
            self._in_form = True
        elif tag == "input" and self._in_form and attributes.get("name"):
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")
        elif tag == "a" and attributes.get("href"):
            self.links.append(attributes["href"])
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _with_query(url: str, **params: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    query.update(params)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _confirm_url(page: bytes, page_url: str, set_cookies: Iterable[str]) -> Tuple[Optional[str], str]:
    """Finds where a Google Drive confirmation page leads.

    Handles the current page (a form to drive.usercontent.google.com/download with hidden id, export, confirm
    and uuid inputs), the older ``download_warning_*`` cookie whose value is appended as ``confirm=TOKEN``, and a
    plain link carrying ``confirm=``.

    Returns:
        (next URL or None, the page title for messages).
    """
    parser = _ConfirmPageParser()
    parser.feed(page.decode("utf-8", errors="replace"))
    title = " ".join(parser.title.split())
    for action, inputs in parser.forms:
        if "confirm" in inputs or "download" in action:
            base = urllib.parse.urljoin(page_url, action or page_url)
            return _with_query(base, **inputs), title
    for header in set_cookies:
        cookie = http.cookies.SimpleCookie()
        cookie.load(header)
        for name, morsel in cookie.items():
            if name.startswith("download_warning"):
                return _with_query(page_url, confirm=morsel.value), title
    for href in parser.links:
        if "confirm=" in href:
            return urllib.parse.urljoin(page_url, href), title
    return None, title


def _download(url: str, destination: Path, timeout_s: float) -> None:
    """Streams ``url`` into ``destination``, following Google Drive confirmation pages.

    Raises:
        WeightsFetchError: network/HTTP failure (naming the URL that failed and the reason), an HTML page that
            leads nowhere, or a short body.
    """
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    current = url
    for _ in range(_MAX_CONFIRM_PAGES + 1):
        request = urllib.request.Request(current, headers={"User-Agent": f"mimamo-beam/{__version__}"})
        try:
            with opener.open(request, timeout=timeout_s) as response:
                head = response.read(512)
                if response.headers.get_content_type() == "text/html" or head.lstrip()[:1] == b"<":
                    page = head + response.read(_MAX_HTML_BYTES)
                    cookies = response.headers.get_all("Set-Cookie") or []
                    following, title = _confirm_url(page, response.geturl(), cookies)
                    if following is None:
                        raise WeightsFetchError(
                            f"{current} sent an HTML page ({title or 'untitled'}) instead of the file, with no "
                            "download link in it (quota exceeded, or the link changed)"
                        )
                    logger.info("%s: following the download confirmation page", current)
                    current = following
                    continue
                expected_bytes = response.headers.get("Content-Length")
                with open(destination, "wb") as stream:
                    stream.write(head)
                    shutil.copyfileobj(response, stream, _CHUNK_BYTES)
                    written = stream.tell()
        except WeightsFetchError:
            raise
        except urllib.error.HTTPError as error:
            raise WeightsFetchError(f"cannot download {current}: HTTP {error.code} {error.reason}") from None
        except urllib.error.URLError as error:
            raise WeightsFetchError(f"cannot download {current}: {error.reason}") from None
        except (OSError, http.client.HTTPException) as error:  # timeouts, resets, short bodies
            raise WeightsFetchError(f"cannot download {current}: {error}") from None
        if expected_bytes is not None and written != int(expected_bytes):
            raise WeightsFetchError(f"cannot download {current}: got {written} of {expected_bytes} bytes")
        return
    raise WeightsFetchError(f"cannot download {url}: more than {_MAX_CONFIRM_PAGES} confirmation pages")


def _cached_and_verified(kind: str, cache: Path, pin: Optional[str]) -> bool:
    """True if the cache already holds a good copy of ``kind`` (re-verified; recorded if it was not)."""
    path = cache / FILENAMES[kind]
    if not path.is_file():
        return False
    entry = _read_manifest(cache).get(path.name, {})
    try:
        sha256 = sha256_file(path)
        if entry.get("sha256") == sha256 and (not pin or pin == sha256):
            logger.info("%s: already present and verified (sha256 %s)", path, sha256)
            return True
        verify_weights_file(path, kind, pin)
    except (CheckpointError, WeightsFetchError) as error:
        logger.warning("%s: cached copy rejected (%s); downloading it again", path, error)
        return False
    _record(cache, kind, path, sha256, entry.get("source") or "found in the cache")
    logger.info("%s: found in the cache and verified (sha256 %s)", path, sha256)
    return True


def _fetch_one(kind: str, url: str, cache: Path, pin: Optional[str], timeout_s: float) -> Path:
    final = cache / FILENAMES[kind]
    if _cached_and_verified(kind, cache, pin):
        return final
    logger.info("downloading the %s from %s", DESCRIPTIONS[kind], url)
    fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{final.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            _download(url, tmp, timeout_s)
        except WeightsFetchError as error:
            raise WeightsFetchError(f"{error}\n{_manual_steps_lines(kind, cache)}") from None
        try:
            sha256 = verify_weights_file(tmp, kind, pin)
        except CheckpointError as error:
            raise WeightsFetchError(f"{url}: the downloaded file was rejected: {error}") from None
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _record(cache, kind, final, sha256, url)
    logger.info("%s: downloaded and verified (sha256 %s)", final, sha256)
    return final


def fetch_weights(
    cache_dir: Optional[PathLike] = None,
    urls: Optional[Mapping[str, str]] = None,
    expected_sha256: Optional[Mapping[str, Optional[str]]] = None,
    timeout_s: float = 60.0,
) -> Dict[str, Path]:
    """Makes sure both weight files are in the cache and verified, downloading what is missing or bad.

    A present file whose SHA-256 matches the manifest is left alone (no network). Both files are attempted even
    if one fails.

    Args:
        cache_dir: the cache directory (created if needed); default ``default_cache_dir()``.
        urls: ``{MIMAMO: url, BACKBONE: url}`` overrides of ``OFFICIAL_URLS`` (mirrors, tests).
        expected_sha256: ``{kind: hex}`` pins; unset kinds fall back to ``$MIMAMO_CHECKPOINT_SHA256`` and
            ``$MIMAMO_BACKBONE_SHA256``.
        timeout_s: socket timeout per request, in seconds.

    Returns:
        ``{MIMAMO: path, BACKBONE: path}``.

    Raises:
        WeightsFetchError: a download failed or was rejected (the message names each URL, the reason and the
            manual steps); the cache keeps no partial file.
    """
    cache = _cache_dir(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, Path] = {}
    failures: List[str] = []
    for kind in KINDS:
        url = (urls or {}).get(kind) or OFFICIAL_URLS[kind]
        try:
            paths[kind] = _fetch_one(kind, url, cache, _pinned_sha256(kind, expected_sha256), timeout_s)
        except WeightsFetchError as error:
            failures.append(f"{DESCRIPTIONS[kind]}: {error}")
    if failures:
        raise WeightsFetchError("\n".join(failures))  # one failure per file, the manual steps on their own line
    return paths


def import_weights(
    files: Iterable[PathLike],
    cache_dir: Optional[PathLike] = None,
    expected_sha256: Optional[Mapping[str, Optional[str]]] = None,
) -> Dict[str, Path]:
    """Copies weight files obtained by hand into the cache, after recognising and verifying each.

    Args:
        files: paths of the MIMAMO checkpoint and/or the backbone, in any order and under any name.
        cache_dir: the cache directory (created if needed); default ``default_cache_dir()``.
        expected_sha256: ``{kind: hex}`` pins, as for ``fetch_weights``.

    Returns:
        ``{kind: cached path}`` for the files imported.

    Raises:
        CheckpointError: a file is unreadable, unsafe or neither model's weights, or two files are the same kind.
        WeightsFetchError: a pinned SHA-256 differs.
    """
    cache = _cache_dir(cache_dir)
    sources: Dict[str, Path] = {}
    for name in files:
        source = Path(name).expanduser()
        kind = identify_weights_file(source)
        if kind in sources:
            raise CheckpointError(f"{source}: a second {DESCRIPTIONS[kind]} (the first is {sources[kind]})")
        sources[kind] = source
    cache.mkdir(parents=True, exist_ok=True)
    imported: Dict[str, Path] = {}
    for kind, source in sources.items():
        sha256 = verify_weights_file(source, kind, _pinned_sha256(kind, expected_sha256))
        final = cache / FILENAMES[kind]
        if not (final.exists() and final.samefile(source)):
            fd, tmp_name = tempfile.mkstemp(dir=cache, prefix=f".{final.name}.", suffix=".part")
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                shutil.copyfile(source, tmp)
                if sha256_file(tmp) != sha256:
                    raise CheckpointError(f"{source}: the copy in {cache} differs from it (changed while copying?)")
                os.replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        _record(cache, kind, final, sha256, f"imported from {source.resolve()}")
        logger.info("%s: imported as %s (sha256 %s)", source, final, sha256)
        imported[kind] = final
    return imported


def inspect_cache(cache_dir: Optional[PathLike] = None) -> List[CachedFile]:
    """Describes both weight files in the cache (hashing what is present; nothing is loaded).

    Returns:
        One ``CachedFile`` per kind, MIMAMO first.
    """
    cache = _cache_dir(cache_dir)
    manifest = _read_manifest(cache) if cache.is_dir() else {}
    described = []
    for kind in KINDS:
        path = cache / FILENAMES[kind]
        entry = manifest.get(path.name, {})
        present = path.is_file()
        sha256 = sha256_file(path) if present else None
        described.append(
            CachedFile(
                kind=kind,
                path=path,
                present=present,
                size_bytes=path.stat().st_size if present else None,
                sha256=sha256,
                verified=present and entry.get("sha256") == sha256,
                source=entry.get("source"),
                recorded_at=entry.get("verified_at"),
            )
        )
    return described


def resolve_weights(
    checkpoint: Optional[PathLike], backbone: Optional[PathLike], cache_dir: Optional[PathLike] = None
) -> Tuple[Path, Path]:
    """Chooses the weight files to use: explicit paths win, else the cache.

    Args:
        checkpoint: path of the MIMAMO checkpoint, or None for the cached one.
        backbone: path of the ResNet-50 FER+ weights, or None for the cached one.
        cache_dir: the cache directory; default ``default_cache_dir()``.

    Returns:
        (checkpoint path, backbone path), both existing files (not yet loaded or verified).

    Raises:
        CheckpointError: an explicit path is not a file.
        WeightsFetchError: a file was not given and is not in the cache (says how to get it).
    """
    cache = _cache_dir(cache_dir)
    resolved = []
    for kind, explicit in ((MIMAMO, checkpoint), (BACKBONE, backbone)):
        if explicit is not None:
            path = Path(explicit).expanduser()
            if not path.is_file():
                raise CheckpointError(f"{path}: no such file (given as the {DESCRIPTIONS[kind]})")
        else:
            path = cache / FILENAMES[kind]
            if not path.is_file():
                raise WeightsFetchError(
                    f"no {DESCRIPTIONS[kind]}: none was given and {path} does not exist; run `mimamo weights fetch` "
                    f"to download it, or `mimamo weights import FILE` if you have it ({_manual_steps(kind, cache)})"
                )
        resolved.append(path)
    return resolved[0], resolved[1]
