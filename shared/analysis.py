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
"""

from __future__ import annotations

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
