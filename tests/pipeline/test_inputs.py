"""Input expansion: files, directories, globs and list files; every entry accounted for, duplicates by path."""
import os
import socket
import sys
from pathlib import Path

import pytest

from beam_pipeline.inputs import InputMatch, _resolve_line, expand_input, expand_inputs
from tests.unprivileged import run_without_permission_override


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.MOV", "c.avi", "notes.txt", "d.mkv.part"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "videos" / "nested").mkdir()
    (tmp_path / "videos" / "nested" / "e.mp4").write_bytes(b"x")
    (tmp_path / "other.webm").write_bytes(b"x")
    return tmp_path


def uris(matches) -> list:
    return [match.uri for match in matches]


def test_directory_gives_its_videos_case_insensitively_and_not_recursively(tree):
    matches = list(expand_input(str(tree / "videos")))
    assert matches == [InputMatch(str(tree / "videos" / name)) for name in ("a.mp4", "b.MOV", "c.avi")]


def test_directory_with_trailing_slash_and_extension_filter(tree):
    assert uris(expand_input(str(tree / "videos") + "/", [".avi"])) == [str(tree / "videos" / "c.avi")]


def test_glob_matches_files_whatever_the_extension_but_not_plain_folders(tree):
    assert uris(expand_input(str(tree / "videos" / "*"))) == sorted(
        str(tree / "videos" / name) for name in ("a.mp4", "b.MOV", "c.avi", "d.mkv.part", "notes.txt")
    )


def test_single_file_is_taken_as_is(tree):
    path = str(tree / "videos" / "d.mkv.part")
    assert list(expand_input(path)) == [InputMatch(path)]


def test_list_file_lines_resolve_against_the_list_folder_not_the_working_directory(tree, tmp_path, monkeypatch):
    listing = tree / "inputs.lst"
    listing.write_text(f"# my corpus\nother.webm\n\n  videos  \n{tree / 'videos' / '*.avi'}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert uris(expand_input(str(listing))) == [str(tree / "other.webm")] + [
        str(tree / "videos" / n) for n in ("a.mp4", "b.MOV", "c.avi")] + [str(tree / "videos" / "c.avi")]


def test_missing_list_line_fails_that_line_only_naming_line_and_list(tree):
    listing = tree / "corpus.txt"
    listing.write_text(f"{tree / 'videos' / 'a.mp4'}\nmissing.mp4\n{tree / 'other.webm'}\n")
    matches = list(expand_input(str(listing)))
    assert uris(matches) == [str(tree / "videos" / "a.mp4"), str(tree / "missing.mp4"), str(tree / "other.webm")]
    assert [match.error is None for match in matches] == [True, False, True]
    assert matches[1].error_stage == "match"
    assert matches[1].error == (f"FileNotFoundError: {tree / 'missing.mp4'}: no such file or directory "
                                f"(line 2 of {listing})")


def test_list_line_with_a_scheme_is_taken_as_it_is_and_remote_lists_resolve_remotely(tree):
    assert _resolve_line("gs://b/x.mp4", str(tree / "remote.txt")) == "gs://b/x.mp4"
    assert _resolve_line("x.mp4", "gs://b/lists/l.txt") == "gs://b/lists/x.mp4"


def test_same_file_given_three_ways_is_one_entry(tree, monkeypatch):
    monkeypatch.chdir(tree)
    os.symlink(tree / "videos" / "a.mp4", tree / "link.mp4")
    matches = expand_inputs([str(tree / "videos" / "a.mp4"), "./videos/../videos/a.mp4", "link.mp4"])
    assert matches == [InputMatch(str(tree / "videos" / "a.mp4"))]


def test_expand_inputs_drops_duplicates_keeping_first_occurrence(tree):
    matches = expand_inputs([str(tree / "videos" / "c.avi"), str(tree / "videos")])
    assert uris(matches) == [str(tree / "videos" / n) for n in ("c.avi", "a.mp4", "b.MOV")]


def test_broken_links_directories_and_special_files_named_like_videos_each_get_a_reason(tree):
    corpus = tree / "corpus"
    corpus.mkdir()
    os.symlink(corpus / "gone.mp4", corpus / "broken.mp4")
    (corpus / "folder.mp4").mkdir()
    os.mkfifo(corpus / "pipe.mp4")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(corpus / "socket.mp4"))
        matches = {Path(match.uri).name: match for match in expand_input(str(corpus))}
    assert sorted(matches) == ["broken.mp4", "folder.mp4", "pipe.mp4", "socket.mp4"]
    assert matches["broken.mp4"].error_stage == "match"
    assert "broken symbolic link" in matches["broken.mp4"].error and "gone.mp4" in matches["broken.mp4"].error
    assert matches["folder.mp4"].error.startswith("IsADirectoryError: ")
    assert "is a FIFO, not a regular file" in matches["pipe.mp4"].error
    assert "is a socket, not a regular file" in matches["socket.mp4"].error
    assert {match.error_stage for name, match in matches.items() if name != "broken.mp4"} == {"read"}


def test_unreadable_file_gets_a_permission_reason(tree):
    path = tree / "secret.mp4"
    path.write_bytes(b"x")
    path.chmod(0)
    code = ("import sys; from beam_pipeline.inputs import expand_input; "
            "match = next(expand_input(sys.argv[1])); print(match.error_stage, match.error)")
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "PATH": os.environ["PATH"]}
    done = run_without_permission_override([sys.executable, "-c", code, str(path)], env, tree, timeout_s=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"read PermissionError: {path}: cannot be opened for reading (Permission denied)"


@pytest.mark.parametrize(
    "relative, message",
    [
        ("missing.mp4", "no such file"),
        ("videos/*.flv", "glob matches no file"),
        ("videos/nested/", "no file with a video extension"),
        ("missing.txt", "no such list file"),
    ],
)
def test_unmatched_input_is_one_failed_entry_naming_it(tree, relative, message):
    uri = str(tree / relative)
    matches = list(expand_input(uri, [".avi"] if relative.startswith("videos/nested") else [".mp4"]))
    assert len(matches) == 1 and matches[0].error_stage == "match"
    assert message in matches[0].error and str(tree) in matches[0].error
