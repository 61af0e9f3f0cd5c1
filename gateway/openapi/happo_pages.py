"""The report pages and what they and the notification e-mails link to: diff images,
status badges, unsubscribe links."""

from __future__ import annotations

from gateway.openapi.common import ANONYMOUS, FORM, HAPPO, HAPPO_REP, HTML, NONE, OBJ, PAGE, PNG, Op

OPERATIONS: list[Op] = [
    Op(
        "GET",
        "/comparisons/{id}/diffs/{position}.png",
        HAPPO_REP,
        "A diff image",
        [*HAPPO, ANONYMOUS],
        content=PNG,
    ),
    Op(
        "GET",
        "/badges/{badge}.svg",
        HAPPO_REP,
        "A comparison's status badge",
        NONE,
        content={"image/svg+xml": {"schema": {"type": "string"}}},
    ),
    Op(
        "GET",
        "/reports",
        HAPPO_REP,
        "The account's reports, newest first (page)",
        PAGE,
        content=HTML,
    ),
    Op(
        "GET",
        "/comparisons",
        HAPPO_REP,
        "The account's comparisons, newest first; ?status=awaiting-review (page)",
        PAGE,
        content=HTML,
    ),
    Op("GET", "/reports/{id}", HAPPO_REP, "Report page", PAGE, content=HTML),
    Op("GET", "/comparisons/{id}", HAPPO_REP, "Comparison page", PAGE, content=HTML),
    Op(
        "POST",
        "/comparisons/{id}/review",
        HAPPO_REP,
        "Accept or reject every change nobody decided yet (form; JSON verdict on Accept: json)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        ok=303,
    ),
    Op(
        "POST",
        "/comparisons/{id}/changes/{position}",
        HAPPO_REP,
        "Accept, reject, ignore or undo one change (form; JSON verdict on Accept: json)",
        PAGE,
        body=OBJ,
        body_type=FORM,
        ok=303,
    ),
    Op(
        "GET",
        "/comparisons/review.js",
        HAPPO_REP,
        "The review workspace's script",
        NONE,
        content={"application/javascript": {"schema": {"type": "string"}}},
    ),
    Op("GET", "/jobs/{id}", HAPPO_REP, "Job page", PAGE, content=HTML),
    Op(
        "GET",
        "/unsubscribe/{token}",
        HAPPO_REP,
        "Unsubscribe confirmation page",
        NONE,
        content=HTML,
    ),
    Op(
        "POST",
        "/unsubscribe/{token}",
        HAPPO_REP,
        "Unsubscribe (RFC 8058 one-click)",
        NONE,
        content=HTML,
    ),
]
