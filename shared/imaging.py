"""What every process that decodes images with libvips sets up first."""

from __future__ import annotations

import pyvips

#: The libvips loaders Darkroom accepts: the four web image formats.
ALLOWED_LOADERS = (
    "VipsForeignLoadPng",
    "VipsForeignLoadJpeg",
    "VipsForeignLoadNsgif",
    "VipsForeignLoadWebp",
)


def refuse_untrusted_loaders() -> None:
    """Block libvips' operations flagged untrusted (ImageMagick, matio, …) and every loader
    but :data:`ALLOWED_LOADERS`, for the whole process: every image is hostile input, even one
    validated at upload, since libvips picks its loader from the bytes."""
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)
