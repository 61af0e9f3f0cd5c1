"""Reports's routes: the Happo reports API, the endpoints outside its reference that the real
clients call, diff images and status badges (the HTML pages are in :mod:`pages`)."""

from aiohttp import web

from services.reports import handlers, listings, pages


def setup_routes(app: web.Application) -> None:
    """Register reports's routes on ``app`` (health routes are added by ``create_app``)."""
    app.router.add_routes(
        [
            # reports
            web.post("/api/reports/{sha}", handlers.create_report),
            web.get("/api/reports/{sha}", handlers.get_report),
            web.get("/api/reports/{sha}/status", handlers.report_status),
            web.post("/api/reports/{sha}/complete", handlers.complete_report),
            web.post("/api/reports/{fromSha}/clone/{toSha}", handlers.clone_report),
            web.post("/api/reports/{sha}/find-baseline", handlers.find_baseline),
            # comparisons
            web.post("/api/reports/{sha1}/compare/{sha2}", handlers.compare),
            web.get("/api/reports/{sha1}/compare/{sha2}/status", handlers.comparison_status),
            web.get("/api/reports/{sha}/comparison-statuses", handlers.comparison_statuses),
            web.post("/api/ignored-diffs", handlers.ignore_diff),
            web.get("/api/flake", handlers.flake),
            # jobs
            web.post("/api/jobs/{sha1}/{sha2}", handlers.create_job),
            web.post("/api/jobs/{sha1}/{sha2}/orchestrate", handlers.orchestrate),
            web.post("/api/jobs/{sha1}/{sha2}/cancel", handlers.cancel_job),
            web.post("/api/jobs/{sha1}/{sha2}/fail", handlers.cancel_job),
            # skip, subscriptions, the latest snapshot
            web.post("/api/skip/{sha}", handlers.skip),
            web.post("/api/subscriptions/{component}", handlers.subscribe),
            web.delete("/api/subscriptions/{component}", handlers.unsubscribe),
            web.get("/api/components/{component}/{variant}/{target}", handlers.latest_snapshot),
            # screenshots taken by the client (happo-e2e, happo-cypress localSnapshots)
            web.post("/api/async-reports/{sha}", handlers.async_report),
            web.post("/api/async-reports/{sha}/finalize", handlers.finalize_async_report),
            web.post("/api/snap-requests/with-results", handlers.snap_request_with_results),
            web.post("/api/snap-requests/extends-report", handlers.snap_request_extends),
            web.get("/api/snap-requests/{id:[0-9]+}", handlers.get_snap_request),
            # rendered in Darkroom's own browsers (the packages are rendering's)
            web.post("/api/snap-requests", handlers.create_snap_request),
            web.post("/api/snap-requests/bulk", handlers.bulk_snap_requests),
            web.get("/internal/snap-requests/{id}", handlers.render_job),
            # images
            web.get("/comparisons/{id}/diffs/{position}.png", handlers.diff_image),
            web.get("/badges/{badge}.svg", handlers.status_badge),
            # pages
            web.get("/reports", listings.reports_page),
            web.get("/comparisons", listings.comparisons_page),
            web.get("/integrations", listings.integrations_page),
            web.get("/internal/summary", listings.summary),
            web.get("/reports/{id}", pages.report_page),
            web.get("/comparisons/review.js", pages.review_script),
            web.get("/comparisons/{id}", pages.comparison_page),
            web.post("/comparisons/{id}/review", pages.review),
            web.post("/comparisons/{id}/changes/{position}", pages.review_change),
            web.get("/jobs/{id}", pages.job_page),
            web.get("/unsubscribe/{token}", pages.unsubscribe_page),
            web.post("/unsubscribe/{token}", pages.unsubscribe),
        ]
    )
