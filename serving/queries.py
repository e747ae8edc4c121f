"""``POST /v1/predict``: a predictive query of one or more ids (skewless/pql.py, docs/predict.md).

- a batch task's ids (``PREDICT churn FOR customers.customer_id IN ('c1', 'c2')``): each one's
  nightly score, as the task's GET route answers it;
- the realtime task's ids (``PREDICT fraud_probability FOR transactions.transaction_id = 't1'``):
  each transaction, sent in ``events`` (the sidecar does not read the warehouse), scored as
  ``POST`` on the task's route scores it: the same features, model, decision and serving log.

``FOR EACH`` queries score every entity in batch: ``skewless predict`` runs them.
"""

from __future__ import annotations

from flask import Blueprint, g, request

from serving.auth import require_token
from serving.errors import response
from serving.lookups import MAX_ID_LENGTH, nightly_score
from serving.schemas import MAX_QUERY_IDS, InvalidInput, ScoreRequest, parse_predict_request
from serving.scoring import request_id
from serving.sidecar import sidecar
from skewless import pql

ROUTE = "/v1/predict"

bp = Blueprint("queries", __name__)
bp.before_request(require_token)


def predict():
    app = sidecar()
    g.mode = app.default_mode
    body = parse_predict_request(request.get_data(cache=False))
    try:
        query = pql.parse(body.query)
    except pql.QueryError as exc:
        raise InvalidInput("/query", str(exc), '"query"') from None
    if query.batch:
        raise InvalidInput(
            "/query",
            "FOR EACH scores every entity in batch: run it with `skewless predict`; the sidecar"
            " answers FOR <table>.<key> = '<id>' or IN (...)",
            '"query"',
        )
    if len(query.ids) > MAX_QUERY_IDS:
        raise InvalidInput("/query", f"{len(query.ids)} ids, at most {MAX_QUERY_IDS}", '"query"')
    rid = request_id()
    if query.task.realtime:
        mode = body.mode.value if body.mode else app.default_mode
        g.mode = mode
        predictions = _realtime(query, body, mode, rid)
    else:
        for field, given in (("events", body.events), ("mode", body.mode)):
            if given is not None:
                message = f"{query.task.name} is a batch task: its nightly score takes no {field}"
                raise InvalidInput(f"/{field}", message, f'"{field}"')
        if any(len(i) > MAX_ID_LENGTH for i in query.ids):
            raise InvalidInput("/query", f"an id longer than {MAX_ID_LENGTH} characters", '"query"')
        predictions = [nightly_score(query.task, i, "/query") for i in query.ids]
    path = "realtime" if query.task.realtime else "lookup"
    return response(
        200,
        {"query": body.query, "task": query.task.name, "path": path, "predictions": predictions},
        {"X-Request-ID": rid},
    )


def _realtime(query: pql.Query, body, mode: str, rid: str) -> list[dict]:
    """Each id's event scored by the sidecar, in the query's order."""
    if body.events is None:
        raise InvalidInput(
            "/events",
            "required for the realtime task: one transaction per id of the query",
            '"events"',
        )
    by_id = {}
    for i, event in enumerate(body.events):
        if event.transaction_id not in query.ids or event.transaction_id in by_id:
            raise InvalidInput(
                f"/events/{i}/transaction_id",
                "not one of the query's ids"
                if event.transaction_id not in query.ids
                else "sent twice",
                f'"transaction_id" in "{i}" in "events"',
            )
        by_id[event.transaction_id] = event
    missing = [i for i in query.ids if i not in by_id]
    if missing:
        raise InvalidInput("/events", f"no event for {', '.join(map(repr, missing))}", '"events"')
    app = sidecar()
    out = []
    for n, transaction_id in enumerate(query.ids):
        event = ScoreRequest.model_construct(**by_id[transaction_id].model_dump(), mode=None)
        one = rid if len(query.ids) == 1 else f"{rid[:56]}.{n}"  # the log's ids: <= 64 chars
        out.append(app.score(event, mode, one, g.started))
    return out


bp.add_url_rule(ROUTE, endpoint="predict", view_func=predict, methods=["POST"])
