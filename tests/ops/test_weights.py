"""``mimamo weights fetch|import|show`` and weight resolution, against loopback imitations of both hosts."""
import json
import socket
from pathlib import Path

import pytest
import torch

from beam_pipeline.cli import main as cli
from mimamo_ops.errors import CheckpointError, WeightsFetchError
from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO, sha256_file
from mimamo_ops.runtime.cache_dirs import CACHE_DIR_ENV, default_cache_dir
from mimamo_ops.weights.cache import (
    FILENAMES,
    SHA256_ENV,
    fetch_weights,
    import_weights,
    inspect_cache,
    resolve_weights,
)
from tests.http_fixtures import WeightsHosts, write_backbone_weights, write_mimamo_checkpoint

DRIVE_ID = "1Lb-test-file-id"
BACKBONE_NAME = FILENAMES[BACKBONE]


@pytest.fixture(autouse=True)
def _no_pins_from_environment(monkeypatch):
    for name in SHA256_ENV.values():
        monkeypatch.delenv(name, raising=False)


def main(argv):
    """``mimamo`` with only the ``weights`` sub-command registered (the others import Beam and are tested apart)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "COMMAND_MODULES", {"weights": "weights"})
        return cli.main(argv)


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """The two files in their likely official formats; the backbone is full size (95 MB of float32 zeros)."""
    folder = tmp_path_factory.mktemp("official")
    return {
        MIMAMO: write_mimamo_checkpoint(folder / FILENAMES[MIMAMO], legacy=True),
        BACKBONE: write_backbone_weights(folder / BACKBONE_NAME, legacy=True, compact=False),
    }


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """Same keys and shapes, but the backbone is a compact (~40 KB) file."""
    folder = tmp_path_factory.mktemp("small")
    return {
        MIMAMO: write_mimamo_checkpoint(folder / "checkpoint_from_a_colleague.bin", legacy=False),
        BACKBONE: write_backbone_weights(folder / "ferplus.pth", legacy=False, num_batches_tracked=True),
    }


@pytest.fixture
def hosts(official_files):
    with WeightsHosts({DRIVE_ID: official_files[MIMAMO]}, {BACKBONE_NAME: official_files[BACKBONE]}) as server:
        yield server


def _closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/uc?export=download&id={DRIVE_ID}"


def _leftovers(cache: Path):
    return sorted(path.name for path in cache.iterdir() if path.name.endswith(".part"))


def _fetch_args(cache: Path, mimamo_url: str, backbone_url: str):
    return ["weights", "fetch", "--cache-dir", str(cache), "--mimamo-url", mimamo_url, "--backbone-url", backbone_url]


def test_fetch_follows_drive_confirmation_and_records_manifest(tmp_path, hosts, official_files, capsys):
    cache = tmp_path / "cache"
    code = main(_fetch_args(cache, hosts.drive_url(DRIVE_ID), hosts.file_url(BACKBONE_NAME)))
    assert code == 0
    for kind, source in official_files.items():
        assert (cache / FILENAMES[kind]).read_bytes() == source.read_bytes()
    assert [path.split("?")[0] for path in hosts.requests] == ["/uc", "/download", f"/files/{BACKBONE_NAME}"]
    manifest = json.loads((cache / "manifest.json").read_text())["files"]
    assert manifest[FILENAMES[MIMAMO]]["sha256"] == sha256_file(official_files[MIMAMO])
    assert manifest[FILENAMES[MIMAMO]]["source"] == hosts.drive_url(DRIVE_ID)
    assert manifest[BACKBONE_NAME]["size_bytes"] == official_files[BACKBONE].stat().st_size
    assert manifest[BACKBONE_NAME]["kind"] == BACKBONE
    assert _leftovers(cache) == []
    assert str(cache / BACKBONE_NAME) in capsys.readouterr().out


def test_second_fetch_is_a_no_op(tmp_path, hosts):
    cache = tmp_path / "cache"
    args = _fetch_args(cache, hosts.drive_url(DRIVE_ID), hosts.file_url(BACKBONE_NAME))
    assert main(args) == 0
    requests, stamps = list(hosts.requests), {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert main(args) == 0
    assert hosts.requests == requests
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps


def test_fetch_follows_the_older_cookie_confirmation(tmp_path, hosts, official_files):
    urls = {MIMAMO: hosts.drive_url(DRIVE_ID, "uc-cookie"), BACKBONE: hosts.file_url(BACKBONE_NAME)}
    paths = fetch_weights(tmp_path, urls=urls)
    assert paths[MIMAMO].read_bytes() == official_files[MIMAMO].read_bytes()
    assert [path.split("?")[0] for path in hosts.requests[:2]] == ["/uc-cookie", "/uc-cookie"]
    assert "confirm=" in hosts.requests[1]


def test_wrong_file_served_is_rejected_and_leaves_nothing(tmp_path, hosts, capsys):
    cache = tmp_path / "cache"
    code = main(_fetch_args(cache, hosts.file_url(BACKBONE_NAME), hosts.file_url(BACKBONE_NAME)))
    assert code == 2
    error = capsys.readouterr().err
    assert "the downloaded file was rejected" in error
    assert "looks like the ResNet-50 FER+ backbone, not a MIMAMO checkpoint" in error
    assert not (cache / FILENAMES[MIMAMO]).exists()
    assert (cache / BACKBONE_NAME).exists()  # the other file is still fetched
    assert _leftovers(cache) == []


def test_offline_error_names_url_reason_and_manual_steps(tmp_path, capsys):
    cache = tmp_path / "cache"
    url = _closed_port_url()
    code = main(_fetch_args(cache, url, url.replace("/uc?", "/b?")))
    assert code == 2
    error = capsys.readouterr().err
    assert f"cannot download {url}: [Errno 111] Connection refused" in error
    assert "mimamo weights import FILE" in error
    assert str(cache / FILENAMES[MIMAMO]) in error and str(cache / BACKBONE_NAME) in error
    assert list(cache.iterdir()) == []


def test_short_download_is_rejected_and_leaves_nothing(tmp_path, hosts):
    urls = {MIMAMO: hosts.drive_url(DRIVE_ID), BACKBONE: hosts.file_url(BACKBONE_NAME, route="short")}
    with pytest.raises(WeightsFetchError, match=f"cannot download {hosts.file_url(BACKBONE_NAME, route='short')}: "):
        fetch_weights(tmp_path, urls=urls)
    assert not (tmp_path / BACKBONE_NAME).exists() and (tmp_path / FILENAMES[MIMAMO]).exists()
    assert _leftovers(tmp_path) == []


def test_drive_quota_page_is_reported(tmp_path, hosts):
    urls = {MIMAMO: hosts.drive_url(DRIVE_ID, "uc-quota"), BACKBONE: hosts.file_url(BACKBONE_NAME)}
    with pytest.raises(WeightsFetchError, match="HTML page \\(Google Drive - Quota exceeded\\) instead of the file"):
        fetch_weights(tmp_path, urls=urls)
    assert not (tmp_path / FILENAMES[MIMAMO]).exists()


def test_pinned_sha256_mismatch_is_an_error(tmp_path, hosts, official_files, monkeypatch):
    urls = {MIMAMO: hosts.drive_url(DRIVE_ID), BACKBONE: hosts.file_url(BACKBONE_NAME)}
    monkeypatch.setenv(SHA256_ENV[BACKBONE], "0" * 64)
    good = sha256_file(official_files[MIMAMO])
    with pytest.raises(WeightsFetchError, match="differs from the pinned 0000") as info:
        fetch_weights(tmp_path, urls=urls, expected_sha256={MIMAMO: good.upper()})
    assert "MIMAMO checkpoint" not in str(info.value)
    assert (tmp_path / FILENAMES[MIMAMO]).exists() and not (tmp_path / BACKBONE_NAME).exists()


def test_corrupt_cached_file_is_downloaded_again(tmp_path, hosts, official_files):
    urls = {MIMAMO: hosts.drive_url(DRIVE_ID), BACKBONE: hosts.file_url(BACKBONE_NAME)}
    fetch_weights(tmp_path, urls=urls)
    (tmp_path / BACKBONE_NAME).write_bytes(b"\x80\x02garbage")
    fetch_weights(tmp_path, urls=urls)
    assert (tmp_path / BACKBONE_NAME).read_bytes() == official_files[BACKBONE].read_bytes()


def test_import_recognises_files_then_show_reports_them(tmp_path, small_files, capsys):
    cache = tmp_path / "cache"
    assert main(["weights", "show", "--cache-dir", str(cache)]) == 1
    assert capsys.readouterr().out.count("missing: run `mimamo weights fetch`") == 2

    files = [str(small_files[BACKBONE]), str(small_files[MIMAMO])]
    assert main(["weights", "import", *files, "--cache-dir", str(cache)]) == 0
    for kind, source in small_files.items():
        assert (cache / FILENAMES[kind]).read_bytes() == source.read_bytes()
    capsys.readouterr()

    assert main(["weights", "show", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    for kind, source in small_files.items():
        assert f"sha256: {sha256_file(source)}" in out
        assert f"imported from {source.resolve()}" in out
    assert out.count("status: verified") == 2


def test_show_flags_a_file_changed_after_verification(tmp_path, small_files):
    import_weights([small_files[MIMAMO]], tmp_path)
    (tmp_path / FILENAMES[BACKBONE]).write_bytes(small_files[BACKBONE].read_bytes())  # copied by hand
    with open(tmp_path / FILENAMES[MIMAMO], "ab") as stream:
        stream.write(b"tampered")
    entries = {entry.kind: entry for entry in inspect_cache(tmp_path)}
    assert entries[MIMAMO].present and not entries[MIMAMO].verified
    assert entries[BACKBONE].present and not entries[BACKBONE].verified and entries[BACKBONE].source is None


def test_import_rejects_unrelated_and_duplicate_files(tmp_path, small_files):
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(3, 4), "fc.bias": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="other.pth: neither the MIMAMO checkpoint nor the ResNet-50 FER\\+"):
        import_weights([other], tmp_path / "cache")
    with pytest.raises(CheckpointError, match="a second ResNet-50 FER\\+ backbone"):
        import_weights([small_files[BACKBONE], small_files[BACKBONE]], tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_resolve_prefers_explicit_paths_then_cache(tmp_path, small_files):
    with pytest.raises(WeightsFetchError, match="run `mimamo weights fetch`"):
        resolve_weights(None, None, cache_dir=tmp_path)
    import_weights(small_files.values(), tmp_path)
    assert resolve_weights(None, None, cache_dir=tmp_path) == (tmp_path / FILENAMES[MIMAMO], tmp_path / BACKBONE_NAME)
    assert resolve_weights(small_files[MIMAMO], None, cache_dir=tmp_path)[0] == small_files[MIMAMO]
    with pytest.raises(CheckpointError, match="nope.pth: no such file \\(given as the ResNet-50 FER\\+ backbone\\)"):
        resolve_weights(None, tmp_path / "nope.pth", cache_dir=tmp_path)


def test_cache_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.delenv(CACHE_DIR_ENV)
    assert default_cache_dir().name == "mimamo"
