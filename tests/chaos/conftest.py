"""The chaos suite (``make chaos``): real processes killed, real connections cut, under load.

Processing workers here are ``python -m services.processing`` subprocesses on an exchange and a
database of their own (the ``workers_env`` of tests/test_lifecycle.py), so a worker killed with
SIGKILL takes nothing of the session's in-process stack with it.
"""

from __future__ import annotations

import pytest

from tests.workers_support import workers_env  # noqa: F401  (a fixture these tests share)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid:
            item.add_marker(pytest.mark.chaos)
