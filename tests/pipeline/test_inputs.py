"""Input expansion: files, directories with an extension filter, globs and list files."""
from pathlib import Path

import pytest

from beam_pipeline.inputs import expand_input, expand_inputs


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    (tmp_path / "videos").mkdir()
    for name in ("a.mp4", "b.MOV", "c.avi", "notes.txt", "d.mkv.part"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    (tmp_path / "videos" / "nested").mkdir()
    (tmp_path / "videos" / "nested" / "e.mp4").write_bytes(b"x")
    (tmp_path / "other.webm").write_bytes(b"x")
    return tmp_path


def test_directory_gives_its_videos_case_insensitively_and_not_recursively(tree):
    videos = list(expand_input(str(tree / "videos")))
    assert videos == [str(tree / "videos" / name) for name in ("a.mp4", "b.MOV", "c.avi")]


def test_directory_with_trailing_slash_and_extension_filter(tree):
    videos = list(expand_input(str(tree / "videos") + "/", [".avi"]))
    assert videos == [str(tree / "videos" / "c.avi")]


def test_glob_matches_files_whatever_the_extension(tree):
    videos = list(expand_input(str(tree / "videos" / "*.*")))
    assert videos == sorted(str(tree / "videos" / name) for name in ("a.mp4", "b.MOV", "c.avi", "d.mkv.part",
                                                                        "notes.txt"))


def test_single_file_is_taken_as_is(tree):
    path = str(tree / "videos" / "d.mkv.part")
    assert list(expand_input(path)) == [path]


def test_list_file_expands_each_line_skipping_blanks_and_comments(tree):
    listing = tree / "inputs.lst"
    listing.write_text(f"# my corpus\n{tree / 'other.webm'}\n\n  {tree / 'videos'}  \n{tree / 'videos' / '*.avi'}\n")
    videos = list(expand_input(str(listing)))
    assert videos == [str(tree / "other.webm")] + [str(tree / "videos" / n) for n in ("a.mp4", "b.MOV", "c.avi")] + [
        str(tree / "videos" / "c.avi")
    ]


def test_expand_inputs_drops_duplicates_keeping_first_occurrence(tree):
    videos = expand_inputs([str(tree / "videos" / "c.avi"), str(tree / "videos")])
    assert videos == [str(tree / "videos" / n) for n in ("c.avi", "a.mp4", "b.MOV")]


@pytest.mark.parametrize(
    "relative, message",
    [
        ("missing.mp4", "no such file"),
        ("videos/*.flv", "glob matches no file"),
        ("videos/nested/", "no file with a video extension"),
        ("missing.txt", "no such list file"),
    ],
)
def test_unmatched_input_raises_file_not_found_naming_it(tree, relative, message):
    uri = str(tree / relative)
    with pytest.raises(FileNotFoundError, match=message) as caught:
        list(expand_input(uri, [".avi"] if relative.startswith("videos/nested") else [".mp4"]))
    assert str(tree) in str(caught.value)
