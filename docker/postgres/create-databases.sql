-- Runs once, when the postgres volume is first initialised (docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `airflow`; MLflow gets its own database (both use an alembic_version table).
CREATE DATABASE mlflow;
