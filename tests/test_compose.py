"""docker-compose.yml checked against the code: there is no Docker engine on these machines.

``compose_problems`` lists every disagreement between the compose file, .env.example, the
Dockerfile and the code; the real files must have none, and planted broken copies must be caught.
What it checks:
- each service's command is a real `skewless` subcommand that parses (argparse of skewless/cli.py),
  `skewless airflow X` an Airflow CLI subcommand, healthcheck commands likewise, the MLflow
  server's options are options of `mlflow server`;
- every ${VAR} is documented in .env.example or has a ${VAR:-default}; required secrets
  (${VAR:?…}) are assigned (empty) in .env.example;
- every variable the code reads (settings.TABLE) is set or has a default
  in each project service, the deployment ones (REDIS_URL, MLFLOW_TRACKING_URI) set explicitly;
  every SKEWLESS_* the file sets is a known setting and its value parses;
- ports agree with the code's defaults (sidecar 8000, MLflow 5000, Airflow 8080, Redis 6379);
- every URL points at an existing service on that service's port;
- images are pinned (no latest, no untagged), the MLflow image is requirements.txt's version;
- every long-running service has a healthcheck; no literal secret anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from skewless import cli, orchestration, settings

ROOT = settings.PROJECT_ROOT
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
URL = re.compile(r"\b([a-z][a-z0-9+.-]*)://([^\s'\"/]+)")
SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|AUTH")
REDIS_PORT, POSTGRES_PORT = 6379, 5432  # the images' own defaults


# --- what the code says ---------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


@cache
def skewless_subcommands() -> dict[str, argparse.ArgumentParser]:
    return _subparsers(cli.build_parser())


@cache
def airflow_parser() -> argparse.ArgumentParser:
    from airflow.cli import cli_parser

    return cli_parser.get_parser()


def _parses(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """None if argv parses, else argparse's complaint."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as exc:
        return err.getvalue().strip().splitlines()[-1] if err.getvalue() else f"exit {exc.code}"
    return None


def code_variables() -> set[str]:
    """Every environment variable the code reads: the settings table (the sidecar reads its own
    section of it)."""
    return {s.env for s in settings.TABLE}


def code_ports() -> dict[str, int]:
    bind_port = int(settings.BY_ENV["SKEWLESS_BIND"].default.rpartition(":")[2])
    mlflow_port = skewless_subcommands()["mlflow-ui"].get_default("port")
    airflow_port = int(orchestration.airflow_env()["AIRFLOW__API__PORT"])
    return {"sidecar": bind_port, "mlflow": mlflow_port, "airflow-api-server": airflow_port}


def requirement_version(name: str) -> str:
    match = re.search(rf"^{re.escape(name)}==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert match, f"{name} is not pinned in requirements.txt"
    return match.group(1)


# --- reading the files ------------------------------------------------------------------------


def env_example(text: str) -> tuple[dict[str, str], set[str]]:
    """(assigned: VAR -> value, documented: every VAR named anywhere, comments included)."""
    assigned = {}
    for line in text.splitlines():
        match = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line.strip())
        if match:
            assigned[match.group(1)] = match.group(2)
    documented = set(re.findall(r"\b([A-Z][A-Z0-9_]*[A-Z0-9])=", text)) | set(assigned)
    return assigned, documented


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}; $$ is a literal $."""

    def sub(match: re.Match) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        return arg if op in (":-", "-") else ""

    return VAR.sub(sub, value).replace("$$", "$")


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _argv(command) -> list[str]:
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _healthcheck_argv(test) -> list[str] | None:
    """The argv of a CMD healthcheck; None for CMD-SHELL (a shell line)."""
    if isinstance(test, list) and test and test[0] == "CMD":
        return [str(part) for part in test[1:]]
    return None


# --- the checks -------------------------------------------------------------------------------


def compose_problems(compose_text: str, env_text: str, dockerfile_text: str) -> list[str]:
    compose = yaml.safe_load(compose_text)
    services: dict = compose["services"]
    assigned, documented = env_example(env_text)
    problems: list[str] = []

    # 1. variables: documented or defaulted; required ones assigned in .env.example
    for match in VAR.finditer(compose_text):
        name, op, arg = match.groups()
        if op == ":?" and name not in assigned:
            problems.append(f"${{{name}}} is required but not assigned in .env.example")
        elif op not in (":-", "-") and name not in documented:
            problems.append(f"${{{name}}} has no default and is not documented in .env.example")
    for name, value in assigned.items():
        if SECRET_KEY.search(name) and value:
            problems.append(f".env.example gives secret {name} a value: leave it empty")

    # sample values for the documented variables (secrets get a placeholder)
    sample = {name: value or "sample0secret" for name, value in assigned.items()}

    def resolved(value) -> str:
        return interpolate(str(value), sample)

    # 2. images pinned; project images built here
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)[1]
    for name, service in services.items():
        image = resolved(service.get("image", ""))
        repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        if not image or not tag or tag == "latest" or not re.search(r"\d", tag):
            problems.append(f"{name}: image {image!r} is not pinned to a version")
            continue
        if repo.startswith("skewless"):
            if tag != version:
                problems.append(f"{name}: image {image} is not the project version {version}")
            target = resolved(service.get("build", {}).get("target", ""))
            if not re.search(rf"^FROM \S+ AS {re.escape(target)}$", dockerfile_text, re.M):
                problems.append(f"{name}: build target {target!r} is not a Dockerfile stage")
        if repo.endswith("mlflow/mlflow"):
            pinned = requirement_version("mlflow")
            if not tag.startswith(f"v{pinned}"):
                problems.append(f"{name}: {image} is not mlflow {pinned} of requirements.txt")
    stages = re.findall(r" AS (\S+)$", dockerfile_text, re.M)
    for base in re.findall(r"^FROM (\S+)", dockerfile_text, re.M):
        if base not in stages and (":" not in base or base.endswith(":latest")):
            problems.append(f"Dockerfile: FROM {base} is not pinned")

    # 3. commands
    subcommands = skewless_subcommands()
    for name, service in services.items():
        checks = []
        if "command" in service:
            checks.append(("command", _argv(service["command"])))
        if "entrypoint" in service:
            checks.append(("entrypoint", _argv(service["entrypoint"])))
        health = service.get("healthcheck", {}).get("test")
        if _healthcheck_argv(health):
            checks.append(("healthcheck", _healthcheck_argv(health)))
        for what, argv in checks:
            argv = [resolved(a) for a in argv]
            problems += [f"{name} {what}: {p}" for p in _command_problems(argv, subcommands)]
        uses_celery = "celery" in _argv(service.get("command", [])) or (
            resolved(service.get("build", {}).get("target", "")) == "celery"
        )
        celery_stage = r"FROM \S+ AS celery[\s\S]*apache-airflow-providers-celery=="
        if uses_celery and not re.search(celery_stage, dockerfile_text):
            problems.append(f"{name}: the celery stage does not install the Celery provider")

    # 4. environment the code reads
    variables = code_variables()
    for name, service in services.items():
        if not resolved(service.get("image", "")).startswith("skewless"):
            continue
        env = {k: resolved(v) for k, v in (service.get("environment") or {}).items()}
        for key, value in env.items():
            if key.startswith("SKEWLESS_") and key not in variables:
                problems.append(f"{name}: sets {key}, which no code reads (not in settings.TABLE)")
            elif key in settings.BY_ENV and value:
                try:
                    settings.BY_ENV[key].parse_text(value)
                except settings.SettingError as exc:
                    problems.append(f"{name}: {exc}")
        for variable in sorted(variables):
            setting = settings.BY_ENV.get(variable)
            if setting is None:
                problems.append(f"{variable} is read by the sidecar but not in settings.TABLE")
            elif setting.deploy and not env.get(variable):
                problems.append(f"{name}: {variable} must be set (its default suits one machine)")
            elif variable not in env and setting.default is None and not setting.unset:
                problems.append(f"{name}: {variable} has neither a value nor a default")

    # 5. ports agree with the code
    ports = {"redis": REDIS_PORT, "postgres": POSTGRES_PORT}
    expected = code_ports()
    for name, port in expected.items():
        service = services.get(name)
        if service is None:
            problems.append(f"no service {name}")
            continue
        argv = [resolved(a) for a in _argv(service.get("command", []))]
        env = {k: resolved(v) for k, v in (service.get("environment") or {}).items()}
        listens = None
        if "--port" in argv:
            listens = int(argv[argv.index("--port") + 1])
        elif "AIRFLOW__API__PORT" in env:
            listens = int(env["AIRFLOW__API__PORT"])
        if listens != port:
            problems.append(f"{name}: listens on {listens}, the code's default is {port}")
        for mapping in service.get("ports", []):
            container = int(str(resolved(mapping)).rsplit(":", 1)[-1].split("/")[0])
            if container != port:
                problems.append(f"{name}: publishes container port {container}, expected {port}")
        ports[name] = port
    redis_argv = [resolved(a) for a in _argv(services.get("redis", {}).get("command", []))]
    if "--port" in redis_argv and int(redis_argv[redis_argv.index("--port") + 1]) != REDIS_PORT:
        problems.append(f"redis: not on {REDIS_PORT}")

    # 6. URLs point at existing services, on their ports; literal secrets
    for name, service in services.items():
        for text in _strings(service):
            problems += [f"{name}: {p}" for p in _url_problems(resolved(text), services, ports)]
            problems += [f"{name}: {p}" for p in _literal_secret_problems(text)]
        argv = _argv(service.get("command", []))
        for flag, value in zip(argv, argv[1:], strict=False):
            if flag == "--requirepass" and not VAR.fullmatch(value):
                problems.append(f"{name}: --requirepass with a literal password")
        env = service.get("environment") or {}
        for key, value in env.items():
            if SECRET_KEY.search(key) and not key.endswith(("_FILE", "_USERS")):
                literal = VAR.sub("", str(value)).strip()
                if literal:
                    problems.append(f"{name}: {key} has a literal value; use ${{VAR}}")
                for match in VAR.finditer(str(value)):
                    if match.group(2) in (":-", "-") and match.group(3):
                        problems.append(f"{name}: {key} has a default secret")
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"{name}: depends on unknown service {dependency}")

    # 7. health checks on every long-running service
    for name, service in services.items():
        if str(service.get("restart", "")) != "no" and "healthcheck" not in service:
            problems.append(f"{name}: a long-running service without a healthcheck")
    return problems


def _command_problems(argv: list[str], subcommands) -> list[str]:
    if not argv:
        return ["empty command"]
    program, args = Path(argv[0]).name, argv[1:]
    if program == "skewless":
        if not args or args[0] not in subcommands:
            return [f"`skewless {' '.join(args[:1])}` is not a skewless subcommand"]
        complaint = _parses(cli.build_parser(), args)
        if complaint:
            return [f"`skewless {' '.join(args)}`: {complaint}"]
        if args[0] == "airflow" and len(args) > 1:
            return _airflow_problems(args[1:])
        return []
    if program == "airflow":
        return _airflow_problems(args)
    if program == "mlflow":
        return _mlflow_problems(args)
    if program in ("python", "redis-cli", "redis-server", "pg_isready"):
        return []
    return [f"`{program}` is neither skewless, airflow nor mlflow"]


def _airflow_problems(args: list[str]) -> list[str]:
    if args[:1] == ["celery"]:  # provided by the Celery provider (the image's celery stage)
        return [] if args[1:2] == ["worker"] else [f"`airflow {' '.join(args)}` unknown"]
    if args[0] not in _subparsers(airflow_parser()):
        return [f"`airflow {args[0]}` is not an Airflow subcommand"]
    complaint = _parses(airflow_parser(), args)
    return [f"`airflow {' '.join(args)}`: {complaint}"] if complaint else []


def _mlflow_problems(args: list[str]) -> list[str]:
    import click
    from mlflow.cli import cli as mlflow_cli

    if not args or args[0] not in mlflow_cli.commands:
        return [f"`mlflow {' '.join(args[:1])}` is not an MLflow command"]
    try:
        mlflow_cli.commands[args[0]].make_context(args[0], list(args[1:]))
    except click.ClickException as exc:
        return [f"`mlflow {args[0]}`: {exc.format_message()}"]
    return []


def _url_problems(text: str, services: dict, ports: dict[str, int]) -> list[str]:
    problems = []
    for scheme, netloc in URL.findall(text):
        parts = urlsplit(f"{scheme}://{netloc}")
        host = parts.hostname
        if host in ("127.0.0.1", "localhost", "0.0.0.0", None) or scheme in ("file", "sqlite"):
            continue
        if host not in services:
            problems.append(f"URL {scheme}://{host} points at no service")
        elif host in ports and (parts.port or ports[host]) != ports[host]:
            problems.append(f"URL {scheme}://{host}:{parts.port} but {host} is on {ports[host]}")
    return problems


def _literal_secret_problems(text: str) -> list[str]:
    """A password inside a URL must be a ${VAR} reference."""
    problems = []
    for scheme, netloc in URL.findall(VAR.sub("VAR_REF", text)):
        userinfo = netloc.rpartition("@")[0]
        password = userinfo.partition(":")[2]
        if password and password != "VAR_REF":
            problems.append(f"a literal password in a {scheme}:// URL")
    return problems


# --- the tests --------------------------------------------------------------------------------


def _files() -> tuple[str, str, str]:
    return COMPOSE.read_text(), ENV_EXAMPLE.read_text(), DOCKERFILE.read_text()


def test_compose_file_agrees_with_the_code():
    assert compose_problems(*_files()) == []


def test_stream_consumer_command_exists():
    compose = yaml.safe_load(COMPOSE.read_text())
    argv = _argv(compose["services"]["stream-consumer"]["command"])
    assert _command_problems(argv, skewless_subcommands()) == []


BREAKAGES = {
    "unknown skewless subcommand": (
        'command: ["skewless", "serve", "--host"',
        'command: ["skewless", "serv", "--host"',
        "`skewless serv` is not a skewless subcommand",
    ),
    "bad skewless option": (
        '"skewless", "serve", "--host", "0.0.0.0", "--port", "8000"',
        '"skewless", "serve", "--hots", "0.0.0.0", "--port", "8000"',
        "unrecognized arguments: --hots",
    ),
    "unknown airflow subcommand": (
        '["skewless", "airflow", "triggerer"]',
        '["skewless", "airflow", "trigger"]',
        "`airflow trigger` is not an Airflow subcommand",
    ),
    "bad healthcheck job type": (
        '"--job-type", "TriggererJob"',
        '"--job-type", "TriggerJob"',
        "invalid choice",
    ),
    "unknown mlflow option": (
        "- --artifacts-destination",
        "- --artifact-destination",
        "No such option '--artifact-destination'",
    ),
    "undocumented variable": (
        "AIRFLOW__CORE__EXECUTOR: ${AIRFLOW_EXECUTOR:-LocalExecutor}",
        "AIRFLOW__CORE__EXECUTOR: ${AIRFLOW_EXECUTOR_TYPE}",
        "${AIRFLOW_EXECUTOR_TYPE} has no default and is not documented",
    ),
    "unknown SKEWLESS variable": (
        "SKEWLESS_THREADS: ${SKEWLESS_THREADS:-1}",
        "SKEWLESS_THREAD: ${SKEWLESS_THREADS:-1}",
        "sets SKEWLESS_THREAD, which no code reads",
    ),
    "malformed setting": (
        "MLFLOW_TRACKING_URI: http://mlflow:5000",
        "MLFLOW_TRACKING_URI: mlflow:5000",
        "MLFLOW_TRACKING_URI='mlflow:5000': expected a URI",
    ),
    "deployment setting missing": (
        "  MLFLOW_TRACKING_URI: http://mlflow:5000\n",
        "\n",
        "MLFLOW_TRACKING_URI must be set",
    ),
    "sidecar port": ('"--port", "8000"', '"--port", "8001"', "sidecar: listens on 8001"),
    "published port": ('"8080:8080"', '"8080:8081"', "publishes container port 8081"),
    "URL to no service": ("http://mlflow:5000\n", "http://mlflow-server:5000\n", "points at no"),
    "URL on a wrong port": ("@redis:6379/0", "@redis:6380/0", "redis is on 6379"),
    "latest image": ("postgres:17.6-bookworm", "postgres:latest", "is not pinned"),
    "untagged image": ("image: redis:7.4.5-bookworm", "image: redis", "is not pinned"),
    "mlflow version": ("mlflow/mlflow:v3.17.2-full", "mlflow/mlflow:v3.1.0", "is not mlflow"),
    "missing healthcheck": (None, None, "redis: a long-running service without a healthcheck"),
    "literal password in a URL": (
        "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}@redis:6379/1",
        "redis://:hunter2@redis:6379/1",
        "a literal password",
    ),
    "literal secret": (
        "AIRFLOW__API_AUTH__JWT_SECRET: ${AIRFLOW_JWT_SECRET:?set AIRFLOW_JWT_SECRET in .env}",
        "AIRFLOW__API_AUTH__JWT_SECRET: s3cr3t",
        "AIRFLOW__API_AUTH__JWT_SECRET has a literal value",
    ),
    "default secret": (
        "SKEWLESS_API_TOKEN: ${SKEWLESS_API_TOKEN:-}",
        "SKEWLESS_API_TOKEN: ${SKEWLESS_API_TOKEN:-letmein}",
        "SKEWLESS_API_TOKEN has a default secret",
    ),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_planted_breakage_is_caught(name):
    old, new, expected = BREAKAGES[name]
    compose, env, dockerfile = _files()
    if name == "missing healthcheck":
        compose = _drop_healthcheck(compose, "redis")
    else:
        assert old in compose, f"the planted breakage no longer applies: {old!r}"
        compose = compose.replace(old, new, 1)
    problems = compose_problems(compose, env, dockerfile)
    assert any(expected in p for p in problems), problems


def _drop_healthcheck(compose_text: str, service: str) -> str:
    data = yaml.safe_load(compose_text)
    del data["services"][service]["healthcheck"]
    return yaml.safe_dump(data, sort_keys=False)


def test_a_required_secret_missing_from_env_example_is_caught():
    compose, env, dockerfile = _files()
    env = env.replace("\nREDIS_PASSWORD=\n", "\n")
    problems = compose_problems(compose, env, dockerfile)
    assert any("${REDIS_PASSWORD} is required" in p for p in problems), problems


def test_a_secret_given_a_value_in_env_example_is_caught():
    compose, env, dockerfile = _files()
    env = env.replace("\nPOSTGRES_PASSWORD=\n", "\nPOSTGRES_PASSWORD=postgres\n")
    problems = compose_problems(compose, env, dockerfile)
    assert any("gives secret POSTGRES_PASSWORD a value" in p for p in problems), problems


def test_an_unpinned_dockerfile_base_is_caught():
    compose, env, dockerfile = _files()
    dockerfile = re.sub(r"^FROM python:\S+", "FROM python", dockerfile, count=1, flags=re.M)
    problems = compose_problems(compose, env, dockerfile)
    assert any("Dockerfile: FROM python is not pinned" in p for p in problems), problems


def test_env_example_documents_every_setting_with_its_default():
    _, documented = env_example(ENV_EXAMPLE.read_text())
    text = ENV_EXAMPLE.read_text()
    for setting in settings.TABLE:
        assert setting.env in documented, f"{setting.env} is not in .env.example"
        if setting.default is None or setting.deploy:
            continue
        shown = re.escape(setting.display_default())
        lines = [line for line in text.splitlines() if f"{setting.env}=" in line]
        assert any(
            re.search(rf"\b{setting.env}={shown}(\s|$)|\(default: {shown}\)", line)
            for line in lines
        ), f".env.example: {setting.env} should show its default {setting.display_default()}"
