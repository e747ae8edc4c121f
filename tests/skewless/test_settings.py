"""skewless/settings.py is the single source of configuration: its table drives load(),
`skewless config`, .env.example and docs/configuration.md; the tools' files and the code agree with it.
Bad values name the variable; `skewless serve` refuses an unreachable dependency in bounded time."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from skewless import dependencies, pipeline, settings

ROOT = settings.PROJECT_ROOT
SKEWLESS = str(Path(sys.executable).parent / "skewless")


def test_defaults_are_the_embedded_layout():
    cfg = settings.load({})
    var = ROOT / "var"
    assert cfg.var_dir == var
    assert cfg.warehouse_path == var / "warehouse.duckdb"
    assert cfg.feature_export_dir == var / "features"
    assert cfg.feast_registry == var / "feast" / "registry.db"
    assert cfg.drop_dir == var / "drop"
    assert cfg.redis_url is None and cfg.redis_dir == var / "redis"
    assert cfg.mlflow_tracking_uri == f"sqlite:///{var / 'mlflow' / 'mlflow.db'}"
    assert cfg.mlflow_artifact_root == var / "mlflow" / "artifacts"
    assert cfg.airflow_home == var / "airflow"
    assert cfg.model_config == ROOT / "models" / "config.yaml"
    assert cfg.label_delay == timedelta(days=7)
    assert cfg.max_quarantine_share == 0.05


def test_every_core_setting_is_overridable(tmp_path):
    env = {
        "SKEWLESS_VAR_DIR": str(tmp_path / "v"),
        "SKEWLESS_WAREHOUSE": str(tmp_path / "w.duckdb"),
        "REDIS_URL": "redis://:pw@redis:6379/2",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "SKEWLESS_LABEL_DELAY_DAYS": "1.5",
        "SKEWLESS_DEPENDENCY_ATTEMPTS": "3",
    }
    cfg = settings.load(env)
    assert cfg.var_dir == tmp_path / "v"
    assert cfg.feature_export_dir == tmp_path / "v" / "features"  # follows SKEWLESS_VAR_DIR
    assert cfg.warehouse_path == tmp_path / "w.duckdb"
    assert cfg.redis_url == "redis://:pw@redis:6379/2"
    assert cfg.mlflow_tracking_uri == "http://mlflow:5000"
    assert cfg.label_delay == timedelta(days=1.5)
    assert cfg.dependency_attempts == 3
    assert settings.load({"REDIS_URL": ""}).redis_url is None  # empty = unset


@pytest.mark.parametrize(
    ("name", "value", "expects"),
    [
        ("SKEWLESS_LABEL_DELAY_DAYS", "abc", "a number of days >= 0"),
        ("SKEWLESS_LABEL_DELAY_DAYS", "-1", "a number of days >= 0"),
        ("SKEWLESS_MAX_QUARANTINE_SHARE", "2", "a share between 0 and 1"),
        ("REDIS_URL", "localhost:6379", "redis://"),
        ("REDIS_URL", "http://redis:6379/0", "redis://"),
        ("REDIS_URL", "redis://redis:port/0", "numeric port"),
        ("MLFLOW_TRACKING_URI", "mlflow:5000", "a URI such as http://mlflow:5000"),
        ("SKEWLESS_DEPENDENCY_ATTEMPTS", "0", "a whole number >= 1"),
        ("SKEWLESS_SERVING_MODE", "fast", "one of exact, streaming, materialized"),
        ("SKEWLESS_RECORD_EVENTS", "False", "true or false"),
        ("SKEWLESS_BIND", "8000", "host:port"),
        ("SKEWLESS_STREAM_LAG_SECONDS", "soon", "a number of seconds >= 0"),
    ],
)
def test_a_malformed_value_names_the_variable_and_what_it_expects(name, value, expects):
    with pytest.raises(settings.SettingError) as caught:
        settings.effective({name: value})
    assert str(caught.value).startswith(f"{name}={value!r}: expected ")
    assert expects in str(caught.value)


def test_mask_hides_passwords_and_tokens_only():
    assert settings.mask("redis://:pw@redis:6379/0") == "redis://:***@redis:6379/0"
    assert settings.mask("postgresql://u:pw@pg:5432/db") == "postgresql://u:***@pg:5432/db"
    assert settings.mask("http://mlflow:5000") == "http://mlflow:5000"
    assert settings.mask("sqlite:////x/mlflow.db") == "sqlite:////x/mlflow.db"
    assert settings.mask("a-token") == "***"
    assert settings.mask(None) is None


def test_each_component_reads_its_section_of_the_table():
    from serving.app import create_app

    assert settings.section("gunicorn", {}) == {
        "BIND": "127.0.0.1:8000",
        "WORKERS": 2,
        "THREADS": 1,
    }
    assert settings.section("stream", {"SKEWLESS_STREAM_LAG_SECONDS": "2.5"}) == {
        "STREAM_LAG_SECONDS": 2.5,
        "STREAM_ALLOWED_LATENESS_SECONDS": 3600.0,
    }
    sidecar = settings.section("sidecar", {})
    assert set(sidecar) == {
        s.env.removeprefix("SKEWLESS_") for s in settings.TABLE if s.component == "sidecar"
    }
    assert sidecar["SERVING_MODE"] == "materialized" and sidecar["API_TOKEN"] is None
    app = create_app(
        {
            "SETTINGS": settings.load({}),
            "LOAD_MODEL": False,
            "MODEL_CHECK_SECONDS": 0,
            "API_TOKEN": 1234,
            "REDIS_URL": "redis://127.0.0.1:1/0",
        }
    )
    assert app.config["API_TOKEN"] == "1234"  # checked and typed by the table like the variable
    assert app.config["MAX_CONTENT_LENGTH"] == 16384
    app.extensions["skewless"].close()


def test_an_override_goes_through_the_same_check_as_the_variable():
    with pytest.raises(
        settings.SettingError, match="SKEWLESS_SERVING_MODE='nope': expected one of"
    ):
        settings.section("sidecar", {}, overrides={"SERVING_MODE": "nope"})
    with pytest.raises(
        settings.SettingError,
        match="SKEWLESS_STREAM_LAG_SECONDS='-1': expected a number of seconds >= 0",
    ):
        settings.section("stream", {}, overrides={"STREAM_LAG_SECONDS": -1})
    with pytest.raises(ValueError, match="component='web'"):
        settings.section("web", {})


def test_every_skewless_variable_in_the_code_is_in_the_table():
    derived = set(pipeline.tool_env(settings.load({}))) - set(os.environ)  # set by pipeline
    names = set()
    for folder in ("skewless", "serving", "models", "dags", "feature_repo"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"\bSKEWLESS_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    unknown = names - set(settings.BY_ENV) - derived
    assert not unknown, f"read by the code but not in settings.TABLE: {sorted(unknown)}"


def test_feature_store_and_dbt_profile_read_table_variables():
    derived = set(pipeline.tool_env(settings.load({})))
    for path in (ROOT / "feature_repo").glob("feature_store*.yaml"):
        for name in re.findall(r"\$\{(\w+)\}", path.read_text()):
            assert name in settings.BY_ENV or name in derived, f"{path.name}: {name}"
    profile = (ROOT / "dbt_project" / "profiles.yml").read_text()
    uses = re.findall(r"env_var\('(\w+)'(?:, '([^']*)')?\)", profile)
    assert uses
    for name, default in uses:
        setting = settings.BY_ENV.get(name)
        assert setting is not None, f"profiles.yml: {name} is not in settings.TABLE"
        if default and isinstance(settings.get(name, {}), Path):
            # relative to dbt_project/, the same file as the table's default
            assert (ROOT / "dbt_project" / default).resolve() == settings.get(name, {})
        elif default:
            assert default == str(settings.get(name, {})), f"profiles.yml: {name} default"
    # and the pipeline passes the ones with a value from the table (the others come from the
    # caller's environment only when set)
    env = pipeline.dbt_environment(settings.load({}))
    assert all(
        env[name] == str(settings.get(name, {}))
        for name, _ in uses
        if settings.get(name, {}) is not None
    )


def test_documented_configuration_table_is_the_generated_one():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert settings.markdown_table() in page, (
        "docs/configuration.md's table is out of date: paste "
        "`python -c 'from skewless import settings; print(settings.markdown_table())'`"
    )


def run(*args, env_extra=None, timeout=60):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [SKEWLESS, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_config_prints_effective_values_with_secrets_masked(var_dir):
    secrets = {
        "REDIS_URL": "redis://:hunter2@redis.example:6379/0",
        "MLFLOW_TRACKING_URI": "postgresql://ml:pgpass99@pg:5432/mlflow",
        "SKEWLESS_API_TOKEN": "tok-123456",
        "AIRFLOW__API_AUTH__JWT_SECRET": "jwt-secret-xyz",
        "SKEWLESS_LABEL_DELAY_DAYS": "3",
    }
    for args in (["config"], ["config", "--json"]):
        proc = run(*args, env_extra=secrets)
        assert proc.returncode == 0, proc.stderr
        for value in ("hunter2", "pgpass99", "tok-123456", "jwt-secret-xyz"):
            assert value not in proc.stdout
    data = json.loads(proc.stdout)
    assert data["REDIS_URL"] == {
        "value": "redis://:***@redis.example:6379/0",
        "source": "environment",
        "component": "core",
    }
    assert data["SKEWLESS_API_TOKEN"]["value"] == "***"
    assert data["SKEWLESS_LABEL_DELAY_DAYS"]["value"] == "3"
    assert data["SKEWLESS_WAREHOUSE"] == {
        "value": str(var_dir / "warehouse.duckdb"),
        "source": "default",
        "component": "core",
    }
    assert data["airflow"]["AIRFLOW__API_AUTH__JWT_SECRET"] == "***"
    assert set(data) == {s.env for s in settings.TABLE} | {"airflow"}


def test_config_rejects_a_malformed_value_by_name(var_dir):
    proc = run("config", env_extra={"REDIS_URL": "localhost:6379"})
    assert proc.returncode == 2
    assert "REDIS_URL='localhost:6379': expected a URL redis://" in proc.stderr


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAST_RETRY = {"SKEWLESS_DEPENDENCY_ATTEMPTS": "3", "SKEWLESS_DEPENDENCY_DELAY_SECONDS": "0.2"}


def test_serve_refuses_to_start_without_redis_after_bounded_retries(var_dir):
    url = f"redis://:hunter2@127.0.0.1:{_closed_port()}/0"
    proc = run("serve", env_extra={**FAST_RETRY, "REDIS_URL": url}, timeout=30)
    assert proc.returncode == 1
    shown = url.replace("hunter2", "***")
    assert f"error: Redis at {shown} is unreachable after 3 attempts" in proc.stderr
    assert len(re.findall(r"attempt \d/3", proc.stderr)) == 3  # one logged line per try
    assert "hunter2" not in proc.stderr + proc.stdout


def test_serve_refuses_to_start_without_mlflow(var_dir, redis_url):
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {**FAST_RETRY, "REDIS_URL": redis_url, "MLFLOW_TRACKING_URI": url}
    proc = run("serve", env_extra=env, timeout=30)
    assert proc.returncode == 1
    assert f"error: MLflow at {url} is unreachable after 3 attempts" in proc.stderr
    assert f"Redis at {redis_url} answers" in proc.stderr


def test_wait_for_redis_returns_at_once_when_it_answers(redis_url, monkeypatch):
    slept = []
    monkeypatch.setattr(dependencies.time, "sleep", slept.append)
    dependencies.wait_for_redis(redis_url, attempts=3, delay=5)
    assert slept == []


def test_wait_for_gives_up_with_the_dependency_and_url():
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(dependencies.DependencyUnavailable, match=f"MLflow at {url} is unreach"):
        dependencies.wait_for_mlflow(url, attempts=2, delay=0)
    dependencies.wait_for_mlflow("sqlite:////nowhere/mlflow.db", attempts=1, delay=0)  # local
