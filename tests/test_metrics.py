"""``GET /metrics`` on every process, in the Prometheus text format: request counts by route
template and status, latency histograms, events published and consumed, queue depth,
processing durations and storage bytes — through the gateway and on a service directly."""

from __future__ import annotations

import asyncio
import time

from services.processing.consumers import ANALYSES_CONSUMER, COMPARISONS_CONSUMER
from shared.analysis import ANALYSIS_COMPLETED
from shared.config import SERVICES
from tests.clients_support import upload
from tests.hautai_support import analysed, compute, login, new_subject, put, signed_upload
from tests.hautai_support import photo as hautai_photo
from tests.images_support import random_png
from tests.metrics_support import scrape, value
from tests.progimage_support import bearer


async def eventually(check, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the metric did not rise in time"
        await asyncio.sleep(0.1)


async def test_every_process_answers_its_own_metrics(stack, http):
    gateway = await scrape(http, stack.url)
    # The gateway serves its own /metrics (not proxied to a service): its process label.
    assert value(gateway, "darkroom_http_requests_total", process="gateway") >= 0
    assert {s.labels["process"] for s in gateway.get("darkroom_http_requests_total", [])} <= {
        "gateway"
    }
    for name in SERVICES:
        await scrape(http, stack.service_urls[name])  # once, so it has counted a request
        samples = await scrape(http, stack.service_urls[name])
        assert (
            value(
                samples,
                "darkroom_http_requests_total",
                process=name,
                route="/metrics",
                method="GET",
                status="200",
            )
            >= 1
        ), name


async def test_gateway_counts_requests_by_routing_prefix_with_a_histogram(stack, http, account):
    before = await scrape(http, stack.url)
    for _ in range(3):
        async with http.get(f"{stack.url}/user", headers=bearer(account)) as response:
            assert response.status == 200
    async with http.get(f"{stack.url}/user") as response:
        assert response.status == 401
    async with http.get(f"{stack.url}/api/keys/no-such-key-123", headers=bearer(account)) as r:
        assert r.status in {404, 405}
        missing_status = str(r.status)
    after = await scrape(http, stack.url)

    def rise(samples_after, samples_before, **labels) -> float:
        name = "darkroom_http_requests_total"
        return value(samples_after, name, **labels) - value(samples_before, name, **labels)

    assert rise(after, before, route="/user", method="GET", status="200") == 3
    assert rise(after, before, route="/user", method="GET", status="401") == 1
    # Labelled by the routing table's prefix, never the raw path.
    assert rise(after, before, route="/api/keys", status=missing_status) == 1
    assert not any(
        "no-such-key" in s.labels["route"] for s in after["darkroom_http_requests_total"]
    )
    buckets = [
        s
        for s in after["darkroom_http_request_duration_seconds_bucket"]
        if s.labels["route"] == "/user" and s.labels["method"] == "GET"
    ]
    assert len(buckets) > 5
    assert {s.labels["le"] for s in buckets} >= {"0.1", "1.0", "+Inf"}
    count = value(after, "darkroom_http_request_duration_seconds_count", route="/user")
    assert count - value(before, "darkroom_http_request_duration_seconds_count", route="/user") == 4


async def test_a_service_reached_directly_labels_by_route_template(stack, http):
    ingest = stack.service_urls["ingest"]
    before = await scrape(http, ingest)
    # Unsigned: refused (403) by the service, and counted under the route's template.
    async with http.get(f"{ingest}/f/0123456789abcdef.png") as response:
        assert response.status == 403
    async with http.get(f"{ingest}/no/such/path") as response:
        assert response.status in {403, 404}
    after = await scrape(http, ingest)
    name = "darkroom_http_requests_total"
    labels = {"process": "ingest", "route": "/f/{tail}", "method": "GET", "status": "403"}
    assert value(after, name, **labels) - value(before, name, **labels) == 1
    routes = {s.labels["route"] for s in after[name]}
    assert "/f/0123456789abcdef.png" not in routes and "/no/such/path" not in routes
    assert "(unmatched)" in routes


async def test_an_upload_publishes_and_an_analysis_is_consumed_timed_and_stored(
    stack, http, client, account
):
    ingest, processing = stack.service_urls["ingest"], stack.service_urls["processing"]
    before_ingest = await scrape(http, ingest)
    await upload(client, stack, random_png())

    async def stored_published() -> bool:
        samples = await scrape(http, ingest)
        return value(samples, "darkroom_events_published_total", type="image.stored") > value(
            before_ingest, "darkroom_events_published_total", type="image.stored"
        )

    await eventually(stored_published)
    after_upload = await scrape(http, ingest)
    written = "darkroom_storage_written_bytes_total"
    assert value(after_upload, written, backend="local") > value(
        before_ingest, written, backend="local"
    )

    # Three Haut.ai-style images sent to compute: three durable analysis jobs for processing.
    company = await login(http, stack, account)
    _, subject = await new_subject(http, company)
    ids, batch_id = [], None
    for _ in range(3):
        image = await signed_upload(http, company, subject, batch_id=batch_id)
        batch_id = image["image_batch_id"]
        await put(http, image["upload_url"], hautai_photo())
        ids.append(image["id"])
    before = await scrape(http, processing)
    await compute(http, company, batch_id)
    images = await analysed(http, company, ids)
    assert {image["status"] for image in images.values()} == {"done"}, images
    consumed = "darkroom_events_consumed_total"
    labels = {"consumer": ANALYSES_CONSUMER, "outcome": "ok"}

    async def analyses_consumed() -> bool:
        samples = await scrape(http, processing)
        return value(samples, consumed, **labels) - value(before, consumed, **labels) >= 3

    # The answers are relayed from the consumer's commit, which may count just after.
    await eventually(analyses_consumed)
    after = await scrape(http, processing)
    duration = "darkroom_processing_duration_seconds_count"
    assert (
        value(after, duration, operation="analyse") - value(before, duration, operation="analyse")
        >= 3
    )
    assert any(
        s.labels["operation"] == "analyse" and s.labels["le"] == "+Inf"
        for s in after["darkroom_processing_duration_seconds_bucket"]
    )
    read = "darkroom_storage_read_bytes_total"
    assert value(after, read, backend="local") > value(before, read, backend="local")

    async def completed_published() -> bool:
        samples = await scrape(http, processing)
        name = "darkroom_events_published_total"
        return (
            value(samples, name, type=ANALYSIS_COMPLETED)
            >= value(before, name, type=ANALYSIS_COMPLETED) + 3
        )

    await eventually(completed_published)
    # Queue depth of every consumer queue (and its dead letters), read from the broker.
    queues = {s.labels["queue"]: s.value for s in after["darkroom_event_queue_depth"]}
    exchange = stack.env["DARKROOM_EXCHANGE"]
    for consumer in (ANALYSES_CONSUMER, COMPARISONS_CONSUMER):
        assert f"{exchange}.{consumer}" in queues, queues
        assert f"{exchange}.{consumer}.dead" in queues, queues
        assert queues[f"{exchange}.{consumer}"] >= 0
