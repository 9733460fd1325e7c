"""What every Siyu HTTP app shares as a safe default (docs/security.md "Safe defaults"): no
static file route, and responses that browsers neither sniff nor caches keep (tokens, personal
data and tenant figures are in the JSON; a tracked-link redirect must reach ingest each click).
"""

from __future__ import annotations

from flask import Flask

HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def new_app(name: str) -> Flask:
    """A Flask app without Flask's default ``/static`` route, its responses hardened."""
    app = Flask(name, static_folder=None)

    @app.after_request
    def _headers(response):
        for header, value in HEADERS.items():
            response.headers.setdefault(header, value)
        return response

    return app
