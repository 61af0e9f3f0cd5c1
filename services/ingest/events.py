"""Events ingest publishes and consumes (payloads only grow; a breaking change is a new type)."""

from shared import analysis

#: ``{hash, account_id, bytes, format, width, height, frames, media_type, source,
#: happo_hash?, image_id?}`` — an image was validated, stored and recorded (once per new
#: record). ``hash`` is the SHA-256 of the bytes; ``account_id`` is null for anonymous uploads;
#: ``source`` is ``happo``, ``hashhost``, ``progimage`` or ``hautai``; ``happo_hash`` is the
#: client's name of a Happo image, ``image_id`` the id of a Progimage or Haut.ai image.
IMAGE_STORED = "image.stored"

#: ``{hash, account_id, bytes, media_type, source}`` — a non-image file was stored and recorded.
FILE_STORED = "file.stored"

#: ``{hash}`` — the last record of some content was removed, so its bytes are being deleted
#: (derivatives keyed by this hash may go too).
BLOB_DELETED = "blob.deleted"

#: ``analysis.requested`` (see :mod:`shared.analysis`) — a computed batch's images, one event
#: each, for processing's quality analysis.
ANALYSIS_REQUESTED = analysis.ANALYSIS_REQUESTED

#: Routing keys ingest consumes on durable queues: the analysis answers.
CONSUMED: tuple[str, ...] = (analysis.ANALYSIS_COMPLETED, analysis.ANALYSIS_FAILED)
