"""The sidecar's app factory (flaskr style): ``create_app(config=None)``.

Configuration, later wins: the sidecar's rows of the settings table (``skewless.settings``:
defaults, then ``SKEWLESS_*`` environment variables, e.g. ``SKEWLESS_SERVING_MODE=exact`` sets
``SERVING_MODE``), then the ``config`` mapping; its sidecar keys are checked by the same table
(docs/configuration.md). ``SETTINGS`` may carry a ``skewless.settings.Settings`` (tests);
otherwise the environment's settings are loaded (var/, MLflow, models/config.yaml, Feast repo).
"""

from __future__ import annotations

import io
import time

from flask import Flask, g, request

from serving import errors, health, lookups, queries, scoring
from serving.openapi import openapi
from serving.sidecar import Sidecar
from skewless import settings


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    config = dict(config or {})
    keys = settings.section_keys("sidecar")
    overrides = {k: config.pop(k) for k in list(config) if k in keys}
    app.config.from_mapping(settings.section("sidecar", overrides=overrides))
    app.config.from_mapping(config)
    app.config["OPENAPI"] = openapi(bearer_token=app.config["API_TOKEN"] is not None)

    errors.init_app(app)
    Sidecar(app)
    app.register_blueprint(scoring.bp)
    app.register_blueprint(lookups.bp)
    app.register_blueprint(queries.bp)
    app.register_blueprint(health.bp)

    @app.before_request
    def _start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response):
        started = g.get("started")
        if started is not None:
            app.extensions["skewless"].metrics.observe_request(
                request.url_rule.rule if request.url_rule else "unmatched",
                g.get("mode", ""),
                str(response.status_code),
                time.perf_counter() - started,
            )
        return response

    app.wsgi_app = _ReadBody(app.wsgi_app, app.config["MAX_CONTENT_LENGTH"])
    return app


class _ReadBody:
    """Reads a request's body (up to the size limit) before Flask dispatches it.

    Some answers leave without reading the body - a 405 for a method a route does not take, a
    404, a 401 - and on a keep-alive connection gunicorn's gthread worker must then drain the
    unread bytes itself. Under load that path was seen to stall a connection for seconds (the
    contract fuzzer's unsupported-method probes, which carry a body). Read here, the body is
    always consumed; a body over the limit is left to the 413 answer and gunicorn's bounded drain.
    """

    def __init__(self, wsgi_app, limit: int):
        self.wsgi_app, self.limit = wsgi_app, limit

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH") or ""
        if length.isdigit() and 0 < int(length) <= self.limit:
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(length)))
        return self.wsgi_app(environ, start_response)
