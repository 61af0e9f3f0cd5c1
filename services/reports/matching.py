"""How a comparison judges two reports, as plain values: the snapshots paired by (component,
variant, target), each pair judged, the entries tallied and summed up. No I/O here (the
comparison's steps and transactions are :mod:`comparing`'s)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from services.reports.domain import Snapshot


def ignored_pair(first_sha256: str, second_sha256: str) -> tuple[str, str]:
    """An ignored diff's key: the two images in a fixed order (either order is the same)."""
    return (
        (first_sha256, second_sha256)
        if first_sha256 <= second_sha256
        else (
            second_sha256,
            first_sha256,
        )
    )


@dataclass
class Entry:
    """One line of a comparison."""

    kind: str  # added, deleted, unchanged, diff, pending (waiting for the pixel diff)
    component: str
    before: Snapshot | None
    after: Snapshot | None
    ignored: bool = False
    changed_pixels: int | None = None
    total_pixels: int | None = None
    bbox: list[int] | None = None
    diff_key: str | None = None
    error: str | None = None
    #: Its place in the comparison once stored (names its diff image).
    position: int | None = None
    #: A person's decision on this change once stored: accepted, rejected, ignored or None.
    decision: str | None = None


@dataclass(frozen=True)
class PixelResult:
    """What processing found for a pair of images."""

    changed_pixels: int
    total_pixels: int
    bbox: list[int] | None
    diff_key: str | None
    error: str | None = None

    @property
    def differs(self) -> bool:
        """True when the pair counts as a diff."""
        return self.error is not None or self.changed_pixels > 0


def match_snapshots(
    before: Iterable[Snapshot],
    after: Iterable[Snapshot],
    *,
    ignored: set[tuple[str, str]],
    skipped: set[tuple[str, ...]],
) -> list[Entry]:
    """Pair the snapshots of two reports by (component, variant, target) and judge each pair.

    Same content is ``unchanged`` without looking at a pixel; an ignored pair is ``unchanged``
    (marked ``ignored``); the rest are ``pending`` until processing diffs them (or answers from
    its cache of pairs it diffed before). A before-snapshot the after report skipped on
    purpose (``skipped`` holds (component,) or (component, variant) or the full key) is not
    ``deleted``.
    """
    earlier = {snapshot.key: snapshot for snapshot in before}
    entries: list[Entry] = []
    for snapshot in after:
        old = earlier.pop(snapshot.key, None)
        if old is None:
            entries.append(Entry("added", snapshot.component, None, snapshot))
        elif old.sha256 == snapshot.sha256:
            entries.append(Entry("unchanged", snapshot.component, old, snapshot))
        elif ignored_pair(old.sha256, snapshot.sha256) in ignored:
            entries.append(Entry("unchanged", snapshot.component, old, snapshot, ignored=True))
        else:
            entries.append(Entry("pending", snapshot.component, old, snapshot))
    for old in earlier.values():
        key = old.key
        if key[:1] in skipped or key[:2] in skipped or key in skipped:
            continue
        entries.append(Entry("deleted", old.component, old, None))
    return entries


@dataclass(frozen=True)
class Tally:
    """How many entries of each kind a comparison has."""

    diffs: int = 0
    added: int = 0
    deleted: int = 0
    unchanged: int = 0
    pending: int = 0

    @classmethod
    def of(cls, kinds: Mapping[str, int]) -> Tally:
        """From counts by kind."""
        return cls(
            diffs=kinds.get("diff", 0),
            added=kinds.get("added", 0),
            deleted=kinds.get("deleted", 0),
            unchanged=kinds.get("unchanged", 0),
            pending=kinds.get("pending", 0),
        )

    @property
    def changes(self) -> int:
        """What a person reviews: diffs, added and deleted snapshots (the badge's number)."""
        return self.diffs + self.added + self.deleted

    @property
    def equal(self) -> bool:
        """True when nothing was added, deleted or changed."""
        return self.diffs == 0 and self.added == 0 and self.deleted == 0 and self.pending == 0


def summary(tally: Tally) -> str:
    """The one-line summary the clients print."""
    if tally.equal:
        return f"No differences ({_count(tally.unchanged, 'unchanged snapshot')})"
    parts = [
        _count(tally.diffs, "diff"),
        f"{tally.added} added",
        f"{tally.deleted} deleted",
        f"{tally.unchanged} unchanged",
    ]
    return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def diff_components(entries: Iterable[Entry]) -> list[str]:
    """Components with a diff, an added or a deleted snapshot (in first-seen order)."""
    seen: dict[str, None] = {}
    for entry in entries:
        if entry.kind in {"diff", "added", "deleted"}:
            seen.setdefault(entry.component, None)
    return list(seen)
