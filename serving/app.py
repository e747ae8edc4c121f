"""The sidecar's app factory (flaskr style): ``create_app(config=None)``.

Configuration, later wins: ``DEFAULTS`` below, then ``SKEWLESS_*`` environment variables
(``SKEWLESS_SERVING_MODE=exact`` sets ``SERVING_MODE``; values are parsed as JSON when they can
be), then the ``config`` mapping. ``SETTINGS`` may carry a ``skewless.settings.Settings`` (tests);
otherwise the environment's settings are loaded (var/, MLflow, models/config.yaml, Feast repo).
"""

from __future__ import annotations

import time

from flask import Flask, g, request

from serving import errors, health, lookups, scoring
from serving.schemas import Mode, openapi
from serving.sidecar import Sidecar

DEFAULTS = {
    "SERVING_MODE": Mode.MATERIALIZED.value,  # default feature mode (a request may pick another)
    "API_TOKEN": None,  # when set, the API needs `Authorization: Bearer <token>`
    "REDIS_URL": None,  # default: REDIS_URL, else the private server under var/redis
    "REDIS_CONNECT_TIMEOUT": 0.05,  # seconds to connect: a Redis that is down is a fast 503
    "REDIS_TIMEOUT": 0.25,  # seconds per reply: a hung Redis is a 503 after this
    "MAX_CONTENT_LENGTH": 16 * 1024,  # bigger bodies get 413
    "MODEL_CHECK_SECONDS": 30.0,  # how often the champion alias is checked (0: never)
    "LOAD_MODEL": True,  # load the champion at startup (gunicorn --preload: once, in the master)
    "RECORD_EVENTS": True,  # every scored transaction enters the exact-mode state
    "SERVING_LOG_MAXLEN": 1_000_000,  # XADD MAXLEN ~ of skewless:serving_log
    "EVENT_STREAM_MAXLEN": 1_000_000,  # XADD MAXLEN ~ of the event stream skewless:events
}


def _check(config) -> None:
    modes = [m.value for m in Mode]
    if config["SERVING_MODE"] not in modes:
        raise ValueError(
            f"SKEWLESS_SERVING_MODE={config['SERVING_MODE']!r}: expected one of {modes}"
        )
    if config["API_TOKEN"] is not None:
        config["API_TOKEN"] = str(config["API_TOKEN"])  # "1234" arrives as a JSON number
    for name in ("REDIS_CONNECT_TIMEOUT", "REDIS_TIMEOUT", "MODEL_CHECK_SECONDS"):
        value = float(config[name])
        if value < 0:
            raise ValueError(f"SKEWLESS_{name}={value}: expected a number of seconds >= 0")
        config[name] = value


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_prefixed_env("SKEWLESS")
    if config:
        app.config.from_mapping(config)
    _check(app.config)
    app.config["OPENAPI"] = openapi(bearer_token=app.config["API_TOKEN"] is not None)

    errors.init_app(app)
    Sidecar(app)
    app.register_blueprint(scoring.bp)
    app.register_blueprint(lookups.bp)
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

    return app
