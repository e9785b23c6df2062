"""Turn a SRC argument (folder, glob or URI list file) into a sorted list of image URIs.

Matching goes through `apache_beam.io.filesystems`, so local paths, gs:// and s3://
work alike (given the Beam extras for those filesystems). http(s) URLs are allowed
only inside a list file and are fetched with the image I/O's URL rules.
"""

from __future__ import annotations

import posixpath
import urllib.parse

from imfuse.errors import DataError, ImageError
from imfuse.images import DEFAULT_LIMITS, ImageLimits, read_source_bytes

LIST_SUFFIXES = (".txt", ".lst", ".list", ".uris")
_GLOB_CHARS = set("*?[")


def _filesystems():
    from imfuse.beam_jobs import import_beam

    return import_beam().io.filesystems.FileSystems


def _is_http(uri: str) -> bool:
    return urllib.parse.urlparse(uri).scheme.lower() in ("http", "https")


def _hidden(uri: str, root: str) -> bool:
    """Dot files/folders below `root` (.DS_Store, .git, ...) are not user images."""
    rel = uri[len(root):] if uri.startswith(root) else posixpath.basename(uri)
    return any(part.startswith(".") for part in rel.replace("\\", "/").split("/") if part)


def _match(pattern: str) -> list[str]:
    fs = _filesystems()
    try:
        results = fs.match([pattern])
    except Exception as exc:  # noqa: BLE001 - BeamIOError wraps per-pattern failures
        raise DataError(f"cannot match '{pattern}': {exc}") from None
    return [m.path for r in results for m in r.metadata_list]


def _read_list(path: str) -> list[str]:
    fs = _filesystems()
    try:
        with fs.open(path) as fh:
            text = fh.read().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: URI list is not UTF-8 text") from None
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot read URI list ({exc})") from None
    uris = []
    base = posixpath.dirname(path)
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "://" not in line and not line.startswith("/"):
            line = fs.join(base, line) if base else line  # relative to the list file
        uris.append(line)
    return uris


def match_sources(src: str) -> list[str]:
    """Sorted, de-duplicated URIs for a folder, a glob, or a list file (.txt/.lst/...)."""
    if not src:
        raise DataError("empty SRC: give a folder, a glob or a file listing image URIs")
    fs = _filesystems()
    src = str(src)
    if any(ch in src for ch in _GLOB_CHARS):
        root = src[: min(src.index(ch) for ch in _GLOB_CHARS if ch in src)]
        root = root[: root.rfind("/") + 1]
        uris = [u for u in _match(src) if not _hidden(u, root)]
        what = "glob"
    elif src.lower().endswith(LIST_SUFFIXES) and fs.exists(src):
        uris = _read_list(src)
        what = "list file"
    elif fs.exists(src) and not _is_dir_like(src):
        uris = [src]  # a single image file
        what = "file"
    else:
        root = src.rstrip("/") + "/"
        if not fs.exists(src) and not _match(root + "**"):
            raise DataError(f"{src}: no such folder, file or matching glob")
        uris = [u for u in _match(root + "**") if not _hidden(u, root)]
        what = "folder"
    uris = sorted(set(uris))
    if not uris:
        raise DataError(f"{src}: {what} matched no files")
    return uris


def is_utf8(uri: str) -> bool:
    """False for a local name that is not valid UTF-8 (Python decodes it with surrogate
    escapes): Beam's string coder and the `source` feature cannot carry it."""
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_uri(uri: str) -> str:
    """`uri` with its undecodable bytes as \\xNN escapes: valid UTF-8 for logs and JSON."""
    try:
        raw = uri.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decoding produced
        return uri.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _is_dir_like(path: str) -> bool:
    if "://" in path:
        return path.endswith("/")
    import os

    return os.path.isdir(path)


def read_uri_bytes(uri: str, limits: ImageLimits = DEFAULT_LIMITS) -> bytes:
    """Bytes of one matched URI (Beam filesystem or http(s)), capped at `limits.max_bytes`."""
    if _is_http(uri) or "://" not in uri:
        return read_source_bytes(uri, limits)[0]
    from apache_beam.io.filesystem import CompressionTypes

    fs = _filesystems()
    try:
        with fs.open(uri, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
            data = fh.read(limits.max_bytes + 1)
    except Exception as exc:  # noqa: BLE001 - any filesystem failure is this file's problem
        raise ImageError(f"{uri}: cannot read ({exc})") from None
    if len(data) > limits.max_bytes:
        raise ImageError(f"{uri}: file is over the {limits.max_bytes}-byte limit")
    return data
