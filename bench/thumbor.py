# ruff: noqa: S603  (the bench starts the reference server it installed)
"""thumbor 7.8, the reference image server, started on a free loopback port with one process
per core (``--processes``), its stock PIL engine and default JPEG settings (progressive,
optimized, Pillow's 4:2:0), reading originals from a folder (the file loader, so no network
fetch is timed) and keeping results in a file result storage (so a repeated URL is a cache
hit, as scenario 3 asks; unique URLs never hit it)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.platform import free_port, peak_rss_mb, reset_peak_rss


@dataclass
class Thumbor:
    """A running thumbor: its URL, the folder its loader reads and its processes."""

    url: str
    originals: Path
    process: subprocess.Popen
    scratch: tempfile.TemporaryDirectory

    def pids(self) -> list[int]:
        """The master and every worker it forked."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            found = [int(pid) for pid in children.read_text().split()]
        except OSError:
            found = []
        return [self.process.pid, *found]

    def reset_peak_rss(self) -> None:
        """Reset the peak RSS of every thumbor process."""
        for pid in self.pids():
            reset_peak_rss(pid)

    def peak_rss_mb(self) -> float | None:
        """The peak RSS of thumbor's processes added up (its workers share the load)."""
        peaks = [peak_rss_mb(pid) for pid in self.pids()]
        known = [peak for peak in peaks if peak is not None]
        return sum(known) if known else None

    def stop(self) -> None:
        """Stop every process and remove the folders."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.scratch.cleanup()


def start(executable: Path, processes: int | None = None, timeout: float = 30.0) -> Thumbor:
    """thumbor with ``processes`` workers (default one per core), ready to answer."""
    scratch = tempfile.TemporaryDirectory(prefix="darkroom-bench-thumbor-")
    root = Path(scratch.name)
    originals = root / "originals"
    originals.mkdir()
    config = root / "thumbor.conf"
    config.write_text(
        "\n".join(
            [
                "LOADER = 'thumbor.loaders.file_loader'",
                f"FILE_LOADER_ROOT_PATH = {str(originals)!r}",
                "STORAGE = 'thumbor.storages.no_storage'",
                "RESULT_STORAGE = 'thumbor.result_storages.file_storage'",
                f"RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {str(root / 'results')!r}",
                "RESULT_STORAGE_STORES_UNSAFE = True",
                "ALLOW_UNSAFE_URL = True",
                "QUALITY = 80",
                "MAX_AGE = 86400",
                "",
            ]
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [
            str(executable),
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--conf",
            str(config),
            "--log-level",
            "error",
            "--processes",
            str(processes or os.cpu_count() or 1),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "thumbor.log", "wb"),
        start_new_session=True,
    )
    server = Thumbor(f"http://127.0.0.1:{port}", originals, process, scratch)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log = (root / "thumbor.log").read_text()[-2000:]
            scratch.cleanup()
            raise RuntimeError(f"thumbor exited ({process.returncode}): {log}")
        try:
            with urllib.request.urlopen(server.url + "/healthcheck", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError("thumbor did not answer in time")
        time.sleep(0.2)
