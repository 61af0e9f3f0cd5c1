"""Reading customers' package archives (zip, or tar compressed with zstd) without trusting them.

Threat model: a package comes from an authenticated but untrusted client. It may try to write
outside the destination (absolute or `..` names, Windows drives, links, devices), to exhaust
memory, disk or CPU (zip bombs, overlapping entries, endless or crafted tar headers, millions of
entries), or to crash the parsers with corrupt data. So every entry is streamed in bounded chunks
and counted by the bytes it really produces, every library error becomes `ArchiveRefused` with a
message meant for the client, and nothing is written outside `destination`, which is left empty
when the package is refused.

Entry names: only `/` separates; a name containing `\\` is refused (on POSIX it would be a
literal character, on Windows a separator: ambiguous, and Happo's clients never write one).
`.` and empty components are dropped (`./iframe.html`, `a//b`); `..` anywhere is refused.
Directories are created; a path given twice, or as both a file and a directory, is refused.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

ZIP = "zip"
TAR_ZSTD = "tar.zst"

CHUNK = 64 * 1024  # what one read may decompress into memory
MAX_NAME_BYTES = 1024  # a whole entry name: well inside PATH_MAX under any destination
MAX_COMPONENT_BYTES = 255  # NAME_MAX
MAX_META_HEADER = 8 * 1024  # a pax or GNU long-name header (a name of ≤ 1 KiB and a few fields)
MAX_PAX_RECORDS = 64
ZSTD_MAX_WINDOW = 1 << 27  # zstd's own default ceiling: at most 128 MiB of decoder memory
# Compressed bytes per zstd call. A zstd block yields at most 128 KiB and takes at least 3
# bytes, so one call yields at most ~11 MiB however hostile the frame.
ZSTD_STEP = 256

_FORMAT_NAMES = {ZIP: "zip archive", TAR_ZSTD: "zstd-compressed tar archive"}
_TAR_KINDS = {
    tarfile.SYMTYPE: "is a symbolic link",
    tarfile.LNKTYPE: "is a hard link",
    tarfile.CHRTYPE: "is a character device",
    tarfile.BLKTYPE: "is a block device",
    tarfile.FIFOTYPE: "is a FIFO",
}
_TAR_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_LONG_NAME_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_LENGTH = re.compile(rb"([0-9]{1,5}) ")
_LONG_DIGIT_RUN = re.compile(rb"[0-9]{65}")
_DRIVE = re.compile(r"[A-Za-z]:")
# What zipfile, tarfile, zlib and zstandard raise on malformed input (RuntimeError covers
# encrypted entries, NotImplementedError and RecursionError; ValueError covers Unicode errors).
_LIBRARY_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zstandard.ZstdError, zlib.error)
_READ_ERRORS = (*_LIBRARY_ERRORS, struct.error, EOFError, OSError, RuntimeError, ValueError)
_READ_ERRORS += (LookupError, OverflowError)


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on one package. No compression-ratio limit: legitimate bundles compress very well,
    and the bound on bytes really unpacked is what stops a bomb."""

    max_packed_bytes: int = 60 * 1024 * 1024  # what Happo clients themselves refuse to send
    max_unpacked_bytes: int = 1024 * 1024 * 1024  # sum of all entries' real decompressed sizes
    max_entries: int = 50_000  # archive members plus the directories their paths imply
    max_depth: int = 64  # path components of one entry


class ArchiveRefused(Exception):
    """Why an archive is refused; `.message` is shown to the client. `.too_large` is True when
    the refusal is a size/count limit (the HTTP layer answers 413), False for a corrupt or hostile
    archive (422)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


@dataclass(frozen=True)
class PackageSummary:
    format: str  # ZIP or TAR_ZSTD
    entries: int  # regular files
    unpacked_bytes: int


def sniff_format(data: bytes) -> str | None:
    """ZIP or TAR_ZSTD by the archive's magic bytes (never its name or content type), else None."""
    head = bytes(data[:4])
    if head in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    if head == b"\x28\xb5\x2f\xfd":
        return TAR_ZSTD
    return None


def check_package(data: bytes, limits: ArchiveLimits) -> PackageSummary:
    """Read the whole archive through (decompressing every entry, counting real bytes, not the
    sizes the headers claim) without writing anything; raise ArchiveRefused on the first problem."""
    return _unpack(data, limits, None)


def extract_package(data: bytes, destination: Path, limits: ArchiveLimits) -> PackageSummary:
    """The same checks, writing the regular files under `destination` (which exists and is empty).
    On ArchiveRefused, or any other failure, `destination` is left empty."""
    root = destination.resolve()
    if any(root.iterdir()):  # emptying it on failure must never delete anything of someone else
        raise ValueError(f"{root} is not empty")
    try:
        return _unpack(data, limits, root)
    except BaseException:
        for child in root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        raise


def _unpack(data: bytes, limits: ArchiveLimits, root: Path | None) -> PackageSummary:
    """The one pass behind check_package (root None) and extract_package."""
    if len(data) > limits.max_packed_bytes:
        raise _too_large(f"The package is larger than {limits.max_packed_bytes} bytes.")
    fmt = sniff_format(data)
    if fmt is None:
        raise ArchiveRefused("The package is neither a zip nor a zstd-compressed tar archive.")
    ledger = _Ledger(limits)
    with contextlib.closing(_entries(data, fmt, ledger)) as entries:
        for parts, chunks in entries:
            if root is None:
                for _ in chunks or ():
                    pass
                continue
            target = root.joinpath(*parts)
            # Defence in depth: the name checks should already make an escape impossible.
            if not target.resolve().is_relative_to(root):
                raise _bad_entry("/".join(parts), "escapes the package")
            if chunks is None:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as out:
                for chunk in chunks:
                    out.write(chunk)
    return PackageSummary(fmt, ledger.files, ledger.unpacked)


def _entries(
    data: bytes, fmt: str, ledger: _Ledger
) -> Iterator[tuple[tuple[str, ...], Iterator[bytes] | None]]:
    """Validated entries in archive order: path components and the file's chunks (None for a
    directory). Each file's chunks are read through before the next entry is looked at."""
    members = _zip_members(data, ledger.limits) if fmt == ZIP else _tar_members(data, ledger)
    with _reading(fmt):
        for name, raw_chunks in members:
            parts = ledger.claim(name, is_dir=raw_chunks is None)
            if raw_chunks is None:
                if parts:  # `./` is the root itself
                    yield parts, None
                continue
            chunks = _counted(fmt, ledger, raw_chunks)
            yield parts, chunks
            for _ in chunks:  # whatever the consumer left unread is still checked
                pass


def _counted(fmt: str, ledger: _Ledger, chunks: Iterator[bytes]) -> Iterator[bytes]:
    with _reading(fmt):
        for chunk in chunks:
            ledger.add_bytes(len(chunk))
            yield chunk


@contextlib.contextmanager
def _reading(fmt: str) -> Iterator[None]:
    """Turns the parsers' and decompressors' exceptions into ArchiveRefused."""
    try:
        yield
    except _READ_ERRORS as exc:
        detail = str(exc)[:200] or type(exc).__name__
        raise ArchiveRefused(
            f"The package is not a readable {_FORMAT_NAMES[fmt]}: {detail}"
        ) from exc


def _show(name: str) -> str:
    return repr(name if len(name) <= 200 else name[:200] + "…")


def _bad_entry(name: str, why: str) -> ArchiveRefused:
    return ArchiveRefused(f"The package's entry {_show(name)} {why}.")


def _too_large(message: str) -> ArchiveRefused:
    return ArchiveRefused(message, too_large=True)


class _Ledger:
    """What the archive has produced so far: the paths it claimed (to refuse duplicates and
    file/directory clashes), the entries counted and the bytes really decompressed."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.kinds: dict[str, bool] = {}  # "a/b" -> is a directory
        self.counted = 0
        self.files = 0
        self.unpacked = 0

    def count(self) -> None:
        self.counted += 1
        if self.counted > self.limits.max_entries:
            raise _too_large(f"The package has more than {self.limits.max_entries} entries.")

    def add_bytes(self, size: int) -> None:
        self.unpacked += size
        if self.unpacked > self.limits.max_unpacked_bytes:
            limit = self.limits.max_unpacked_bytes
            raise _too_large(f"The package unpacks to more than {limit} bytes.")

    def claim(self, name: str, *, is_dir: bool) -> tuple[str, ...]:
        parts = _split_name(name)
        if len(parts) > self.limits.max_depth:
            depth = self.limits.max_depth
            raise _too_large(f"The package's entry {_show(name)} is deeper than {depth} levels.")
        self.count()
        if not parts:
            if not is_dir:
                raise ArchiveRefused(f"The package has a file without a name ({_show(name)}).")
            return parts
        for depth in range(len(parts) - 1, 0, -1):  # parents, deepest first
            parent = "/".join(parts[:depth])
            known = self.kinds.get(parent)
            if known:  # a known directory's ancestors are known directories too
                break
            if known is False:
                raise ArchiveRefused(f"The package has {_show(parent)} as a file and a folder.")
            self.kinds[parent] = True
            self.count()
        path = "/".join(parts)
        known = self.kinds.get(path)
        if known is False or (known and not is_dir):
            what = "twice" if known is False and not is_dir else "as a file and a folder"
            raise ArchiveRefused(f"The package has {_show(path)} {what}.")
        self.kinds[path] = is_dir
        if not is_dir:
            self.files += 1
        return parts


def _split_name(name: str) -> tuple[str, ...]:
    """The entry's path components, or ArchiveRefused when the name is hostile or unusable."""
    if "\0" in name:
        raise _bad_entry(name, "contains a NUL character")
    if "\\" in name:
        raise _bad_entry(name, "contains a backslash (only '/' may separate folders)")
    if name.startswith("/"):
        raise _bad_entry(name, "is an absolute path")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad_entry(name, "is not valid UTF-8") from None
    if size > MAX_NAME_BYTES:
        raise _bad_entry(name, f"is longer than {MAX_NAME_BYTES} bytes")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _bad_entry(name, "contains '..'")
    if parts and _DRIVE.match(parts[0]):
        raise _bad_entry(name, "starts with a Windows drive")
    if any(len(part.encode("utf-8")) > MAX_COMPONENT_BYTES for part in parts):
        raise _bad_entry(name, f"has a component longer than {MAX_COMPONENT_BYTES} bytes")
    return parts


def _zip_members(
    data: bytes, limits: ArchiveLimits
) -> Iterator[tuple[str, Iterator[bytes] | None]]:
    # zipfile builds an object per central-directory record before we see the first: bound
    # their number first. Every record starts with this signature, so this over-counts at worst.
    if data.count(b"PK\x01\x02") > limits.max_entries:
        raise _too_large(f"The package has more than {limits.max_entries} entries.")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            name = info.orig_filename  # zipfile cuts `filename` at a NUL; this keeps it
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                is_link = kind == stat.S_IFLNK
                raise _bad_entry(name, "is a symbolic link" if is_link else "is not a regular file")
            if name.endswith("/") or kind == stat.S_IFDIR:
                yield name, None
                continue
            if info.flag_bits & 0x1:
                raise _bad_entry(name, "is encrypted")
            # zipfile inflates bzip2 and lzma without an output bound: only stored and deflate.
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _bad_entry(name, f"uses compression method {info.compress_type}, not deflate")
            yield name, _zip_chunks(archive, info)


def _zip_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    with archive.open(info) as entry:  # checks the CRC at the end
        while chunk := entry.read(CHUNK):
            yield chunk


def _tar_members(data: bytes, ledger: _Ledger) -> Iterator[tuple[str, Iterator[bytes] | None]]:
    # Headers and padding take at most ~1.5 KiB per member beyond the data (pax headers are
    # capped and counted separately); the slack only has to be finite.
    limits = ledger.limits
    stream = _ZstdStream(data, limits.max_unpacked_bytes + limits.max_entries * 1536 + (16 << 20))
    with tarfile.open(fileobj=stream, mode="r|", tarinfo=_guarded_tarinfo(ledger)) as archive:
        for member in archive:
            if member.isdir():
                yield member.name, None
            elif member.type in _TAR_FILE_TYPES:
                yield member.name, _tar_chunks(archive, member)
            else:
                raise _bad_entry(member.name, _TAR_KINDS.get(member.type, "is not a regular file"))
        while stream.read(CHUNK):  # a frame cut short shows only at the end of the data
            pass


def _tar_chunks(archive: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    entry = archive.extractfile(member)
    assert entry is not None  # a regular member always has a file object
    while chunk := entry.read(CHUNK):
        yield chunk


def _guarded_tarinfo(ledger: _Ledger) -> type[tarfile.TarInfo]:
    """A TarInfo class that vets tarfile's extension headers before tarfile parses them: Python
    < 3.11.10 parses pax records with regexes that go quadratic on crafted input (CVE-2024-6232),
    and reads GNU sparse maps into unbounded lists. It also refuses a damaged header, which
    tarfile would silently take for the end of the archive."""
    headers = 0

    class GuardedTarInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
            try:
                return super().fromtarfile(tar)
            except (tarfile.EOFHeaderError, tarfile.EmptyHeaderError):
                raise
            except tarfile.HeaderError as exc:
                raise tarfile.ReadError(f"damaged header ({exc})") from None

        # tarfile's documented extension point for header types.
        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            nonlocal headers
            if self.type == tarfile.GNUTYPE_SPARSE:
                raise _bad_entry(self.name, "is a sparse file")
            if self.type not in _PAX_TYPES + _LONG_NAME_TYPES:
                return super()._proc_member(tar)
            headers += 1
            if headers > ledger.limits.max_entries:
                limit = ledger.limits.max_entries
                raise _too_large(f"The package has more than {limit} tar extended headers.")
            if self.size > MAX_META_HEADER:
                raise ArchiveRefused("The package has an oversized tar extended header.")
            if self.type in _LONG_NAME_TYPES:
                return super()._proc_member(tar)
            inner = tar.fileobj
            tar.fileobj = _PaxVetter(inner)
            try:
                return super()._proc_member(tar)
            finally:
                tar.fileobj = inner

    return GuardedTarInfo


class _PaxVetter:
    """Stands in for TarFile.fileobj while tarfile reads a pax header; the first read is the
    header's records, checked before tarfile's regexes see them."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._vetted = False

    def read(self, size: int) -> bytes:
        data = self._inner.read(size)
        if not self._vetted:
            self._vetted = True
            _vet_pax(data)
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def _vet_pax(buf: bytes) -> None:
    """Admit only well-framed `<length> <keyword>=<value>\\n` records, no runs of over 64 digits
    (what makes the regexes quadratic) and no GNU sparse keywords."""
    pos = records = 0
    while pos < len(buf) and buf[pos] != 0:
        match = _PAX_LENGTH.match(buf, pos)
        end = pos + int(match.group(1)) if match else 0
        records += 1
        if (
            match is None
            or end < pos + 5  # the shortest record is "5 k=\n": always move forward
            or end > len(buf)
            or buf[end - 1] != 0x0A
            or b"=" not in buf[match.end() : end]
            or records > MAX_PAX_RECORDS
        ):
            raise ArchiveRefused("The package has a malformed tar extended header.")
        if buf.startswith(b"GNU.sparse.", match.end()):
            raise ArchiveRefused("The package has a sparse file.")
        pos = end
    if _LONG_DIGIT_RUN.search(buf):
        raise ArchiveRefused("The package has a malformed tar extended header.")


class _ZstdStream(io.RawIOBase):
    """The decompressed bytes of a zstd stream (frames in sequence), at most `budget` of them.
    Fed ZSTD_STEP bytes per call so that no call yields much; unlike zstandard's stream_reader,
    it also notices a frame cut short (stream_reader just reports the end of the data)."""

    def __init__(self, data: bytes, budget: int) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._pos = 0
        self._budget = budget
        self._context = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        self._frame: zstandard.ZstdDecompressionObj | None = None
        self._out = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._out:
            if self._pos == len(self._data):
                if self._frame is not None:
                    raise zstandard.ZstdError("the data ends in the middle of a frame")
                return 0
            if self._frame is None:
                self._frame = self._context.decompressobj()
            step = self._data[self._pos : self._pos + ZSTD_STEP]
            self._pos += len(step)
            self._out = memoryview(self._frame.decompress(step))
            if self._frame.eof:  # the next frame starts in what this one left unused
                self._pos -= len(self._frame.unused_data)
                self._frame = None
            self._budget -= len(self._out)
            if self._budget < 0:
                raise _too_large("The package's tar stream is too large.")
        size = min(len(buffer), len(self._out))
        buffer[:size] = self._out[:size]
        self._out = self._out[size:]
        return size
