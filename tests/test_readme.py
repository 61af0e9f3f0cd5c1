"""The README stays true: every setting a process reads is listed in its configuration table."""

from __future__ import annotations

from gateway.config import GatewayConfig
from services.auth.config import AuthConfig
from services.ingest.config import IngestConfig
from services.processing.config import ProcessingConfig
from services.rendering.config import RenderingConfig
from services.reports.config import ReportsConfig
from shared.config import describe
from tests.conftest import ROOT


def test_every_setting_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    declared = {
        env
        for cls in (
            GatewayConfig,
            AuthConfig,
            IngestConfig,
            ProcessingConfig,
            ReportsConfig,
            RenderingConfig,
        )
        for env, _default, _doc in describe(cls)
    }
    missing = sorted(env for env in declared if f"`{env}`" not in readme)
    assert missing == [], f"add these settings to README.md's Configuration table: {missing}"
