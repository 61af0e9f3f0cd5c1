"""The image-quality analysis contract between ingest (Haut.ai-style images) and processing.

The conversation, over the event stream:

* ``analysis.requested`` ``{image_id, original: {sha256, key, media_type}, app_args}`` — a
  batch was sent to compute; one event per image. Competing processing workers take it from
  one queue. ``app_args`` is the client's object (or null), passed through.
* ``analysis.completed`` ``{image_id, original_sha256, algorithm, quality_score,
  quality_feedback, quality_issues, problems, quality_result, aux_images}`` — ``quality_score``
  is 0..100; ``quality_feedback`` one sentence a person can act on; ``quality_issues`` and
  ``problems`` lists of the stable codes below; ``quality_result`` an object of the measured
  figures (``width``, ``height``, ``sharpness``, ``brightness``, ``contrast``, ``bytes``,
  ``format``); ``aux_images`` a list of ``{aux_image_type, algo_app, key, media_type, bytes,
  width, height}`` whose ``key`` is in the blob store under the original's derivatives prefix
  (so the aux images go when the original goes).
* ``analysis.failed`` ``{image_id, original_sha256, code, message}`` — the original cannot be
  analysed at all (undecodable, missing): a fact about the input, not a transient error.

The analysis of an original depends only on its bytes and :data:`ALGORITHM`, so processing may
answer a repeated request from what it stored before.

How processing answers (additions, the meaning above unchanged):

* An original whose bytes are stored but cannot be read as an image is a *completed* analysis
  with ``problems`` ``["undecodable"]`` (plus ``file_too_large`` when it is), ``quality_score``
  0, ``aux_images`` ``[]`` and the figures it could not measure as ``null`` — so the image shows
  its problem like any other. Bytes in a format processing does not decode (GIF, and a TIFF,
  HEIF/HEIC/AVIF, BMP, JPEG XL or JPEG 2000 recognised by its signature) get
  ``unsupported_format`` instead; a GIF is still measured. ``analysis.failed`` (code
  ``invalid_request``) is kept for requests that cannot be analysed at all: the original is no
  longer stored, its bytes do not hash to ``sha256``, or the payload is malformed.
* ``analysis.completed`` also carries ``worker`` (``host:pid`` of the process that computed the
  analysis) and ``cached`` (true when it was answered from an earlier analysis of the same
  bytes).
* ``quality_result`` also carries ``clipped_shadows`` and ``clipped_highlights`` (fractions of
  pixels), ``analysis_width`` and ``analysis_height`` (the size the figures were measured at)
  and ``score_parts`` (the 0..1 parts of the score); see
  :mod:`services.processing.quality` for every threshold and the score formula.
"""

from __future__ import annotations

from shared import store_keys

ANALYSIS_REQUESTED = "analysis.requested"
ANALYSIS_COMPLETED = "analysis.completed"
ANALYSIS_FAILED = "analysis.failed"

#: The name and version of the analysis; part of ``algo_app`` and of the aux images' keys.
ALGORITHM = "darkroom-quality-v1"

#: ``problems``: reasons the image cannot be used for analysis at all.
PROBLEM_CODES = {
    "low_resolution": "smaller than 256x256 pixels",
    "unsupported_format": "not a JPEG, PNG or WebP image",
    "file_too_large": "larger than 30 MB",
    "undecodable": "the bytes are not a readable image",
}

#: ``quality_issues``: reasons the image is usable but poor.
QUALITY_ISSUE_CODES = {
    "blurry": "not sharp enough (low Laplacian variance)",
    "underexposed": "too dark",
    "overexposed": "too bright",
    "low_contrast": "too flat",
}

#: ``aux_image_type`` values processing produces.
AUX_IMAGE_TYPES = ("normalized_preview", "sharpness_map")

#: The smallest width and height an image may have (``low_resolution`` below either).
MIN_SIDE = 256
#: The largest file, in bytes, the quality analysis rates acceptable (``file_too_large`` above
#: it): 30 MB as the Haut.ai seed's ``X-Goog-Content-Length-Range: 1,31457280`` counts it. A
#: criterion of the analysis, not the upload limit: what an upload may be is the operator's
#: ``DARKROOM_MAX_UPLOAD_BYTES`` (same default), and a larger file an operator allows is
#: stored and rated ``file_too_large``.
MAX_FILE_BYTES = 31_457_280
#: The media type of every aux image (PNG, no metadata).
AUX_MEDIA_TYPE = "image/png"


def aux_image_key(original_sha256: str, aux_image_type: str) -> str:
    """Where the aux image ``aux_image_type`` of ``original_sha256`` is stored: under the
    original's derivatives prefix, so it goes when the original goes."""
    return store_keys.derivative_key(original_sha256, f"aux-{ALGORITHM}-{aux_image_type}", "png")
