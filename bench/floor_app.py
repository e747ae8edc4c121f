"""The HTTP floor: a bare Flask endpoint at the sidecar's path, served by `bench.sidecar` under
gunicorn with the sidecar's own settings (serving/gunicorn_conf.py: gthread, keep-alive, preload).
Its latency and CPU per request are what gunicorn + Flask cost before any feature or model."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/v1/fraud/score")
def score():
    request.get_data()
    return {"fraud_probability": 0.0, "decision": "approve"}


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
