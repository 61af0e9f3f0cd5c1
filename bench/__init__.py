# ruff: noqa: RUF003  (a bench runs its own tools; figures use ×)
"""``make bench``: Darkroom's speed measured side by side with reference tools (issue 9).

Run with ``python -m bench`` (or ``make bench``); never part of ``make test``.
"""
