"""services/rendering/archive.py: customers' package archives read without trusting them.

Every archive is built here with zipfile / tarfile / zstandard (no binary fixtures); each hostile
case asserts the refusal, its kind (413 or 422) and that a refused extraction leaves nothing."""

from __future__ import annotations

import io
import os
import resource
import stat
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest
import zstandard

from services.rendering.archive import (
    TAR_ZSTD,
    ZIP,
    ArchiveLimits,
    ArchiveRefused,
    PackageSummary,
    check_package,
    extract_package,
    sniff_format,
)

LIMITS = ArchiveLimits()
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
FILES = {
    "iframe.html": b"<!doctype html><script src=/static/js/main.js></script>",
    "static/js/main.js": b"window.happo = {};\n" * 200,
    "static/media/deep/er/logo.png": PNG,
    ".happo-tmp/x.js": b"export default 1;\n",
    ".storybook/preview.js": b"",
}


# --- building archives -------------------------------------------------------------------------


def make_zip(
    entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(buffer, "w", method) as archive:
            for name, content in entries:
                archive.writestr(name, content)
    return buffer.getvalue()


def tar_member(name: str, content: bytes = b"", kind: bytes = tarfile.REGTYPE, **extra):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    for key, value in extra.items():
        setattr(info, key, value)
    return info, (io.BytesIO(content) if kind == tarfile.REGTYPE else None)


def make_tar(members: list, fmt: int = tarfile.PAX_FORMAT, encoding: str = "utf-8") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt, encoding=encoding) as archive:
        for info, content in members:
            archive.addfile(info, content)
    return buffer.getvalue()


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=False).compress(data)


def make_tar_zst(members: list, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    return zst(make_tar(members, fmt))


def files_tar_zst(files: dict[str, bytes]) -> bytes:
    return make_tar_zst([tar_member(name, content) for name, content in files.items()])


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in root.rglob("*")
        if path.is_file()
    }


def refused(data: bytes, tmp_path: Path, limits: ArchiveLimits = LIMITS) -> ArchiveRefused:
    """Refused by both check and extract, with the same answer; the destination stays empty."""
    with pytest.raises(ArchiveRefused) as checked:
        check_package(data, limits)
    destination = tmp_path / "out"
    destination.mkdir(parents=True)
    with pytest.raises(ArchiveRefused) as extracted:
        extract_package(data, destination, limits)
    assert list(destination.iterdir()) == []
    assert (extracted.value.message, extracted.value.too_large) == (
        checked.value.message,
        checked.value.too_large,
    )
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()
    return checked.value


# --- good packages -----------------------------------------------------------------------------


def test_zip_with_folders_and_dot_folders_extracts_exact_bytes(tmp_path: Path) -> None:
    data = make_zip([("static/", b""), *FILES.items()])
    summary = extract_package(data, tmp_path, LIMITS)
    assert tree(tmp_path) == FILES
    assert (tmp_path / "static").is_dir()
    expected = PackageSummary(ZIP, len(FILES), sum(map(len, FILES.values())))
    assert summary == expected
    assert check_package(data, LIMITS) == expected


def test_tar_zst_with_dot_prefixes_and_folders_extracts_exact_bytes(tmp_path: Path) -> None:
    # `tar -C build .` writes "./" and "./name" entries.
    members = [tar_member("./", kind=tarfile.DIRTYPE), tar_member("./static", kind=tarfile.DIRTYPE)]
    members += [tar_member(f"./{name}", content) for name, content in FILES.items()]
    data = make_tar_zst(members)
    summary = extract_package(data, tmp_path, LIMITS)
    assert tree(tmp_path) == FILES
    expected = PackageSummary(TAR_ZSTD, len(FILES), sum(map(len, FILES.values())))
    assert summary == expected
    assert check_package(data, LIMITS) == expected


def test_stored_zip_and_gnu_tar_with_long_names(tmp_path: Path) -> None:
    long_name = "static/" + "a" * 150 + "/" + "b" * 200 + ".js"
    files = {long_name: b"long", "x.txt": b"x"}
    zip_dir, tar_dir = tmp_path / "zip", tmp_path / "tar"
    zip_dir.mkdir(), tar_dir.mkdir()
    extract_package(make_zip(list(files.items()), zipfile.ZIP_STORED), zip_dir, LIMITS)
    members = [tar_member(name, content) for name, content in files.items()]
    extract_package(make_tar_zst(members, tarfile.GNU_FORMAT), tar_dir, LIMITS)
    assert tree(zip_dir) == tree(tar_dir) == files


def test_zstd_stream_of_several_frames(tmp_path: Path) -> None:
    tar = make_tar([tar_member(name, content) for name, content in FILES.items()])
    data = b"".join(zst(tar[i : i + 1000]) for i in range(0, len(tar), 1000))
    assert extract_package(data, tmp_path, LIMITS).entries == len(FILES)
    assert tree(tmp_path) == FILES


def test_empty_zip_is_an_empty_package() -> None:
    assert check_package(make_zip([]), LIMITS) == PackageSummary(ZIP, 0, 0)


def test_extract_refuses_a_destination_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_bytes(b"keep")
    with pytest.raises(ValueError, match="not empty"):
        extract_package(make_zip([("../evil", b"x")]), tmp_path, LIMITS)
    assert tree(tmp_path) == {"mine.txt": b"keep"}


# --- sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (make_zip([("a", b"a")]), ZIP),
        (make_zip([]), ZIP),
        (zst(b"anything"), TAR_ZSTD),
        (PNG, None),
        (b"", None),
        (b"PK", None),
        (b"%PDF-1.7", None),
    ],
    ids=["zip", "empty-zip", "zstd", "png", "nothing", "short", "pdf"],
)
def test_sniff_format_by_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff_format(data) == expected


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    error = refused(PNG, tmp_path)
    assert not error.too_large and "neither a zip nor" in error.message


# --- hostile names -----------------------------------------------------------------------------

HOSTILE_NAMES = [
    "../evil",
    "a/../../evil",
    "a/../b",
    "/etc/x",
    "//x",
    "C:\\x",
    "C:/x",
    "c:x",
    "a\\..\\..\\evil",
    "x" * 256 + ".js",
    "a/" * 520 + "b",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_zip_with_hostile_name_is_refused(name: str, tmp_path: Path) -> None:
    data = make_zip([("ok.js", b"fine"), (name, b"evil")])
    error = refused(data, tmp_path)
    assert not error.too_large
    assert error.message.startswith("The package's entry ")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_tar_with_hostile_name_is_refused(name: str, tmp_path: Path) -> None:
    data = make_tar_zst([tar_member("ok.js", b"fine"), tar_member(name, b"evil")])
    error = refused(data, tmp_path)
    assert not error.too_large
    assert error.message.startswith("The package's entry ")


def test_zip_name_with_nul_is_refused(tmp_path: Path) -> None:
    # zipfile cuts names at a NUL on reading and writing: put the NUL in afterwards.
    data = make_zip([("evil.js@.png", b"x")]).replace(b"evil.js@.png", b"evil.js\0.png")
    assert "NUL" in refused(data, tmp_path).message


def test_tar_name_with_nul_or_bad_utf8_is_refused(tmp_path: Path) -> None:
    nul = make_tar_zst([tar_member("x.png", b"x", pax_headers={"path": "evil.js\0.png"})])
    assert "NUL" in refused(nul, tmp_path / "nul").message
    latin1 = zst(make_tar([tar_member("caf\xe9.js", b"x")], tarfile.GNU_FORMAT, "latin-1"))
    assert "not valid UTF-8" in refused(latin1, tmp_path / "latin1").message


def test_zip_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("static/link.js")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = make_zip([("a.js", b"a"), (link, b"/etc/passwd")])
    error = refused(data, tmp_path)
    assert not error.too_large and "symbolic link" in error.message


@pytest.mark.parametrize(
    ("kind", "words", "extra"),
    [
        (tarfile.SYMTYPE, "symbolic link", {"linkname": "/etc/passwd"}),
        (tarfile.LNKTYPE, "hard link", {"linkname": "a.js"}),
        (tarfile.FIFOTYPE, "FIFO", {}),
        (tarfile.CHRTYPE, "character device", {"devmajor": 1, "devminor": 3}),
        (tarfile.BLKTYPE, "block device", {"devmajor": 8, "devminor": 0}),
    ],
    ids=["symlink", "hardlink", "fifo", "chardev", "blockdev"],
)
def test_tar_links_and_devices_are_refused(kind, words: str, extra: dict, tmp_path: Path) -> None:
    data = make_tar_zst([tar_member("a.js", b"a"), tar_member("b.js", kind=kind, **extra)])
    error = refused(data, tmp_path)
    assert not error.too_large and words in error.message


def test_duplicate_paths_are_refused(tmp_path: Path) -> None:
    zipped = make_zip([("a/b.js", b"1"), ("a/b.js", b"2")])
    assert "twice" in refused(zipped, tmp_path / "z").message
    tarred = make_tar_zst([tar_member("a/b.js", b"1"), tar_member("./a//b.js", b"2")])
    assert "twice" in refused(tarred, tmp_path / "t").message


def test_a_path_that_is_both_file_and_folder_is_refused(tmp_path: Path) -> None:
    first = make_zip([("a", b"file"), ("a/b.js", b"x")])
    assert "file and a folder" in refused(first, tmp_path / "1").message
    second = make_zip([("a/b.js", b"x"), ("a", b"file")])
    assert "file and a folder" in refused(second, tmp_path / "2").message


def test_repeated_folder_entries_are_fine(tmp_path: Path) -> None:
    data = make_zip([("a/", b""), ("a/b.js", b"x"), ("a/", b"")])
    assert extract_package(data, tmp_path, LIMITS).entries == 1
    assert tree(tmp_path) == {"a/b.js": b"x"}


# --- limits ------------------------------------------------------------------------------------


def rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """One entry of 256 MiB of zeros, deflated (about 250 KB), written in pieces."""
    buffer = io.BytesIO()
    info = zipfile.ZipInfo("bomb.bin")
    info.compress_type = zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(buffer, "w") as archive, archive.open(info, "w") as entry:
        zeros = bytes(16 << 20)
        for _ in range(16):
            entry.write(zeros)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tar_zst_bomb() -> bytes:
    """A tar of one 1 GiB file of zeros, zstd-compressed (about 32 KB), streamed."""

    class Zeros:
        def read(self, size: int) -> bytes:
            return bytes(size)

    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as compressed:
        with tarfile.open(fileobj=compressed, mode="w", copybufsize=16 << 20) as archive:
            info = tarfile.TarInfo("bomb.bin")
            info.size = 1 << 30
            archive.addfile(info, Zeros())
    return out.getvalue()


@pytest.mark.parametrize("bomb", ["zip_bomb", "tar_zst_bomb"])
def test_bomb_is_refused_fast_with_bounded_memory(bomb: str, request, tmp_path: Path) -> None:
    # Reading the bomb whole would take 256 MiB or 1 GiB; a stream stops at 32 MiB.
    data = request.getfixturevalue(bomb)
    assert len(data) < 1024 * 1024
    limits = ArchiveLimits(max_unpacked_bytes=32 * 1024 * 1024)
    before, started = rss_peak_mb(), time.monotonic()
    with pytest.raises(ArchiveRefused) as error:
        check_package(data, limits)
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(ArchiveRefused):
        extract_package(data, destination, limits)
    assert error.value.too_large
    assert "more than 33554432 bytes" in error.value.message
    assert rss_peak_mb() - before < 100
    assert time.monotonic() - started < 5
    assert list(destination.iterdir()) == []


def test_many_small_files_past_the_byte_limit(tmp_path: Path) -> None:
    files = [(f"f{i}.bin", os.urandom(1000)) for i in range(20)]
    limits = ArchiveLimits(max_unpacked_bytes=10_000)
    assert refused(make_zip(files), tmp_path / "z", limits).too_large
    tarred = make_tar_zst([tar_member(name, content) for name, content in files])
    assert refused(tarred, tmp_path / "t", limits).too_large
    exactly = ArchiveLimits(max_unpacked_bytes=20_000)
    assert check_package(make_zip(files), exactly).unpacked_bytes == 20_000


def test_zip_entry_count_is_bounded_before_zipfile_reads_the_directory(monkeypatch) -> None:
    # zipfile makes an object per directory record up front: 60 MB of records is ~1M objects.
    data = make_zip([(f"f{i}.js", b"x") for i in range(11)])

    def no_zipfile(*args, **kwargs):
        raise AssertionError("zipfile was asked to read the central directory")

    monkeypatch.setattr(zipfile, "ZipFile", no_zipfile)
    with pytest.raises(ArchiveRefused) as error:
        check_package(data, ArchiveLimits(max_entries=10))
    assert error.value.too_large


def test_entry_count_limit(tmp_path: Path) -> None:
    limits = ArchiveLimits(max_entries=10)
    ten = [(f"f{i}.js", b"x") for i in range(10)]
    assert check_package(make_zip(ten), limits).entries == 10
    eleven = [*ten, ("f10.js", b"x")]
    error = refused(make_zip(eleven), tmp_path / "z", limits)
    assert error.too_large and "more than 10 entries" in error.message
    tarred = make_tar_zst([tar_member(name, content) for name, content in eleven])
    assert refused(tarred, tmp_path / "t", limits).too_large


def test_implied_folders_count_as_entries(tmp_path: Path) -> None:
    # 3 files in 3 fresh folders each: 3 + 9 = 12 entries.
    files = [(f"{i}/a/b/c.js", b"x") for i in range(3)]
    assert refused(make_zip(files), tmp_path, ArchiveLimits(max_entries=11)).too_large
    assert check_package(make_zip(files), ArchiveLimits(max_entries=12)).entries == 3


def test_depth_limit(tmp_path: Path) -> None:
    deep = "/".join(["d"] * 64) + ".js"
    assert check_package(make_zip([(deep, b"x")]), LIMITS).entries == 1
    deeper = "d/" + deep
    error = refused(make_zip([(deeper, b"x")]), tmp_path / "z")
    assert error.too_large and "deeper than 64" in error.message
    assert refused(make_tar_zst([tar_member(deeper, b"x")]), tmp_path / "t").too_large


def test_packed_size_limit(tmp_path: Path) -> None:
    data = make_zip([("a.bin", os.urandom(5000))])
    limits = ArchiveLimits(max_packed_bytes=4000)
    error = refused(data, tmp_path, limits)
    assert error.too_large and "larger than 4000 bytes" in error.message


def test_tar_stream_itself_is_bounded(tmp_path: Path) -> None:
    # Past the end of the archive nothing is an entry, but it is still decompressed.
    data = zst(make_tar([tar_member("a.js", b"a")]) + bytes(64 * 1024 * 1024))
    limits = ArchiveLimits(max_unpacked_bytes=1024, max_entries=10)
    assert refused(data, tmp_path, limits).too_large


# --- corrupt archives --------------------------------------------------------------------------


def test_flipped_bytes_in_a_stored_zip_entry_fail_the_crc(tmp_path: Path) -> None:
    content = b"A" * 5000
    data = bytearray(make_zip([("a.txt", content)], zipfile.ZIP_STORED))
    middle = data.index(content) + 2500
    data[middle : middle + 4] = b"BBBB"
    error = refused(bytes(data), tmp_path)
    assert not error.too_large
    assert error.message.startswith("The package is not a readable zip archive: ")
    assert "CRC" in error.message


def test_flipped_bytes_in_a_deflated_zip_entry_are_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip([("a.txt", os.urandom(2000).hex().encode())]))
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
    error = refused(bytes(data), tmp_path)
    assert not error.too_large and "not a readable zip archive" in error.message


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_zip_is_refused(keep: float, tmp_path: Path) -> None:
    data = make_zip(list(FILES.items()))
    error = refused(data[: int(len(data) * keep)], tmp_path)
    assert not error.too_large and "not a readable zip archive" in error.message


def test_truncated_zstd_is_refused(tmp_path: Path) -> None:
    data = files_tar_zst(FILES)
    for index, cut in enumerate((len(data) // 2, len(data) - 3, len(data) - 1)):
        error = refused(data[:cut], tmp_path / str(index))
        assert not error.too_large
        assert "not a readable zstd-compressed tar archive" in error.message


def test_zstd_cut_where_only_the_tar_end_is_lost_is_refused(tmp_path: Path) -> None:
    # One frame, its last block holding only the tar's end-of-archive zeros: cut there, every
    # member is intact and tarfile sees a clean end; only the unfinished frame tells.
    tar = make_tar([tar_member(name, content) for name, content in FILES.items()])
    end = len(tar.rstrip(b"\0")) + 511 & ~511
    compressor = zstandard.ZstdCompressor(write_checksum=False).compressobj()
    head = compressor.compress(tar[:end]) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    data = head + compressor.compress(tar[end:]) + compressor.flush()
    assert check_package(data, LIMITS).entries == len(FILES)
    error = refused(data[: len(head) + 2], tmp_path)
    assert not error.too_large and "ends in the middle of a frame" in error.message


@pytest.mark.parametrize(
    "data",
    [
        b"PK\x03\x04" + os.urandom(2000),
        b"\x28\xb5\x2f\xfd" + os.urandom(2000),
        zst(os.urandom(2000)),  # a good frame of something other than a tar
        files_tar_zst(FILES) + b"trailing garbage",
    ],
    ids=["zip-magic", "zstd-magic", "not-a-tar", "after-the-frame"],
)
def test_garbage_is_refused(data: bytes, tmp_path: Path) -> None:
    error = refused(data, tmp_path)
    assert not error.too_large and error.message.startswith("The package is not a readable ")


def test_damaged_tar_header_is_not_taken_for_the_end(tmp_path: Path) -> None:
    # tarfile alone stops silently at a bad header after the first: b.js would just vanish.
    tar = bytearray(make_tar([tar_member("a.js", b"a"), tar_member("b.js", b"b")]))
    second = tar.index(b"b.js")
    tar[second + 148 : second + 156] = b"0000000\0"  # its checksum
    error = refused(zst(bytes(tar)), tmp_path)
    assert not error.too_large and "damaged header" in error.message


def test_encrypted_zip_entry_is_refused(tmp_path: Path) -> None:
    data = bytearray(make_zip([("secret.js", b"x" * 100)]))
    local, central = data.index(b"PK\x03\x04"), data.index(b"PK\x01\x02")
    data[local + 6] |= 0x01  # general purpose flag, bit 0: encrypted
    data[central + 8] |= 0x01
    error = refused(bytes(data), tmp_path)
    assert (error.message, error.too_large) == (
        "The package's entry 'secret.js' is encrypted.",
        False,
    )


def test_unbounded_compression_methods_are_refused(tmp_path: Path) -> None:
    error = refused(make_zip([("a.js", b"x" * 1000)], zipfile.ZIP_BZIP2), tmp_path)
    assert not error.too_large and "compression method" in error.message


# --- crafted tar extension headers -------------------------------------------------------------


def test_pax_header_with_long_digit_runs_is_refused_quickly(tmp_path: Path) -> None:
    # CVE-2024-6232: Python < 3.11.10 parses this header in quadratic time.
    member = tar_member("a.js", b"a", pax_headers={"comment": "1" * 8000})
    started = time.monotonic()
    error = refused(make_tar_zst([member]), tmp_path)
    assert time.monotonic() - started < 1
    assert not error.too_large and "extended header" in error.message


def test_oversized_pax_header_is_refused(tmp_path: Path) -> None:
    member = tar_member("a.js", b"a", pax_headers={"comment": "x" * 20_000})
    error = refused(make_tar_zst([member]), tmp_path)
    assert not error.too_large and "oversized" in error.message


def test_gnu_sparse_members_are_refused(tmp_path: Path) -> None:
    # GNU sparse 1.0 maps are read into a list as long as the header claims.
    sparse = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.realsize": "9"}
    member = tar_member("a.js", b"1\n0\n9\n", pax_headers=sparse)
    error = refused(make_tar_zst([member]), tmp_path)
    assert not error.too_large and "sparse" in error.message


def with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def raw_pax_header(records: bytes) -> bytes:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(records)
    return info.tobuf(tarfile.USTAR_FORMAT) + records.ljust(-(-len(records) // 512) * 512, b"\0")


@pytest.mark.parametrize(
    "records",
    [
        b"2 " * 3000 + b"=\n",  # lengths that never reach the '=': quadratic in tarfile's loop
        b"20 comment=no newline",
        b"99 comment=too long\n",
        b"".join(b"9 k%02d=v\n" % i for i in range(65)),  # well framed, but 65 records
    ],
    ids=["tiny-lengths", "no-newline", "overlong", "too-many-records"],
)
def test_malformed_pax_records_are_refused(records: bytes, tmp_path: Path) -> None:
    data = zst(raw_pax_header(records) + make_tar([tar_member("a.js", b"a")], tarfile.USTAR_FORMAT))
    error = refused(data, tmp_path)
    assert not error.too_large and "malformed tar extended header" in error.message


def test_old_gnu_sparse_member_with_endless_map_is_refused(tmp_path: Path) -> None:
    # tarfile keeps reading "extended" sparse-map blocks for as long as each says one follows.
    info = tarfile.TarInfo("a.js")
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[482] = 1  # isextended
    extension = bytearray(b"%011o\0%011o\0" % (1, 1) * 21).ljust(512, b"\0")
    extension[504] = 1
    data = zst(with_checksum(header) + bytes(extension) * 40_000 + bytes(1024))
    limits = ArchiveLimits(max_unpacked_bytes=1 << 20, max_entries=10)
    before = rss_peak_mb()
    error = refused(data, tmp_path, limits)
    assert not error.too_large and "sparse file" in error.message
    assert rss_peak_mb() - before < 50


def test_ordinary_pax_headers_pass(tmp_path: Path) -> None:
    name = "static/" + "é" * 120 + ".js"  # non-ASCII and long: both need a pax header
    member = tar_member(name, b"ok", pax_headers={"comment": "built at 2024-05-01"})
    assert extract_package(make_tar_zst([member]), tmp_path, LIMITS).entries == 1
    assert tree(tmp_path) == {name: b"ok"}
