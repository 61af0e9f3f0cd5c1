"""The pixel-diff contract between reports (Happo comparisons) and processing.

The conversation, over the event stream:

* ``comparison.requested`` ``{comparison_id, account_id, threshold, include_anti_aliasing,
  pairs: [{before: {sha256, key}, after: {sha256, key}}]}`` — reports found snapshots whose
  content differs (different SHA-256) and that no ignored diff covers; one event per
  comparison, each distinct pair once. ``key`` is where the image's bytes are in the blob store.
* ``comparison.diffed`` ``{comparison_id, threshold, include_anti_aliasing, results:
  [{before_sha256, after_sha256, changed_pixels, total_pixels, width, height, bbox,
  anti_aliased_pixels, size_mismatch, diff_key, diff_bytes, error}]}`` — processing compared
  every pair of the request. ``bbox`` is ``[left, top, width, height]`` or null; ``diff_key`` the
  blob-store key of the diff PNG (:func:`diff_key`; null when nothing changed); ``error`` null,
  or a message when a side could not be decoded (then the pair counts as a diff with no image).
* ``comparison.completed`` ``{comparison_id, account_id, project, sha1, sha2, status, equal,
  summary, compare_url, diff_components, notify}`` — reports recorded the outcome; the e-mails go
  out from here. ``diff_components`` lists the components with a diff or an added/deleted
  snapshot; ``notify`` the addresses the caller asked to tell.

A diff depends only on the two images' bytes and the options, so processing may answer a
repeated request from what it computed before.

More about ``comparison.diffed``, as processing publishes it:

* ``results`` holds one result per pair of the request, in the request's order. Each also
  carries ``cached``: true when the figures were recorded by an earlier diff of the same pair
  under the same options (its diff PNG still stored), false when diffed for this request.
* ``diff_bytes`` is the size of the PNG at ``diff_key``, null with it; ``diff_key`` is null
  exactly when ``changed_pixels`` is 0.
* ``error`` is also set when an image is missing from the blob store, when the stored bytes
  are not the image named by its ``sha256``, or when the pair itself is malformed (no object,
  a bad ``sha256`` or ``key``); then ``changed_pixels``, ``total_pixels``, ``width``,
  ``height``, ``anti_aliased_pixels``, ``size_mismatch`` and ``diff_bytes`` are null too. An
  ``error`` is a fact about the input, answered at once, never retried.
* The payload also carries ``error`` (null, or a message when the request as a whole cannot be
  answered: ``pairs`` not a list, ``threshold`` not a number from 0 to 1,
  ``include_anti_aliasing`` not a boolean; then every result carries that message too) and
  ``worker`` (``host:pid`` of the processing process that answered). ``threshold`` and
  ``include_anti_aliasing`` echo the request's (null in place of a value JSON cannot carry
  back, such as NaN).
* Thresholds are diffed rounded to 6 decimals, as :func:`diff_key` names them.
* A ``comparison.requested`` without a ``comparison_id`` (a non-empty string or an integer) is
  never answered: it is poison, dead-lettered on processing's queue.
"""

from __future__ import annotations

import hashlib

from shared import store_keys

COMPARISON_REQUESTED = "comparison.requested"
COMPARISON_DIFFED = "comparison.diffed"
COMPARISON_COMPLETED = "comparison.completed"


def options_digest(threshold: float, include_anti_aliasing: bool) -> str:
    """A short stable name for a set of diff options (part of the diff image's key)."""
    canonical = f"t={threshold:.6f};aa={int(include_anti_aliasing)}"
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def diff_key(
    before_sha256: str, after_sha256: str, threshold: float, include_anti_aliasing: bool
) -> str:
    """The blob-store key of the diff PNG of ``before`` → ``after`` under the given options."""
    digest = options_digest(threshold, include_anti_aliasing)
    return store_keys.diff_key(before_sha256, after_sha256, digest)
