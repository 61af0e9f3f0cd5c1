"""Many clients uploading the same bytes at the same moment: one blob, one record per tenant."""

from __future__ import annotations

import asyncio
import hashlib

from services.ingest.domain import blob_key
from shared.runtime import POOL, STORE
from tests.test_ingest_happo import post_image, upload_url
from tests.test_ingest_hashhost import random_png

UPLOADS = 20


async def test_twenty_concurrent_identical_uploads_store_one_blob(
    client, stack, account, other_account, resilience
):
    data = random_png(64, 48)
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients name images by MD5
    sha256 = hashlib.sha256(data).hexdigest()
    tenants = [account, other_account] * (UPLOADS // 2)
    # Every client asks first (nothing is uploaded yet, so each gets its own one-time URL)...
    asked = await asyncio.gather(*(upload_url(client, stack, t, md5) for t in tenants))
    # ...then all of them upload at once.
    answers = await asyncio.gather(
        *(
            post_image(client, answer["uploadUrl"], tenant, data)
            for (_status, answer), tenant in zip(asked, tenants, strict=True)
        )
    )
    statuses = [status for status, _body in answers]
    pool = stack.apps["ingest"][POOL]
    store = stack.apps["ingest"][STORE]
    blobs = await pool.fetchval("SELECT count(*) FROM blobs WHERE sha256 = $1", sha256)
    records = await pool.fetch(
        "SELECT account_id::text, count(*) AS n FROM happo_images WHERE sha256 = $1"
        " GROUP BY account_id",
        sha256,
    )
    stored_events = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE type = 'image.stored'"
        " AND envelope->'data'->>'happo_hash' = $1",
        md5,
    )
    stored = [key async for key in store.keys("sha256/") if key == blob_key(sha256)]
    per_tenant = {row["account_id"]: row["n"] for row in records}
    resilience.row(
        "faults",
        "20 concurrent identical uploads from two tenants",
        injected="20 Happo image uploads of the same bytes at once (10 per tenant)",
        observed=f"answers {sorted(set(statuses))}; {len(stored)} stored object, {blobs} blob "
        f"row, records per tenant {sorted(per_tenant.values())}, {stored_events} "
        "`image.stored` events",
        accepted=sum(status == 200 for status in statuses),
        effects=blobs,
        duplicates=sum(per_tenant.values()) - len(per_tenant) + max(blobs - 1, 0),
        errors_5xx=sum(status >= 500 for status in statuses),
    )
    assert all(status == 200 for status, _ in asked)
    assert statuses == [200] * UPLOADS, answers
    assert len(stored) == 1 and blobs == 1
    assert per_tenant == {account["account_id"]: 1, other_account["account_id"]: 1}
    assert stored_events == 2
    assert await store.read(blob_key(sha256)) == data
