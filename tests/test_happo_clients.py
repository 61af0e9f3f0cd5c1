"""The REAL Happo npm clients against Darkroom, through the gateway, with only their ``endpoint``
pointed at it: happo.io 13.0.1's CLI, and happo-e2e 5.0.0 + happo-cypress 4.3.1 with
``localSnapshots`` (screenshots taken on the client, uploaded through the Image API).

The clients come from npm (``tests/happo_clients/package.json`` + lockfile), installed once per
machine into ``~/.cache/darkroom/happo-clients/<hash>`` (never into the repo); when npm's
registry cannot be reached every test here is skipped. Each client runs as a subprocess with a
clean environment (no CI variables, no proxy) in a temporary directory holding its
``.happo.js``::

    const { RemoteBrowserTarget } = require('happo.io');
    module.exports = {
      endpoint: '<stack.url>', apiKey: '<key>', apiSecret: '<secret>',
      targets: { chrome: new RemoteBrowserTarget('chrome', { viewport: '1024x768' }) },
      // compareThreshold: 0.5,   (deep compare only)
    };

That is the minimal valid config for these commands: happo.io's loader only demands a
non-empty ``targets`` (its defaults even provide one); constructing a ``RemoteBrowserTarget``
is local, and only ``happo run`` / DOM snapshots call its ``execute()`` (remote rendering).

Every request the clients make is recorded at the gateway (its request handler is wrapped for
the test, nothing else changes) and the tests assert the exact sequences below. ``<token>`` is
the signed upload URL's token; ``2xx`` any success (the clients check ``response.ok`` and then
always ``response.json()``). Every call carries ``Authorization: Bearer <JWT>`` (HS256,
``kid`` = payload ``key`` = apiKey, no ``exp``), including the POST to ``uploadUrl`` and the
deep compare's image GETs.

happo.io 13 CLI (``node_modules/.bin/happo``):

* ``happo start-job A B`` → ``POST /api/jobs/A/B`` ``{}`` (project/link/message when given;
  5 retries) → prints the job's ``id`` on a line of its own, exit 0.
* ``happo has-report S`` → ``GET /api/reports/S`` (no retry) → exit 0 on any 2xx JSON, exit 1
  on any error (404 before the report exists).
* ``happo compare A B`` → ``POST /api/reports/A/compare/B`` ``{"isAsync": false}`` → prints
  ``summary``; exit 0 when ``equal``, 113 otherwise (5 retries).
* ``happo compare A B --async`` → the same POST with ``{"isAsync": true}`` → prints
  ``Async comparison created with ID=<id>``, exit 0.
* deep compare (``compareThreshold`` in ``.happo.js``)::

      POST /api/reports/A/compare/B   {"skipStatusPost": true, "isAsync": false}
                                       → diffs [[before, after], ...] (each with id, url, ...)
      GET  <before.url>, GET <after.url> (per pair whose sizes match; Bearer JWT because the
                                          URLs start with the endpoint; PNG bodies)
      POST /api/ignored-diffs          {"snapshot1Id": before.id, "snapshot2Id": after.id}
                                       (per pair whose every pixel's YIQ delta ≤ threshold)
      POST /api/reports/A/compare/B   {"skipStatusPost": false, "isAsync": false}
                                       → summary (printed), exit 0 when equal / 113

happo-e2e 5 + happo-cypress 4, ``happo-e2e --port P -- node cypress_run.js plan.json``
(``cypress_run.js`` stands in for ``cypress run``: it registers ``happo-cypress/task`` as
``setupNodeEvents`` would and emits before:spec, the ``happoRegisterLocalSnapshot`` task +
after:screenshot per screenshot, after:spec; the wrapper passes ``HAPPO_E2E_PORT=P`` to it).
The environment is a CI run's: ``HAPPO_CURRENT_SHA`` (after), ``HAPPO_PREVIOUS_SHA`` (before),
``HAPPO_CHANGE_URL`` (link), ``HAPPO_MESSAGE``, and for parallel runs ``HAPPO_NONCE``::

      per screenshot (after:screenshot):
        GET  /api/images/<md5>/upload-url               (md5 of the PNG file's bytes)
        POST <uploadUrl> multipart file=image.png       (only when uploadUrl is not null)
      per spec (after:spec):
        POST /api/snap-requests/with-results {"snaps": [{component, variant, target, url,
                                                          width, height}]} → requestId
        (the requestId goes to the wrapper on localhost:P; with HAPPO_NONCE the wrapper
         at once POSTs /api/async-reports/<after> {"requestIds": [id], "nonce"})
      after the command exited 0 (the wrapper):
        POST /api/async-reports/<after>  {"requestIds": [all ids], "link", "message",
                                          "nonce"?}     → url (printed when no before sha)
        POST /api/jobs/<before>/<after> {"link", "message"}  → url (printed)
        POST /api/reports/<before>/compare/<after> {"isAsync": true, "link", "message"}
                                        (only without HAPPO_NONCE and when before != after)
  ``happo-e2e finalize`` (HAPPO_NONCE required)::

        POST /api/async-reports/<after>/finalize  {"nonce"}
        POST /api/reports/<before>/compare/<after> {"isAsync": true, "link", "message"}

  Note the Controller dedupes a spec's local snapshots by (component, variant) only.

  Recorded at the gateway for two specs (header+button, footer; the header's bytes were
  already in the account, so its upload is skipped), no nonce::

        GET /api/images/<header>/upload-url, GET /api/images/<button>/upload-url,
        POST /api/images/upload/<token>, POST /api/snap-requests/with-results,
        GET /api/images/<footer>/upload-url, POST /api/images/upload/<token>,
        POST /api/snap-requests/with-results, POST /api/async-reports/<after>,
        POST /api/jobs/<before>/<after>, POST /api/reports/<before>/compare/<after>

  and for two parallel runs sharing HAPPO_NONCE (one spec each): 2 with-results, 4
  async-reports (each run: its id at once, then all its ids again), 2 jobs; then finalize and
  one async compare. All ``User-Agent: happo.io@13.0.1`` except the deep compare's image GETs
  (node-fetch's default).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import pyvips

from tests import happo_clients_support as clients
from tests.conftest import free_port
from tests.happo_clients_support import (
    CLIENTS,
    NODE,
    Ran,
    api,
    client_env,
    compare,
    completed_status,
    happo,
    new_sha,
    post_report,
    report_status,
    run,
    write_config,
)

pytestmark = pytest.mark.timeout(600)
#: The fixtures these tests share with the other Happo client tests.
happo_modules = clients.happo_modules
gateway_calls = clients.gateway_calls

DRIVER = CLIENTS / "cypress_run.js"
TARGET = "chrome-1280x720"  # what happo-cypress names a Cypress chrome run at 1280x720


# --- screenshots -----------------------------------------------------------------------------

BLACK, SUBTLE, WHITE = (0, 0, 0), (100, 100, 100), (255, 255, 255)
# YIQ deltas of happo.io's deep compare (0..1): black→(100,100,100) 0.14, black→white 0.93.
THRESHOLD = 0.5


def screenshot(width: int, height: int, tint: int, change: tuple | None = None) -> bytes:
    """A PNG of four flat quadrants (the top-left one black) so a changed block is a plain
    pixel difference, never anti-aliasing; ``change`` = ``(colour, x, y)`` paints 10x10."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2, width // 2 :] = (200, tint, 60)
    pixels[height // 2 :, : width // 2] = (60, 200, tint)
    pixels[height // 2 :, width // 2 :] = (tint, 60, 200)
    if change:
        colour, x, y = change
        pixels[y : y + 10, x : x + 10] = colour
    image = pyvips.Image.new_from_memory(pixels.tobytes(), width, height, 3, "uchar")
    return image.write_to_buffer(".png")


# --- happo.io 13 CLI -------------------------------------------------------------------------


async def test_start_job_prints_the_job_id_and_reuses_it(
    happo_modules, stack, http, gateway_calls, tmp_path
):
    account = stack.create_account()
    cwd = write_config(tmp_path, stack, account)
    sha1, sha2 = new_sha(), new_sha()

    first = await happo(happo_modules, cwd, "start-job", sha1, sha2)
    assert first.returncode == 0, str(first)
    assert re.fullmatch(r"\d+", first.stdout.strip()), str(first)
    again = await happo(happo_modules, cwd, "start-job", sha1, sha2)
    assert again.returncode == 0, str(again)
    assert again.stdout.strip() == first.stdout.strip(), f"{first}{again}"

    assert gateway_calls.lines(sha1=sha1, sha2=sha2) == ["POST /api/jobs/<sha1>/<sha2> 2xx"] * 2
    assert all(c.user_agent == "happo.io@13.0.1" for c in gateway_calls.calls)
    assert all(c.authorization.startswith("Bearer ey") for c in gateway_calls.calls)
    # The API agrees: the same job for the same shas, with a link to it.
    status, job = await api(http, "POST", f"{stack.url}/api/jobs/{sha1}/{sha2}", account, {})
    assert status == 200, job
    assert job["id"] == int(first.stdout.strip())
    assert isinstance(job["url"], str) and job["url"].startswith("http")


async def test_has_report_exits_1_before_and_0_after_a_report(
    happo_modules, stack, http, gateway_calls, tmp_path
):
    account = stack.create_account()
    cwd = write_config(tmp_path, stack, account)
    sha = new_sha()

    before = await happo(happo_modules, cwd, "has-report", sha)
    assert before.returncode == 1, str(before)
    await post_report(http, stack, account, sha, [("Button", "default", screenshot(64, 48, 10))])
    after = await happo(happo_modules, cwd, "has-report", sha)
    assert after.returncode == 0, str(after)

    assert gateway_calls.lines(sha=sha) == [
        "GET /api/reports/<sha> 404",
        "GET /api/reports/<sha> 2xx",
    ]


async def test_compare_equal_changed_and_async(happo_modules, stack, http, gateway_calls, tmp_path):
    account = stack.create_account()
    cwd = write_config(tmp_path, stack, account)
    button, card = screenshot(64, 48, 20), screenshot(80, 40, 30)
    button_changed = screenshot(64, 48, 20, change=(WHITE, 5, 5))
    base, same, changed = new_sha(), new_sha(), new_sha()
    await post_report(
        http, stack, account, base, [("Button", "default", button), ("Card", "default", card)]
    )
    await post_report(
        http, stack, account, same, [("Button", "default", button), ("Card", "default", card)]
    )
    await post_report(
        http,
        stack,
        account,
        changed,
        [("Button", "default", button_changed), ("Card", "default", card)],
    )
    gateway_calls.clear()

    equal = await happo(happo_modules, cwd, "compare", base, same)
    assert equal.returncode == 0, str(equal)
    answer = await compare(http, stack, account, base, same)
    assert answer["equal"] is True, answer
    assert answer["summary"] and answer["summary"] in equal.stdout, f"{answer}{equal}"

    differs = await happo(happo_modules, cwd, "compare", base, changed)
    assert differs.returncode == 113, str(differs)
    answer = await compare(http, stack, account, base, changed)
    assert answer["equal"] is False, answer
    assert [[b["component"], a["component"]] for b, a in answer["diffs"]] == [
        ["Button", "Button"]
    ], answer
    assert answer["summary"] and answer["summary"] in differs.stdout, f"{answer}{differs}"

    later = await happo(happo_modules, cwd, "compare", base, changed, "--async")
    assert later.returncode == 0, str(later)
    assert re.search(r"Async comparison created with ID=\d+\s*$", later.stdout), str(later)

    assert gateway_calls.lines(base=base, same=same, changed=changed) == [
        "POST /api/reports/<base>/compare/<same> 2xx",
        "POST /api/reports/<base>/compare/<changed> 2xx",
        "POST /api/reports/<base>/compare/<changed> 2xx",
    ]


async def test_deep_compare_ignores_diffs_under_the_threshold(
    happo_modules, stack, http, gateway_calls, tmp_path
):
    account = stack.create_account()
    cwd = write_config(tmp_path, stack, account, compareThreshold=THRESHOLD)
    button, card = screenshot(64, 48, 40), screenshot(80, 40, 50)
    button_subtle = screenshot(64, 48, 40, change=(SUBTLE, 5, 5))
    button_subtle_elsewhere = screenshot(64, 48, 40, change=(SUBTLE, 15, 8))
    card_strong = screenshot(80, 40, 50, change=(WHITE, 5, 5))
    base, subtle, mixed = new_sha(), new_sha(), new_sha()
    shots = {
        base: [("Button", "default", button), ("Card", "default", card)],
        subtle: [("Button", "default", button_subtle), ("Card", "default", card)],
        mixed: [("Button", "default", button_subtle_elsewhere), ("Card", "default", card_strong)],
    }
    for sha, snaps in shots.items():
        await post_report(http, stack, account, sha, snaps)
    gateway_calls.clear()

    # Only a diff under the threshold: ignored, and the second compare call is equal.
    deep = await happo(happo_modules, cwd, "compare", base, subtle)
    assert deep.returncode == 0, str(deep)
    assert f"Found 1 diffs to deep-compare using threshold {THRESHOLD}" in deep.stdout, str(deep)
    assert "Button - default - chrome - diff below threshold, auto-ignoring" in deep.stdout, str(
        deep
    )
    assert "1 out of 1 were below threshold and auto-ignored" in deep.stdout, str(deep)
    labels = {
        "base": base,
        "subtle": subtle,
        "img": f"/img/{account['account_id']}/",
        "button": hashlib.md5(button).hexdigest(),  # noqa: S324
        "button_subtle": hashlib.md5(button_subtle).hexdigest(),  # noqa: S324
    }
    lines = gateway_calls.lines(**labels)
    assert lines[0] == "POST /api/reports/<base>/compare/<subtle> 2xx", lines
    assert sorted(lines[1:3]) == [
        "GET <img><button> 2xx",
        "GET <img><button_subtle> 2xx",
    ], lines
    assert lines[3:] == [
        "POST /api/ignored-diffs 2xx",
        "POST /api/reports/<base>/compare/<subtle> 2xx",
    ], lines
    # The image GETs (node-fetch's own User-Agent) went to the endpoint: they carried the JWT.
    for call in gateway_calls.calls[1:3]:
        assert call.user_agent.startswith("node-fetch/"), call
        assert call.authorization.startswith("Bearer ey"), call
    # The ignored diff took effect for everyone: the API now calls the reports equal.
    answer = await compare(http, stack, account, base, subtle)
    assert answer["equal"] is True, answer
    assert answer["diffs"] == [], answer

    # One diff under and one over the threshold: the first is ignored, the second stays.
    gateway_calls.clear()
    deep = await happo(happo_modules, cwd, "compare", base, mixed)
    assert deep.returncode == 113, str(deep)
    assert "Found 2 diffs to deep-compare" in deep.stdout, str(deep)
    assert "1 out of 2 were below threshold and auto-ignored" in deep.stdout, str(deep)
    assert [line.split(" ")[0:2] for line in gateway_calls.lines()].count(
        ["POST", "/api/ignored-diffs"]
    ) == 1, gateway_calls.lines()
    answer = await compare(http, stack, account, base, mixed)
    assert answer["equal"] is False, answer
    pairs = [[b["component"], a["component"]] for b, a in answer["diffs"]]
    assert pairs == [["Card", "Card"]], answer
    assert answer["summary"] in deep.stdout, f"{answer}{deep}"


# --- happo-e2e 5 + happo-cypress 4, local snapshots ------------------------------------------


@dataclass
class Shot:
    component: str
    variant: str
    data: bytes
    path: Path = field(init=False)

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()  # noqa: S324

    def expected(self, stack, account: dict) -> dict:
        image = pyvips.Image.new_from_buffer(self.data, "")
        return {
            "component": self.component,
            "variant": self.variant,
            "target": TARGET,
            "width": image.width,
            "height": image.height,
            "url": f"{stack.url}/img/{account['account_id']}/{self.md5}",
        }


def write_plan(directory: Path, specs: dict[str, list[Shot]]) -> Path:
    """The screenshots (real PNG files, as Cypress leaves them) and the driver's plan."""
    plan = {"specs": []}
    for spec, shots in specs.items():
        folder = directory / "cypress" / "screenshots" / spec
        folder.mkdir(parents=True, exist_ok=True)
        for shot in shots:
            shot.path = folder / f"{shot.component}-{shot.variant}.png"
            shot.path.write_bytes(shot.data)
        plan["specs"].append(
            {
                "name": spec,
                "screenshots": [
                    {
                        "path": str(s.path),
                        "component": s.component,
                        "variant": s.variant,
                        "target": TARGET,
                    }
                    for s in shots
                ],
            }
        )
    target = directory / f"plan-{uuid.uuid4().hex[:8]}.json"
    target.write_text(json.dumps(plan, indent=2))
    return target


def ci_env(modules: Path, home: Path, before: str, after: str, **extra: str) -> dict[str, str]:
    return client_env(
        modules,
        home,
        HAPPO_CURRENT_SHA=after,
        HAPPO_PREVIOUS_SHA=before,
        HAPPO_CHANGE_URL="https://github.com/example/shop/pull/7",
        HAPPO_MESSAGE="Make the buttons rounder",
        **extra,
    )


async def cypress_run(
    modules: Path, cwd: Path, plan: Path, env: dict[str, str], port: int | None = None
) -> Ran:
    """``happo-e2e --port P -- node cypress_run.js plan.json``, as CI runs Cypress."""
    wrapper = str(modules / ".bin" / "happo-e2e")
    argv = [wrapper, "--port", str(port or free_port()), "--", NODE, str(DRIVER), str(plan)]
    return await run(argv, cwd, env)


async def assert_report_holds(http, stack, account: dict, sha: str, shots: list[Shot]) -> None:
    """``GET /api/reports/:sha`` lists exactly ``shots``, and every url serves the PNG."""
    status, snaps = await api(http, "GET", f"{stack.url}/api/reports/{sha}", account)
    assert status == 200, snaps
    assert isinstance(snaps, list), snaps
    keys = ("component", "variant", "target", "width", "height", "url")
    order = lambda s: (s["component"], s["variant"])  # noqa: E731
    got = sorted(({k: s.get(k) for k in keys} for s in snaps), key=order)
    want = sorted((s.expected(stack, account) for s in shots), key=order)
    assert got == want
    for shot in shots:
        async with http.get(shot.expected(stack, account)["url"]) as response:
            assert response.status == 200
            assert await response.read() == shot.data


async def test_cypress_local_snapshots_without_nonce(
    happo_modules, stack, http, gateway_calls, tmp_path
):
    account = stack.create_account()
    cwd = write_config(tmp_path, stack, account)
    header = Shot("Header", "default", screenshot(120, 40, 70))
    button = Shot("Button", "primary", screenshot(64, 48, 80))
    footer = Shot("Footer", "dark", screenshot(100, 30, 90))
    before, after = new_sha(), new_sha()
    # The base branch's report shares the header's bytes (so that upload is skipped).
    await post_report(
        http,
        stack,
        account,
        before,
        [("Header", "default", header.data), ("Button", "primary", screenshot(64, 48, 81))],
    )
    gateway_calls.clear()

    plan = write_plan(cwd, {"header.cy.js": [header, button], "footer.cy.js": [footer]})
    ran = await cypress_run(happo_modules, cwd, plan, ci_env(happo_modules, cwd, before, after))
    assert ran.returncode == 0, str(ran)
    assert "[cypress_run] footer.cy.js: 1 screenshot(s)" in ran.stdout, str(ran)
    assert re.search(r"^\[HAPPO\] https?://\S+$", ran.stdout, re.MULTILINE), str(ran)
    assert "undefined" not in ran.stdout, str(ran)

    labels = {
        "before": before,
        "after": after,
        "header": header.md5,
        "button": button.md5,
        "footer": footer.md5,
    }
    assert gateway_calls.lines(**labels) == [
        "GET /api/images/<header>/upload-url 2xx",
        "GET /api/images/<button>/upload-url 2xx",
        "POST /api/images/upload/<token> 2xx",
        "POST /api/snap-requests/with-results 2xx",
        "GET /api/images/<footer>/upload-url 2xx",
        "POST /api/images/upload/<token> 2xx",
        "POST /api/snap-requests/with-results 2xx",
        "POST /api/async-reports/<after> 2xx",
        "POST /api/jobs/<before>/<after> 2xx",
        "POST /api/reports/<before>/compare/<after> 2xx",
    ], str(ran)
    assert {c.user_agent for c in gateway_calls.calls} == {"happo.io@13.0.1"}
    assert all(c.authorization.startswith("Bearer ey") for c in gateway_calls.calls)

    status = await completed_status(http, stack, account, after)
    assert status["completedAt"], status
    assert status["snapshotCount"] == 3, status
    await assert_report_holds(http, stack, account, after, [header, button, footer])
    # The wrapper's async comparison exists.
    url = f"{stack.url}/api/reports/{before}/compare/{after}/status"
    code, comparison = await api(http, "GET", url, account)
    assert code == 200, comparison
    assert (comparison["sha1"], comparison["sha2"]) == (before, after), comparison


async def test_cypress_local_snapshots_in_parallel_runs_with_nonce_then_finalize(
    happo_modules, stack, http, gateway_calls, tmp_path
):
    account = stack.create_account()
    cwd = write_config(tmp_path, stack, account)
    first = [
        Shot("Modal", "open", screenshot(90, 60, 100)),
        Shot("Modal", "closed", screenshot(90, 20, 110)),
    ]
    second = [Shot("Tooltip", "default", screenshot(40, 24, 120))]
    before, after, nonce = new_sha(), new_sha(), uuid.uuid4().hex
    await post_report(http, stack, account, before, [("Modal", "open", first[0].data)])
    gateway_calls.clear()

    env = ci_env(happo_modules, cwd, before, after, HAPPO_NONCE=nonce)
    ports = {free_port()}
    while len(ports) < 2:
        ports.add(free_port())
    one, two = ports
    runs = await asyncio.gather(
        cypress_run(happo_modules, cwd, write_plan(cwd, {"modal.cy.js": first}), env, one),
        cypress_run(happo_modules, cwd, write_plan(cwd, {"tooltip.cy.js": second}), env, two),
    )
    for ran in runs:
        assert ran.returncode == 0, str(ran)
        assert re.search(r"^\[HAPPO\] https?://\S+$", ran.stdout, re.MULTILINE), str(ran)
    labels = {"before": before, "after": after}
    counted = Counter(
        " ".join(line.split(" ")[:2])
        for line in gateway_calls.lines(**labels)
        if "/api/images/" not in line
    )
    assert counted == {
        "POST /api/snap-requests/with-results": 2,
        "POST /api/async-reports/<after>": 4,  # at once with the id, then all ids again
        "POST /api/jobs/<before>/<after>": 2,
    }, gateway_calls.lines(**labels)
    assert all(line.endswith(" 2xx") for line in gateway_calls.lines()), gateway_calls.lines()

    await asyncio.sleep(1)  # nothing completes it but finalize
    status = await report_status(http, stack, account, after)
    assert status["completedAt"] is None, status

    gateway_calls.clear()
    finalize = await run([str(happo_modules / ".bin" / "happo-e2e"), "finalize"], cwd, env)
    assert finalize.returncode == 0, str(finalize)
    assert gateway_calls.lines(**labels) == [
        "POST /api/async-reports/<after>/finalize 2xx",
        "POST /api/reports/<before>/compare/<after> 2xx",
    ], str(finalize)

    status = await completed_status(http, stack, account, after)
    assert status["completedAt"], status
    assert status["snapshotCount"] == 3, status
    await assert_report_holds(http, stack, account, after, [*first, *second])
