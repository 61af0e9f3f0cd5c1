"""Events ingest publishes and consumes (payloads only grow; a breaking change is a new type)."""

#: ``{hash, account_id, bytes, format, width, height, frames, media_type, source,
#: happo_hash?}`` — an image was validated, stored and recorded (once per new record).
#: ``hash`` is the SHA-256 of the bytes; ``account_id`` is null for anonymous uploads;
#: ``source`` is ``happo`` or ``hashhost``; ``happo_hash`` is the client's name of a Happo image.
IMAGE_STORED = "image.stored"

#: ``{hash, account_id, bytes, media_type, source}`` — a non-image file was stored and recorded.
FILE_STORED = "file.stored"

#: ``{hash}`` — the last record of some content was removed, so its bytes are being deleted
#: (derivatives keyed by this hash may go too).
BLOB_DELETED = "blob.deleted"

#: Routing keys ingest consumes.
CONSUMED: tuple[str, ...] = ()
