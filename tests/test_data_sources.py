"""imfuse.data.sources: folders, globs and URI list files through Beam filesystems."""

from __future__ import annotations

import pytest

from imfuse.data.sources import match_sources, read_uri_bytes
from imfuse.errors import DataError, ImageError
from imfuse.images import ImageLimits


@pytest.fixture()
def tree(tmp_path):
    for rel in ["a.jpg", "sub/b.png", "sub/deeper/c d ü.jpg", ".DS_Store", ".git/x.jpg", "sub/.hidden.jpg"]:
        path = tmp_path / "imgs" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode())
    return tmp_path / "imgs"


def test_folder_is_recursive_sorted_and_skips_hidden(tree):
    got = match_sources(str(tree))
    assert got == sorted(got)
    assert [p.split("imgs/")[1] for p in got] == ["a.jpg", "sub/b.png", "sub/deeper/c d ü.jpg"]
    assert match_sources(str(tree) + "/") == got


def test_glob(tree):
    assert [p.split("imgs/")[1] for p in match_sources(str(tree / "sub" / "*.png"))] == ["sub/b.png"]
    # Beam glob semantics: "**/" spans one or more folders; hidden ones are skipped.
    got = match_sources(str(tree / "**" / "*.jpg"))
    assert [p.split("imgs/")[1] for p in got] == ["sub/deeper/c d ü.jpg"]


def test_list_file_with_comments_relative_paths_and_urls(tree):
    listing = tree.parent / "list.txt"
    listing.write_text(f"# images\nimgs/a.jpg\n\n{tree / 'sub' / 'b.png'}\nhttps://example.com/x.jpg\n")
    got = match_sources(str(listing))
    assert got == sorted([str(tree / "a.jpg"), str(tree / "sub" / "b.png"), "https://example.com/x.jpg"])


def test_single_file(tree):
    assert match_sources(str(tree / "a.jpg")) == [str(tree / "a.jpg")]


@pytest.mark.parametrize("bad", ["missing_dir", "nothing/*.jpg"])
def test_no_match_is_a_data_error_naming_src(tmp_path, bad):
    src = str(tmp_path / bad)
    with pytest.raises(DataError, match="no such|matched no files") as info:
        match_sources(src)
    assert str(tmp_path) in str(info.value)


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="matched no files"):
        match_sources(str(tmp_path / "empty"))


def test_read_uri_bytes_caps_size(tree):
    assert read_uri_bytes(str(tree / "a.jpg")) == b"a.jpg"
    with pytest.raises(ImageError, match="limit"):
        read_uri_bytes(str(tree / "a.jpg"), ImageLimits(max_bytes=2))


def test_names_that_are_not_utf8_are_matched_and_flagged(tmp_path):
    import os

    from imfuse.data.sources import is_utf8, printable_uri

    os.makedirs(os.path.join(os.fsencode(tmp_path), b"dir\xfe"))
    for name in (b"ok \xc3\xbc.jpg", b"bad\xff.jpg", b"dir\xfe/inner.jpg"):
        with open(os.path.join(os.fsencode(tmp_path), name), "wb") as fh:
            fh.write(b"x")
    got = match_sources(str(tmp_path))  # matching itself never fails on them
    flagged = sorted(printable_uri(u)[len(str(tmp_path)) + 1:] for u in got if not is_utf8(u))
    assert flagged == ["bad\\xff.jpg", "dir\\xfe/inner.jpg"]
    assert [u for u in got if is_utf8(u)] == [str(tmp_path / "ok ü.jpg")]
    assert printable_uri("plain ü") == "plain ü"
