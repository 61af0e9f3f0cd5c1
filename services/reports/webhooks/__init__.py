"""Webhooks (Standard Webhooks): ``domain`` (plain values: event types, what goes out, the
signature, the retry schedule, reading answers), ``repo`` (all SQL), ``endpoints`` (create,
list, delete, enable, deliveries, redeliver; secrets sealed), ``posting`` (the deliveries an
event makes, recorded by reports's webhooks consumer), ``delivery`` (the durable sender)."""
