"""npm packages a test needs (pinned by a ``package.json`` and lockfile in a folder of tests/),
installed with ``npm ci`` once per machine into the user's cache, keyed by the two files, never
into the repo: the Happo clients (tests/happo_clients) and axe-core (tests/axe)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

NETWORK_TROUBLE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH"
    r"|socket hang up|network|request to \S+ failed",
    re.IGNORECASE,
)


def npm_modules(folder: Path, name: str) -> Path:
    """``node_modules`` of ``folder``'s pinned packages, installed into
    ``~/.cache/darkroom/<name>/<hash>`` on first use and reused by later sessions. Skips the
    test when npm's registry cannot be reached; fails it when ``npm ci`` fails otherwise."""
    manifest = (folder / "package.json").read_bytes()
    lock = (folder / "package-lock.json").read_bytes()
    digest = hashlib.sha256(manifest + b"\0" + lock).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    base = cache / "darkroom" / name
    home = base / digest
    if (home / "installed.json").exists():
        return home / "node_modules"
    npm = shutil.which("npm")
    assert npm, f"npm is needed to install {name} (it comes with Node)"
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{digest}.", dir=base))
    try:
        shutil.copy(folder / "package.json", work)
        shutil.copy(folder / "package-lock.json", work)
        command = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
        try:
            done = subprocess.run(
                command, cwd=work, capture_output=True, text=True, timeout=300, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm's registry is unreachable: `npm ci` of {name} hung 300 s")
        if done.returncode != 0:
            output = f"{done.stdout}\n{done.stderr}".strip()
            if NETWORK_TROUBLE.search(output):
                pytest.skip(f"npm's registry is unreachable; `npm ci` said:\n{output[-2000:]}")
            pytest.fail(f"`npm ci` of {name} failed:\n{output[-4000:]}")
        (work / "installed.json").write_text(json.dumps({"at": time.time(), "command": command}))
        with contextlib.suppress(OSError):  # another session may have won the race: use its
            work.rename(home)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return home / "node_modules"
