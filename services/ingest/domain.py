"""Plain values every ingest dialect shares: a stored blob as serving sees it, the payload of
the stored events, ids from paths and the seeds' timestamp spelling.

Nothing here touches the database or the network. Each dialect's own rules are in its
package's ``domain.py`` (``happo``, ``hashhost``, ``progimage``, ``hautai``); the content
checks are in :mod:`services.ingest.content_checks`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from services.ingest.content_checks import Content


@dataclass(frozen=True)
class Blob:
    """A stored content: what serving needs to know about it."""

    sha256: str
    size: int
    media_type: str


def stored_event_data(content: Content, account_id: str | None, source: str) -> dict:
    """The ``image.stored`` / ``file.stored`` payload of a new record of ``content``
    (``source``: ``happo``, ``hashhost``, ``progimage`` or ``hautai``)."""
    data = {
        "hash": content.sha256,
        "account_id": account_id,
        "bytes": content.size,
        "media_type": content.media_type,
        "source": source,
    }
    if content.image:
        data.update(
            format=content.format,
            width=content.width,
            height=content.height,
            frames=content.frames,
        )
    return data


def parse_uuid(text: str) -> uuid.UUID | None:
    """A UUID from a path segment or a field, or None when it is not one."""
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return None


def iso_millis(moment: datetime) -> str:
    """``2016-12-04T06:34:37.650Z``: the seeds' timestamp spelling."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
