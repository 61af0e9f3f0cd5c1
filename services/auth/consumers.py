"""Auth's event consumers: none yet (it learns nothing from other services)."""

from shared.events import Subscription

SUBSCRIPTIONS: tuple[Subscription, ...] = ()
