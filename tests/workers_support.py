"""Processes, workers and waiting: Darkroom started as a subprocess, processing workers on an
exchange and a database of their own, durable jobs (analyses, comparisons) published to them,
and polling until a condition holds."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import aiohttp
import asyncpg
import pytest

from services.processing.consumers import ANALYSES_CONSUMER
from shared.analysis import ANALYSIS_COMPLETED, ANALYSIS_FAILED, ANALYSIS_REQUESTED
from shared.comparisons import COMPARISON_DIFFED, COMPARISON_REQUESTED
from shared.events import Broker, new_event
from shared.runtime import STORE
from tests.conftest import AMQP_URL, PG_ADMIN, ROOT, delete_topology, free_port


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def store_original(stack, data: bytes) -> dict[str, str]:
    """Put ``data`` in the store where ingest keeps originals; the event's ``original``."""
    sha256 = hashlib.sha256(data).hexdigest()
    key = f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"
    await stack.apps["processing"][STORE].put(key, data)
    return {"sha256": sha256, "key": key, "media_type": "image/jpeg"}


class Process:
    """A Darkroom process started as ``python -m <module>`` with its stderr kept in a file."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.pid = self.popen.pid

    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    async def terminate(self) -> float:
        """Send SIGTERM; return when it exited, how many seconds it took."""
        sent = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self.popen.wait, 60)
        return time.monotonic() - sent

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self.log.close()


@pytest.fixture
async def workers_env(stack) -> AsyncIterator[dict[str, str]]:
    """The stack's environment on an exchange and a database of its own (both deleted
    afterwards)."""
    name = f"{stack.env['DARKROOM_EXCHANGE']}_life_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield {
        **stack.env,
        "DATABASE_URL": PG_ADMIN.rsplit("/", 1)[0] + f"/{name}",
        "DARKROOM_EXCHANGE": name,
        "DARKROOM_PROCESSING_WORKERS": "1",
        "DARKROOM_LOG_LEVEL": "info",
        "DARKROOM_LOG_FORMAT": "json",
    }
    await delete_topology(name)
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def answer_key(answer: dict) -> str | None:
    """The job an answer is about, as :class:`Jobs` names jobs: a comparison's id, or the
    SHA-256 of the original an analysis is of."""
    if answer["type"] == COMPARISON_DIFFED:
        return answer["data"].get("comparison_id")
    return answer["data"].get("original_sha256")


class Jobs:
    """Publishes durable jobs on the workers' exchange and watches their answers: analyses of
    originals (quick), and comparisons of large images when a job must take seconds."""

    def __init__(self, broker: Broker, answers: aio_pika.abc.AbstractQueue) -> None:
        self.broker = broker
        self.answers = answers

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, exchange: str) -> AsyncIterator[Jobs]:
        broker = await Broker.connect(AMQP_URL, exchange)
        try:
            channel = await broker.connection.channel()
            answers = await channel.declare_queue(exclusive=True, auto_delete=True)
            for key in (ANALYSIS_COMPLETED, ANALYSIS_FAILED, COMPARISON_DIFFED):
                await answers.bind(broker.exchange, routing_key=key)
            yield cls(broker, answers)
        finally:
            await broker.close()

    async def request(self, stack, original: bytes) -> tuple[str, str]:
        """Store ``original`` and publish ``analysis.requested`` for it; returns the event id
        and the job's key, the original's SHA-256 (an analysis is recorded once per original's
        bytes, so each job needs an original of its own)."""
        stored = await store_original(stack, original)
        data = {"image_id": str(uuid.uuid4()), "original": stored, "app_args": None}
        envelope = new_event(ANALYSIS_REQUESTED, data)
        await self.broker.publish(envelope)
        return envelope.id, stored["sha256"]

    async def compare(self, stack, before: bytes, after: bytes) -> tuple[str, str]:
        """Store both images and publish ``comparison.requested`` of the pair (a diff at full
        size: seconds of libvips for large images); returns the event id and the job's key, the
        comparison's id. Anti-aliased pixels count as changed: the work is then decoding,
        comparing and encoding the diff (about as costly as a derivative of the same pixels),
        not pixelmatch's per-pixel test, whose cost grows with the change."""
        pair = {
            "before": await store_original(stack, before),
            "after": await store_original(stack, after),
        }
        comparison_id = str(uuid.uuid4())
        envelope = new_event(
            COMPARISON_REQUESTED,
            {
                "comparison_id": comparison_id,
                "account_id": str(uuid.uuid4()),
                "threshold": 0.1,
                "include_anti_aliasing": True,
                "pairs": [pair],
            },
        )
        await self.broker.publish(envelope)
        return envelope.id, comparison_id

    async def ready(self, consumer: str = ANALYSES_CONSUMER) -> int:
        """Messages ready (not delivered to anyone) in ``consumer``'s queue."""
        channel = await self.broker.connection.channel()
        try:
            queue = await channel.declare_queue(self.broker.queue_name(consumer), passive=True)
            return queue.declaration_result.message_count or 0
        finally:
            await channel.close()

    async def answers_for(self, key: str, seconds: float) -> list[dict]:
        """Every answer about ``key`` that arrives within ``seconds`` (or a second after the
        first one)."""
        found: list[dict] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = await self.answers.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            body = json.loads(message.body)
            if answer_key(body) == key:
                found.append(body)
                # A second answer (a repeat) would follow within moments; wait no longer.
                deadline = min(deadline, time.monotonic() + 1.0)
        return found


async def until(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def start_worker(http, env: dict[str, str], grace: float) -> Process:
    port = free_port()
    worker = Process(
        "services.processing",
        {**env, "DARKROOM_PROCESSING_PORT": str(port), "DARKROOM_SHUTDOWN_GRACE": str(grace)},
    )
    if not await wait_healthy(http, port, 30):
        said = worker.stderr()  # before kill() closes the log
        worker.kill()
        pytest.fail(f"processing worker did not start on port {port}: {said[-4000:]}")
    return worker


async def wait_healthy(http: aiohttp.ClientSession, port: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                if r.status == 200:
                    return True
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    return False
