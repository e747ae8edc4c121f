"""The realtime task's POST route (fraud: ``/v1/fraud/score``): one event in, its probability and
decision out."""

from __future__ import annotations

import re
import uuid

from flask import Blueprint, g, request

from serving.auth import require_token
from serving.errors import response
from serving.schemas import parse_score_request
from serving.sidecar import sidecar
from skewless.tasks import realtime_task

bp = Blueprint("scoring", __name__)
bp.before_request(require_token)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id() -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one."""
    given = request.headers.get("X-Request-ID")
    return given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


def score():
    app = sidecar()
    rid = request_id()
    g.mode = app.default_mode
    parsed = parse_score_request(request.get_data(cache=False))
    mode = parsed.mode.value if parsed.mode else app.default_mode
    g.mode = mode
    body = app.score(parsed, mode, rid, g.started)
    return response(200, body, {"X-Request-ID": rid})


bp.add_url_rule(realtime_task().route, endpoint="score", view_func=score, methods=["POST"])
