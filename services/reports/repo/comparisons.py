"""SQL of comparisons and their entries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from services.reports.domain import Comparison, Report, Snapshot
from services.reports.matching import Entry, PixelResult


def comparison_of(row: asyncpg.Record | None) -> Comparison | None:
    """A comparisons row as a Comparison (None for no row)."""
    if row is None:
        return None
    values = dict(row)
    values["account_id"] = str(values["account_id"])
    values["reviewed_by"] = str(values["reviewed_by"]) if values["reviewed_by"] else None
    return Comparison(**values)


async def comparison(
    conn: asyncpg.Connection, account_id: str, project: str, sha1: str, sha2: str
) -> Comparison | None:
    """The comparison of two shas in a project."""
    row = await conn.fetchrow(
        "SELECT * FROM comparisons WHERE account_id = $1 AND project = $2 AND sha1 = $3"
        " AND sha2 = $4",
        uuid.UUID(account_id),
        project,
        sha1,
        sha2,
    )
    return comparison_of(row)


async def comparison_by_id(
    conn: asyncpg.Connection, comparison_id: int, *, lock: bool = False
) -> Comparison | None:
    """A comparison by id (``lock`` holds it for this transaction)."""
    suffix = " FOR UPDATE" if lock else ""
    row = await conn.fetchrow(f"SELECT * FROM comparisons WHERE id = $1{suffix}", comparison_id)
    return comparison_of(row)


async def comparisons_of_sha(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str
) -> list[Comparison]:
    """Comparisons where ``sha`` is the before or the after report, oldest first."""
    rows = await conn.fetch(
        "SELECT * FROM comparisons WHERE account_id = $1 AND project = $2"
        " AND (sha1 = $3 OR sha2 = $3 OR before_sha = $3) ORDER BY created_at, id",
        uuid.UUID(account_id),
        project,
        sha,
    )
    return [c for c in map(comparison_of, rows) if c is not None]


async def scheduled_comparisons(
    conn: asyncpg.Connection, account_id: str, project: str, sha: str
) -> list[int]:
    """Ids of comparisons waiting for reports that a newly complete ``sha`` may unblock."""
    rows = await conn.fetch(
        "SELECT id FROM comparisons WHERE account_id = $1 AND project = $2"
        " AND state = 'scheduled' AND (sha1 = $3 OR sha2 = $3 OR $3 = ANY(fallback_shas))",
        uuid.UUID(account_id),
        project,
        sha,
    )
    return [row["id"] for row in rows]


async def schedule_comparison(
    conn: asyncpg.Connection,
    account_id: str,
    project: str,
    sha1: str,
    sha2: str,
    *,
    fallback_shas: list[str],
    link: str | None,
    message: str | None,
    notify: list[str],
    threshold: float,
    include_anti_aliasing: bool,
) -> int:
    """Create the comparison, or reset an existing one of the same shas to run again."""
    comparison_id = await conn.fetchval(
        "INSERT INTO comparisons (account_id, project, sha1, sha2, fallback_shas, link, message,"
        " notify, state, threshold, include_anti_aliasing)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'scheduled', $9, $10)"
        " ON CONFLICT (account_id, project, sha1, sha2) DO UPDATE SET"
        " fallback_shas = EXCLUDED.fallback_shas, link = EXCLUDED.link,"
        " message = EXCLUDED.message, notify = EXCLUDED.notify, state = 'scheduled',"
        " threshold = EXCLUDED.threshold, include_anti_aliasing = EXCLUDED.include_anti_aliasing,"
        " before_report_id = NULL, after_report_id = NULL, before_sha = NULL,"
        " before_revision = NULL, after_revision = NULL, equal = NULL, summary = NULL,"
        " review = NULL, reviewed_by = NULL, reviewed_at = NULL, completed_at = NULL"
        " RETURNING id",
        uuid.UUID(account_id),
        project,
        sha1,
        sha2,
        fallback_shas,
        link,
        message,
        notify,
        threshold,
        include_anti_aliasing,
    )
    await conn.execute("DELETE FROM comparison_entries WHERE comparison_id = $1", comparison_id)
    return comparison_id


async def start_diffing(
    conn: asyncpg.Connection,
    comparison_id: int,
    before: Report,
    after: Report,
    entries: Sequence[Entry],
) -> None:
    """Record what the comparison matched; it now waits for its pending pixel diffs."""
    await conn.execute(
        "UPDATE comparisons SET state = 'diffing', before_report_id = $2, after_report_id = $3,"
        " before_sha = $4, before_revision = $5, after_revision = $6 WHERE id = $1",
        comparison_id,
        before.id,
        after.id,
        before.sha,
        before.revision,
        after.revision,
    )
    await conn.execute(
        "INSERT INTO comparison_entries (comparison_id, position, kind, component, before,"
        " after, ignored, changed_pixels, total_pixels, diff_key, error)"
        " SELECT $1, * FROM unnest($2::int[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[],"
        " $7::bool[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])",
        comparison_id,
        list(range(len(entries))),
        [e.kind for e in entries],
        [e.component for e in entries],
        [e.before.to_record() if e.before else None for e in entries],
        [e.after.to_record() if e.after else None for e in entries],
        [e.ignored for e in entries],
        [e.changed_pixels for e in entries],
        [e.total_pixels for e in entries],
        [e.diff_key for e in entries],
        [e.error for e in entries],
    )
    boxes = [(i, e.bbox) for i, e in enumerate(entries) if e.bbox]
    if boxes:
        await conn.executemany(
            "UPDATE comparison_entries SET bbox = $3 WHERE comparison_id = $1 AND position = $2",
            [(comparison_id, i, bbox) for i, bbox in boxes],
        )


async def pending_pairs(conn: asyncpg.Connection, comparison_id: int) -> list[asyncpg.Record]:
    """The distinct image pairs a comparison still waits for: before/after sha256 and key."""
    return await conn.fetch(
        "SELECT DISTINCT before->>'sha256' AS before_sha256, before->>'blob_key' AS before_key,"
        " after->>'sha256' AS after_sha256, after->>'blob_key' AS after_key"
        " FROM comparison_entries WHERE comparison_id = $1 AND kind = 'pending'",
        comparison_id,
    )


async def settle_pairs(
    conn: asyncpg.Connection, comparison_id: int, results: dict[tuple[str, str], PixelResult]
) -> None:
    """Judge the pending entries whose pair has a result."""
    if not results:
        return
    pairs = list(results.items())
    await conn.execute(
        "UPDATE comparison_entries e SET kind = CASE WHEN r.error IS NOT NULL OR r.changed > 0"
        " THEN 'diff' ELSE 'unchanged' END, changed_pixels = r.changed, total_pixels = r.total,"
        " diff_key = r.diff_key, error = r.error,"
        " bbox = CASE WHEN r.bbox = '' THEN NULL ELSE string_to_array(r.bbox, ',')::int[] END"
        " FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[],"
        " $7::text[], $8::text[]) AS r(b, a, changed, total, diff_key, error, bbox)"
        " WHERE e.comparison_id = $1 AND e.kind = 'pending'"
        " AND e.before->>'sha256' = r.b AND e.after->>'sha256' = r.a",
        comparison_id,
        [b for (b, _), _ in pairs],
        [a for (_, a), _ in pairs],
        [r.changed_pixels for _, r in pairs],
        [r.total_pixels for _, r in pairs],
        [r.diff_key for _, r in pairs],
        [r.error for _, r in pairs],
        [",".join(map(str, r.bbox)) if r.bbox else "" for _, r in pairs],
    )


async def kind_counts(conn: asyncpg.Connection, comparison_id: int) -> dict[str, int]:
    """How many entries of each kind a comparison has."""
    rows = await conn.fetch(
        "SELECT kind, count(*)::int AS n FROM comparison_entries WHERE comparison_id = $1"
        " GROUP BY kind",
        comparison_id,
    )
    return {row["kind"]: row["n"] for row in rows}


async def finish_comparison(
    conn: asyncpg.Connection, comparison_id: int, equal: bool, summary: str
) -> None:
    """Record a comparison's outcome."""
    await conn.execute(
        "UPDATE comparisons SET state = 'done', equal = $2, summary = $3, completed_at = now()"
        " WHERE id = $1",
        comparison_id,
        equal,
        summary,
    )


async def entries(
    conn: asyncpg.Connection,
    comparison_id: int,
    kinds: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[Entry]:
    """A comparison's entries in order, optionally of some kinds and a window of them (one
    kind walks the (comparison, kind, position) index)."""
    rows = await conn.fetch(
        "SELECT position, kind, component, before, after, ignored, changed_pixels,"
        " total_pixels, bbox, diff_key, error, decision FROM comparison_entries"
        " WHERE comparison_id = $1"
        " AND ($2::text[] IS NULL OR kind = ANY($2::text[]))"
        " ORDER BY position LIMIT $3 OFFSET $4",
        comparison_id,
        list(kinds) if kinds is not None else None,
        limit,
        offset,
    )
    return [
        Entry(
            kind=row["kind"],
            component=row["component"],
            before=Snapshot.from_record(row["before"]) if row["before"] else None,
            after=Snapshot.from_record(row["after"]) if row["after"] else None,
            ignored=row["ignored"],
            changed_pixels=row["changed_pixels"],
            total_pixels=row["total_pixels"],
            bbox=list(row["bbox"]) if row["bbox"] else None,
            diff_key=row["diff_key"],
            error=row["error"],
            position=row["position"],
            decision=row["decision"],
        )
        for row in rows
    ]


async def entry_diff_key(conn: asyncpg.Connection, comparison_id: int, position: int) -> str | None:
    """The diff image key of one entry of a comparison."""
    return await conn.fetchval(
        "SELECT diff_key FROM comparison_entries WHERE comparison_id = $1 AND position = $2",
        comparison_id,
        position,
    )


#: The kinds that are changes, as SQL (domain.CHANGE_KINDS).
_CHANGES = "kind IN ('diff', 'added', 'deleted')"


async def decide(
    conn: asyncpg.Connection,
    comparison_id: int,
    position: int,
    decision: str | None,
    user_id: str | None,
) -> Entry | None:
    """Record (or, with None, clear) a person's decision on one change of a comparison; the
    change as it was, or None when ``position`` names no change of it."""
    row = await conn.fetchrow(
        "UPDATE comparison_entries SET decision = $3, decided_by = $4,"
        " decided_at = CASE WHEN $3::text IS NULL THEN NULL ELSE now() END"
        f" WHERE comparison_id = $1 AND position = $2 AND {_CHANGES}"
        " RETURNING kind, component, before, after",
        comparison_id,
        position,
        decision,
        uuid.UUID(user_id) if user_id and decision else None,
    )
    if row is None:
        return None
    return Entry(
        kind=row["kind"],
        component=row["component"],
        before=Snapshot.from_record(row["before"]) if row["before"] else None,
        after=Snapshot.from_record(row["after"]) if row["after"] else None,
        position=position,
        decision=decision,
    )


async def decide_remaining(
    conn: asyncpg.Connection, comparison_id: int, decision: str, user_id: str | None
) -> int:
    """Give every change nobody decided yet the same decision; how many there were."""
    result = await conn.execute(
        "UPDATE comparison_entries SET decision = $2, decided_by = $3, decided_at = now()"
        f" WHERE comparison_id = $1 AND decision IS NULL AND {_CHANGES}",
        comparison_id,
        decision,
        uuid.UUID(user_id) if user_id else None,
    )
    return int(result.split()[-1])


async def decision_counts(conn: asyncpg.Connection, comparison_id: int) -> dict[str | None, int]:
    """How many changes of a comparison carry each decision (None: undecided)."""
    rows = await conn.fetch(
        "SELECT decision, count(*)::int AS n FROM comparison_entries"
        f" WHERE comparison_id = $1 AND {_CHANGES} GROUP BY decision",
        comparison_id,
    )
    return {row["decision"]: row["n"] for row in rows}


async def changes(conn: asyncpg.Connection, comparison_id: int, limit: int) -> list[asyncpg.Record]:
    """The first ``limit`` changes of a comparison, as its page lists them (diffs, then added,
    then deleted, each in position order), with what the review list shows of each."""
    return await conn.fetch(
        "SELECT position, kind, component, decision, bbox,"
        " coalesce(after->>'variant', before->>'variant') AS variant,"
        " coalesce(after->>'target', before->>'target') AS target"
        f" FROM comparison_entries WHERE comparison_id = $1 AND {_CHANGES}"
        " ORDER BY array_position(ARRAY['diff', 'added', 'deleted'], kind), position"
        " LIMIT $2",
        comparison_id,
        limit,
    )


async def review(
    conn: asyncpg.Connection, comparison_id: int, review: str | None, user_id: str | None
) -> None:
    """Record a comparison's review as derived from its changes' decisions (None: it waits),
    and who made the decision that settled it."""
    await conn.execute(
        "UPDATE comparisons SET review = $2, reviewed_by = $3,"
        " reviewed_at = CASE WHEN $2::text IS NULL THEN NULL ELSE now() END WHERE id = $1",
        comparison_id,
        review,
        uuid.UUID(user_id) if user_id and review else None,
    )
