# The skewless image: the project with its pinned requirements, run as a non-root user.
# docker-compose.yml runs every Airflow component, the sidecar and the stream consumer from it,
# so Airflow, MLflow client, Feast and dbt are the versions of requirements.txt by construction.
#
#   docker build -t skewless-app:0.1.0 .                          # LocalExecutor (default)
#   docker build --target celery -t skewless-celery:0.1.0 .       # + the Celery provider
FROM python:3.11.7-slim-bookworm AS app

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DO_NOT_TRACK=1 \
    OMP_NUM_THREADS=1 \
    SKEWLESS_VAR_DIR=/var/lib/skewless \
    SKEWLESS_MLFLOW_ARTIFACTS=/mlflow/artifacts

# LightGBM's wheel links OpenMP (libgomp) dynamically.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --user-group skewless

WORKDIR /opt/skewless

# Dependencies first (a layer that changes only with requirements.txt). psycopg2 is the driver of
# the PostgreSQL metadata database; it is not in requirements.txt because the embedded setup uses
# SQLite.
COPY requirements.txt ./
RUN pip install -r requirements.txt psycopg2-binary==2.9.13

# Editable install: skewless finds dags/, dbt_project/ and feature_repo/ beside its package.
COPY . .
RUN pip install --no-deps -e . \
    && python -m compileall -q skewless models serving monitoring dags \
    && mkdir -p /var/lib/skewless /mlflow/artifacts \
    && chown -R skewless:skewless /var/lib/skewless /mlflow/artifacts dbt_project

# Named volumes mounted here start with this ownership (the first mount copies it).
VOLUME ["/var/lib/skewless", "/mlflow/artifacts"]
USER skewless
EXPOSE 8000
CMD ["skewless", "--help"]


# The CeleryExecutor profile. The Celery provider needs kombu[redis], which caps redis-py below 7,
# so this image alone runs redis-py 6.4.0 (feast accepts >=4.2.2,<8); everything else keeps the
# pins of requirements.txt (resolved with `uv pip compile -c requirements.txt`).
FROM app AS celery
USER root
RUN grep -v '^redis==' requirements.txt > /tmp/constraints.txt \
    && pip install -c /tmp/constraints.txt \
        apache-airflow-providers-celery==3.26.0 celery==5.6.3 kombu==5.6.2 redis==6.4.0 \
    && rm /tmp/constraints.txt
USER skewless
