"""Renderers and their browsers killed mid-request, with snap requests queued behind them.

Each test runs a platform of its own (database, exchange) without the rendering service in
process: the renderers are ``python -m services.rendering`` subprocesses, each with Chromium
driven by playwright. Every renderer carries a marker in its environment, so the processes it
started can be told from everyone else's on this shared machine: playwright's node driver stays
in the renderer's process group, but Chromium is spawned detached (a session and process group
of its own, which its zygotes, renderers and GPU process share), and its crash handlers
daemonise into sessions of their own. Chromium's helpers rewrite their command line over their
environment, so they are found by their browser's process group instead.

The package rendered has one slow example (its ``render()`` awaits a timer) before three quick
ones; an async report names every request and completes when the last one is rendered. Work is
done once in effect when each snap request is done once, one ``render.completed`` per request
was recorded and consumed, and the report holds exactly one snapshot per (example, target).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from services.rendering.chromium import find_chromium
from tests.chaos.renderer_support import (
    CONCURRENCY,
    EXAMPLES,
    INTO_THE_EXAMPLE,
    SLOW_MS,
    STARTED,
    TARGETS,
    Renderer,
    _assert_once,
    _committed_by_now,
    _completed,
    _describe,
    _drained,
    _duplicates,
    _effects,
    _incidents,
    _kinds,
    _notable,
    _platform,
    _queue_depths,
    _snapshots,
    _start_renderer,
    _submit,
)

pytestmark = pytest.mark.skipif(
    find_chromium(None) is None, reason="no Chromium on this machine (apt-get install chromium)"
)


# --- the rows ------------------------------------------------------------------------------------


KILLS = {
    "mid-example": None,
    "consumer.before_commit": "consumer.before_commit",
    "consumer.after_commit": "consumer.after_commit",
}


@pytest.mark.parametrize("kill", list(KILLS))
async def test_a_renderer_killed_mid_request_loses_and_repeats_no_render(
    http, secrets_env, tmp_path, inbox, run_id, resilience, kill
):
    """SIGKILL of a renderer holding two deliveries: from outside while its Chromium renders
    the slow example (``mid-example``), or by itself at a fault point of its consumer — its
    screenshots stored and its ``render.completed`` written but not committed
    (``consumer.before_commit``), or committed and not acknowledged (``consumer.after_commit``).
    A second renderer finishes every request; each is done once."""
    point = KILLS[kill]
    armed = {"DARKROOM_FAULTS": point} if point else {}
    name = f"darkroom_chaos_{run_id}_render_{kill.replace('.', '_').replace('-', '_')}"
    async with _platform(name, secrets_env, tmp_path, inbox) as platform:
        exchange = platform.env["DARKROOM_EXCHANGE"]
        first = await _start_renderer(http, platform.env, **armed)
        second: Renderer | None = None
        try:
            work = await _submit(http, platform)
            began = await first.launched(60)
            held = TARGETS - (await _queue_depths(exchange))[0]
            await first.in_slow_example(CONCURRENCY, 60)
            started = first.family.alive()
            if point is None:
                await asyncio.sleep(INTO_THE_EXAMPLE)
                os.kill(first.pid, signal.SIGKILL)
            await asyncio.wait_for(asyncio.to_thread(first.process.popen.wait), 60)
            code = first.process.popen.returncode
            killed_after = time.monotonic() - began
            left_alone, exit_seconds = await first.family.gone(15)
            survivors = first.family.kill()
            slow_begun = first.stderr().count(STARTED)
            first_log = _notable(first.stderr())
            incidents = _incidents(first.stderr())
            outcomes_at_kill, images_at_kill = await _committed_by_now(platform)
            browsers = sorted(first.family.browsers_seen)
            started.pop(first.pid, None)
            second = await _start_renderer(http, platform.env)
            restarted = time.monotonic()
            status = await _completed(http, platform, work, 90)
            finished_after = time.monotonic() - restarted
            await _drained(exchange, 30)
            absorbed = second.stderr().count("event.duplicate")
            rerendered = second.stderr().count(STARTED)
            later = _incidents(second.stderr())
            stopped = await second.stop()
            left_by_second, _ = await second.family.gone(15)
            cleaned = second.family.kill()
            _, dead_letters = await _queue_depths(exchange)
            snapshots = await _snapshots(http, platform, work)
            effects = await _effects(platform, work)
            where = (
                f"from outside {INTO_THE_EXAMPLE:g} s into the slow example of both"
                if point is None
                else f"by itself at `{point}`"
            )
            resilience.row(
                "faults",
                f"kill -9 a renderer mid-request ({kill})",
                injected=f"{TARGETS} snap requests (a {SLOW_MS / 1000:g} s example and 3 quick"
                f" ones) and an async report naming them; the renderer holding {held} of them"
                f" is killed with SIGKILL {where}; a second renderer starts",
                observed=f"killed (exit {code}) {killed_after:.1f} s after its Chromium"
                f" launched ({slow_begun} slow example(s) begun"
                f"{'; ' + incidents if incidents else ''}), with {outcomes_at_kill}"
                f" outcome(s) committed and {images_at_kill}"
                f" screenshot(s) stored; the {len(started)} processes it had started"
                f" ({_kinds(started)}) all exited"
                f" by themselves within {exit_seconds:.1f} s of its death ({len(left_alone)}"
                f" left, {survivors} killed in cleanup);"
                f" the second renderer rendered {rerendered} request(s)"
                f"{' (' + later + ')' if later else ''} in {finished_after:.1f} s"
                f" (redeliveries absorbed by event id: {absorbed}); each request done once,"
                f" {sum(effects.completed.values())} render.completed, {effects.consumed}"
                f" consumed by reports, the report complete with {status['snapshotCount']}"
                f" snapshots ({effects.images} stored images); {dead_letters} dead letters",
                accepted=TARGETS,
                effects=effects.consumed,
                duplicates=_duplicates(effects),
            )
            assert code == -signal.SIGKILL, first.stderr()[-3000:]
            assert held == CONCURRENCY, held
            # Each delivery it held was begun once up to the kill (more only after an incident
            # its log names, which the row shows: a retry is not a second effect).
            assert slow_begun == CONCURRENCY or incidents, first_log
            if point == "consumer.after_commit":
                # Its commit stood (the other delivery's may have too, in the moment between
                # a commit and the fault point): the second renderer found those event ids and
                # did nothing for them.
                assert 1 <= outcomes_at_kill <= CONCURRENCY, (outcomes_at_kill, first_log)
                assert absorbed >= outcomes_at_kill, second.stderr()[-3000:]
            else:
                assert outcomes_at_kill == 0, (outcomes_at_kill, first_log)
            if point == "consumer.before_commit":
                assert images_at_kill == len(EXAMPLES), images_at_kill  # stored, not recorded
            if point is None:
                assert images_at_kill == 0, images_at_kill  # killed before storing any
            assert rerendered == TARGETS - outcomes_at_kill or later, _notable(second.stderr())
            assert browsers, "the killed renderer never ran a browser"
            assert not left_alone, f"outlived their renderer: {_describe(left_alone)}"
            assert survivors == 0
            assert stopped == 0, second.stderr()[-3000:]
            assert not left_by_second and cleaned == 0, _describe(left_by_second)
            assert dead_letters == 0
            _assert_once(effects, work, snapshots, status)
        finally:
            first.close()
            if second is not None:
                await second.stop()
                second.close()


async def test_chromium_killed_mid_example_is_relaunched_and_the_requests_rendered_once(
    http, secrets_env, tmp_path, inbox, run_id, resilience
):
    """SIGKILL of the browser process while the renderer's two contexts render the slow
    example: both requests are retried on a relaunched browser and complete once; the restart
    is counted on ``/metrics``."""
    name = f"darkroom_chaos_{run_id}_chromium"
    async with _platform(name, secrets_env, tmp_path, inbox) as platform:
        exchange = platform.env["DARKROOM_EXCHANGE"]
        renderer = await _start_renderer(http, platform.env)
        try:
            work = await _submit(http, platform)
            began = await renderer.launched(60)
            (browser,) = renderer.family.browsers()
            await renderer.in_slow_example(CONCURRENCY, 60)
            await asyncio.sleep(INTO_THE_EXAMPLE)
            group = [pid for pid, p in renderer.family.alive().items() if p.pgid == browser]
            outcomes_at_kill, images_at_kill = await _committed_by_now(platform)
            slow_begun = renderer.stderr().count(STARTED)
            os.kill(browser, signal.SIGKILL)
            killed_at = time.monotonic()
            status = await _completed(http, platform, work, 90)
            finished_after = time.monotonic() - killed_at
            await _drained(exchange, 30)
            restarts = await renderer.metric(http, "darkroom_browser_restarts_total")
            retried = await renderer.metric(http, "darkroom_renders_total", outcome="retried")
            completed = await renderer.metric(http, "darkroom_renders_total", outcome="completed")
            failed = await renderer.metric(http, "darkroom_renders_total", outcome="failed")
            relaunched = renderer.family.browsers()
            slow_rendered = renderer.stderr().count(STARTED)
            old_left = {pid: p for pid, p in renderer.family.alive().items() if p.pgid == browser}
            lost_logged = renderer.stderr().count("render.browser_lost")
            alive_after = renderer.process.popen.poll() is None
            stopped = await renderer.stop()
            left, _ = await renderer.family.gone(15)
            cleaned = renderer.family.kill()
            _, dead_letters = await _queue_depths(exchange)
            snapshots = await _snapshots(http, platform, work)
            effects = await _effects(platform, work)
            resilience.row(
                "faults",
                "kill -9 Chromium mid-example (the renderer stays up)",
                injected=f"{TARGETS} snap requests (a {SLOW_MS / 1000:g} s example and 3 quick"
                f" ones) and an async report; the browser process ({len(group)} processes in"
                f" its group) of the renderer rendering {CONCURRENCY} of them is killed with"
                f" SIGKILL {killed_at - began:.1f} s after it launched, {INTO_THE_EXAMPLE:g} s"
                f" into the slow example of {slow_begun} of them",
                observed=f"{outcomes_at_kill} outcome(s) and {images_at_kill} screenshot(s)"
                f" before the kill; the renderer stayed up, relaunched Chromium (restarts"
                f" metric {restarts:g}), retried {retried:g} request(s) ({lost_logged}"
                f" browser_lost logged; {slow_rendered} slow examples begun in all) and"
                f" finished all {finished_after:.1f} s after the kill:"
                f" renders completed {completed:g}, failed {failed:g}; {len(old_left)}"
                f" process(es) of the killed browser left; each request done once,"
                f" {sum(effects.completed.values())} render.completed, {effects.consumed}"
                f" consumed by reports, the report complete with {status['snapshotCount']}"
                f" snapshots; {dead_letters} dead letters",
                accepted=TARGETS,
                effects=effects.consumed,
                duplicates=_duplicates(effects),
            )
            assert outcomes_at_kill == 0 and images_at_kill == 0, (outcomes_at_kill, images_at_kill)
            assert slow_begun == CONCURRENCY, slow_begun
            assert alive_after, renderer.stderr()[-3000:]
            assert restarts == 1, renderer.stderr()[-3000:]
            assert relaunched and browser not in relaunched, relaunched
            assert 1 <= retried <= CONCURRENCY, renderer.stderr()[-3000:]
            assert lost_logged == retried, renderer.stderr()[-3000:]
            assert slow_rendered == TARGETS + retried, slow_rendered
            assert completed == TARGETS and failed == 0, (completed, failed)
            assert not old_left, _describe(old_left)
            assert stopped == 0, renderer.stderr()[-3000:]
            assert not left and cleaned == 0, _describe(left)
            assert dead_letters == 0
            _assert_once(effects, work, snapshots, status)
        finally:
            await renderer.stop()
            renderer.close()
