# ruff: noqa: S603, S607, RUF003  (a bench runs its own tools; figures use ×)
"""The reference tools, installed when missing into ``~/.cache/darkroom/bench/`` (never the
repo): pixelmatch 7 and odiff-bin 4.5 from npm, thumbor 7.8 from PyPI in a venv of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("DARKROOM_BENCH_CACHE", Path.home() / ".cache/darkroom/bench"))
NODE_DIR = CACHE / "node"
THUMBOR_VENV = CACHE / "thumbor-venv"
NPM_PACKAGES = ("pixelmatch@7", "odiff-bin@4.5", "pngjs@7")
THUMBOR = "thumbor==7.8.*"


@dataclass(frozen=True)
class References:
    """Where each reference is, or ``None`` with the reason it is missing."""

    node: str | None
    pixelmatch: Path | None  # the CLI script, run with node
    odiff: Path | None  # the native binary itself (not the npm wrapper, which adds 60-80 ms)
    thumbor: Path | None  # the thumbor executable in its venv
    missing: dict[str, str]


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _npm() -> dict[str, str]:
    missing: dict[str, str] = {}
    modules = NODE_DIR / "node_modules"
    if not (modules / "pixelmatch").is_dir() or not (modules / "odiff-bin").is_dir():
        if shutil.which("npm") is None:
            return {"npm": "npm not found"}
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        if not (NODE_DIR / "package.json").exists():
            (NODE_DIR / "package.json").write_text('{"name": "darkroom-bench", "private": true}\n')
        _log(f"installing {' '.join(NPM_PACKAGES)} into {NODE_DIR}")
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", *NPM_PACKAGES],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            missing["npm"] = done.stderr.strip().splitlines()[-1:][0] if done.stderr else "failed"
    return missing


def odiff_binary() -> Path | None:
    """The native odiff binary from the platform package ``@odiff/<platform>``."""
    scope = NODE_DIR / "node_modules" / "@odiff"
    if not scope.is_dir():
        return None
    for package in sorted(scope.iterdir()):
        for name in ("odiff", "odiff.exe"):
            candidate = package / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def _thumbor(install: bool) -> tuple[Path | None, str | None]:
    executable = THUMBOR_VENV / "bin" / "thumbor"
    python = THUMBOR_VENV / "bin" / "python"
    version_ok = False
    if executable.exists():
        probe = subprocess.run(
            [str(python), "-c", "import thumbor; print(thumbor.__version__)"],
            capture_output=True,
            text=True,
            check=False,
        )
        version_ok = probe.stdout.startswith("7.8")
    if version_ok:
        return executable, None
    if not install:
        return None, "thumbor 7.8 not installed (skipped; BENCH_THUMBOR=1 installs it)"
    _log(f"installing {THUMBOR} into {THUMBOR_VENV}")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(THUMBOR_VENV)], check=True)
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", THUMBOR],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not executable.exists():
        return None, "thumbor install failed: " + (done.stderr.strip()[-300:] or "no executable")
    return executable, None


def ensure(thumbor: bool = False) -> References:
    """Install what is missing and say where everything is."""
    missing = _npm()
    node = shutil.which("node")
    if node is None:
        missing["node"] = "node not found"
    pixelmatch = NODE_DIR / "node_modules" / "pixelmatch" / "bin" / "pixelmatch"
    if not pixelmatch.exists():
        missing.setdefault("pixelmatch", "pixelmatch not installed")
    odiff = odiff_binary()
    if odiff is None:
        missing.setdefault("odiff", "odiff binary not found under node_modules/@odiff")
    thumbor_exe, why = _thumbor(thumbor)
    if why:
        missing["thumbor"] = why
    return References(
        node=node,
        pixelmatch=pixelmatch if pixelmatch.exists() else None,
        odiff=odiff,
        thumbor=thumbor_exe,
        missing=missing,
    )
