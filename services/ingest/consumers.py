"""Ingest's event consumers."""

from shared.events import Subscription

SUBSCRIPTIONS: tuple[Subscription, ...] = ()
