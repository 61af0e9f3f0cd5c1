"""Ingest's event consumers: the answers of processing's quality analysis (Haut.ai images)."""

from services.ingest import events
from services.ingest.hautai import analyses
from shared.events import Subscription

#: The competing consumer (and queue) of ``analysis.completed`` and ``analysis.failed``.
ANALYSIS_CONSUMER = "ingest.analysis"

SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(ANALYSIS_CONSUMER, events.CONSUMED, analyses.analysis_answered),
)
