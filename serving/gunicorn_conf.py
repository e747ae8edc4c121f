"""gunicorn settings for the sidecar (``skewless serve`` / ``make serve`` pass this file).

gthread workers with keep-alive, the app preloaded in the master (the model is loaded once and
shared by the forked workers), one OpenMP thread (spin-waiting costs ~5 ms CPU per request
otherwise), Prometheus in multiprocess mode so /metrics covers every worker.
Command-line flags override these values.
"""

import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports lightgbm, prometheus_client or an MLflow SQL store.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")  # no DB sockets across fork
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="skewless-prometheus-")

from skewless import settings  # noqa: E402  (after the environment above)

_section = settings.section("gunicorn")  # SKEWLESS_BIND, SKEWLESS_WORKERS, SKEWLESS_THREADS
wsgi_app = "serving.app:create_app()"
bind = _section["BIND"]
workers = _section["WORKERS"]
worker_class = "gthread"
# One thread per worker by default: a request is ~1 ms of CPU with sub-millisecond Redis waits, so
# more threads only add GIL handoffs (make bench, 300 req/s: p50 2.04 ms with 4 threads, 1.37 ms
# with 1).
threads = _section["THREADS"]
keepalive = 30
preload_app = True
timeout = 30
graceful_timeout = 10
max_requests = 0
accesslog = None  # per-request logging is the Redis serving log; metrics cover the rest
errorlog = "-"
loglevel = "info"
proc_name = "skewless-sidecar"
# The control socket defaults to one path per user (~/.gunicorn/gunicorn.ctl): a second gunicorn
# (tests, feast serve, another sidecar) would take it over. Not needed here.
control_socket_disable = True


def on_starting(server):
    directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # values of a previous run
        stale.unlink()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
