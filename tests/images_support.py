"""Images the tests make up: random and photo-like pictures, slow-to-process JPEGs, text
rendered at sub-pixel offsets, and PNG bombs (a header that lies, or pixels that explode)."""

from __future__ import annotations

import os
import struct
import zlib

import pyvips


def random_png(width: int = 16, height: int = 12) -> bytes:
    """A PNG no other test uploads (random pixels)."""
    pixels = os.urandom(width * height * 3)
    return pyvips.Image.new_from_memory(pixels, width, height, 3, "uchar").write_to_buffer(".png")


def png_bomb(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of ``side``² pixels that compresses to about a hundred kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    rows = (b"\x00" * (1 + (side + 7) // 8)) * 1000
    idat = b"".join(compressor.compress(rows) for _ in range(side // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def photo(width: int = 320, height: int = 200, suffix: str = ".png", seed: int = 0) -> bytes:
    """A photo-like test image: colour gradients, texture, and a corner that makes it unique."""
    xy = pyvips.Image.xyz(width, height)
    red = xy[0] * (255 / width)
    green = xy[1] * (255 / height)
    blue = (xy[0] + xy[1]) * (128 / (width + height)) + 64
    texture = pyvips.Image.gaussnoise(width, height, sigma=12, mean=0)
    image = (red.bandjoin([green, blue]) + texture).cast("uchar")
    image = image.draw_rect([seed % 256, (seed // 256) % 256, 200], 0, 0, 3, 3, fill=True)
    return image.write_to_buffer(suffix)


def texture(width: int, height: int, seed: int) -> pyvips.Image:
    """Zero-mean noise with the same strength in every octave of scale (1/f, like the detail
    of natural images): unit-variance noise at 1, 2, 4 … 128 px, enlarged and summed."""
    total = None
    for octave in range(8):
        scale = 2**octave
        noise = pyvips.Image.gaussnoise(
            width // scale + 2, height // scale + 2, sigma=1, mean=0, seed=seed + octave
        )
        if scale > 1:
            noise = noise.resize(scale, kernel="linear")
        noise = noise.crop(0, 0, width, height)
        total = noise if total is None else total + noise
    return total


def scene(width: int = 800, height: int = 600, seed: int = 11) -> pyvips.Image:
    """A reproducible photo-like 8-bit sRGB image: a lit diagonal gradient with colour
    drifting across it, textured, and three hard-edged shapes (dark, light, red)."""
    xy = pyvips.Image.xyz(width, height)
    u, v = xy[0] / width, xy[1] / height
    luma = (u * 0.5 + v * 0.3) * 120 + 60 + texture(width, height, seed) * 6
    image = (luma + (u - 0.5) * 40).bandjoin([luma + 6, luma + (v - 0.5) * 40 - 6])
    image = image.draw_rect(
        [25, 25, 30], width // 8, height // 6, width // 5, height // 4, fill=True
    )
    image = image.draw_rect(
        [235, 230, 220], width // 2, height // 2, width // 6, height // 5, fill=True
    )
    image = image.draw_circle(
        [190, 60, 40], width * 3 // 4, height * 3 // 10, height // 8, fill=True
    )
    return image.cast("uchar").copy(interpretation="srgb")


def jpeg(image: pyvips.Image) -> bytes:
    return image.jpegsave_buffer(Q=90)


def png_header_bomb(width: int, height: int) -> bytes:
    """A PNG of a few hundred bytes whose header declares ``width`` x ``height`` pixels."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(tag + body)
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 2)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def big_jpeg(side: int, seed: int) -> bytes:
    """A ``side`` x ``side`` JPEG with detail everywhere (seconds to rotate and filter)."""
    xy = pyvips.Image.xyz(side, side)
    red = (xy[0] * 7 + xy[1] * (3 + seed)) % 256
    image = red.bandjoin([(xy[0] ^ xy[1]) % 256, (xy[0] * xy[1] + seed) % 256]).cast("uchar")
    return image.jpegsave_buffer(Q=90)


def solid(width: int, height: int, colour: list[int]) -> pyvips.Image:
    image = pyvips.Image.black(width, height, bands=3) + colour
    return image.cast("uchar").copy(interpretation="srgb")


def ink(image: pyvips.Image, mask: pyvips.Image, x: int, y: int, colour: list[int]) -> pyvips.Image:
    """``image`` with ``colour`` laid over it at (x, y) through the coverage ``mask``."""
    under = image.crop(x, y, mask.width, mask.height)
    cover = mask / 255.0
    return image.insert((under * (1 - cover) + cover * colour).cast("uchar"), x, y)


def heading(quarter_pixels: int, text: str = "Dashboard", font: str = "sans bold 32") -> bytes:
    """A card with a heading, rasterised at 4x and box-filtered down, the text shifted right
    by ``quarter_pixels`` quarters of a pixel: the same text, anti-aliased differently."""
    big = pyvips.Image.text(text, font=font, dpi=4 * 96)
    width, height = (big.width + 8) // 4 * 4, (big.height + 3) // 4 * 4
    mask = big.embed(quarter_pixels, 0, width, height).shrink(4, 4).cast("uchar")
    card = solid(mask.width + 40, mask.height + 40, [255, 255, 255])
    return png(ink(card, mask, 20, 20, [30, 30, 40]))


def png(image: pyvips.Image, **options: object) -> bytes:
    return image.pngsave_buffer(**options)
