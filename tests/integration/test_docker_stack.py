"""The docker stack (docker/compose.yaml, docker/Dockerfile) without a Docker engine.

Two halves:
* structure: compose.yaml, .env.example, the Dockerfile and .dockerignore hold what the stack relies on;
* native run: a real PostgreSQL on 127.0.0.1 set up by the same init script the postgres service mounts, then
  each service's command and environment taken from compose.yaml (host names and ports translated to
  127.0.0.1 and free ports, volume paths to temporary directories) and checked end to end: the Prefect
  server stores in PostgreSQL, MLflow keeps runs in PostgreSQL and artifacts on its volume, served through the
  server, and the worker joins the `yotsuba` pool and runs a flow that reaches MLflow with the stack's settings.

The native run needs PostgreSQL's server binaries (Debian: `apt-get install postgresql`; .ci/run installs them)
and is skipped without them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV_BIN = Path(sys.executable).parent

SERVICES = {"postgres", "prefect-server", "prefect-worker", "mlflow"}
APP_SERVICES = {"prefect-server", "prefect-worker", "mlflow"}  # run on the app image
POOL = "yotsuba"
PASSWORDS = ("POSTGRES_PASSWORD", "PREFECT_DB_PASSWORD", "MLFLOW_DB_PASSWORD")

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------------------------------
# Compose's variable interpolation (the subset compose.yaml may use): ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, $VAR, and $$ for a literal $ (left to the container's shell).

VARIABLE = re.compile(r"\$\$|\$\{(?P<braced>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


class InterpolationError(ValueError):
    pass


def variables_used(value: Any) -> set[str]:
    """The variables a parsed compose document (or any value in it) reads."""
    if isinstance(value, dict):
        return set().union(*map(variables_used, value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*map(variables_used, value)) if value else set()
    if not isinstance(value, str):
        return set()
    return {m["braced"] or m["bare"] for m in VARIABLE.finditer(value) if m.group(0) != "$$"}


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` (a string, or lists/dicts of them) with compose's substitutions applied."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"]
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if missing else current
        if op in (":?", "?") and missing:
            raise InterpolationError(f"{name}: {arg}")
        return current or ""

    return VARIABLE.sub(substitute, value)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=value: {line!r}"
        values[key.strip()] = value.strip()
    return values


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's short-syntax volumes."""
    mounts = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        mounts[target] = source
    return mounts


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    kind, *rest = test
    assert kind in ("CMD", "CMD-SHELL"), test
    return ["sh", "-c", rest[0]] if kind == "CMD-SHELL" else rest


def named_volumes() -> set[str]:
    """The volumes compose.yaml declares at its top level."""
    return set(yaml.safe_load(COMPOSE_FILE.read_text()).get("volumes") or {})


def option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def stack_env(env_example: dict[str, str]) -> dict[str, str]:
    """What docker/.env would hold: the example with the passwords filled in."""
    return {**env_example, **{name: secrets.token_hex(12) for name in PASSWORDS}}


@pytest.fixture(scope="module")
def services(compose: dict[str, Any], stack_env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """compose.yaml's services, interpolated with `stack_env` (as `docker compose config` shows them)."""
    return interpolate(compose["services"], stack_env)


# --------------------------------------------------------------------------------------------------------------
# Structure


def test_services_depend_on_healthy_services(services: dict[str, dict[str, Any]]) -> None:
    assert services.keys() >= SERVICES
    expected = {
        "prefect-server": {"postgres"},
        "mlflow": {"postgres"},
        "prefect-worker": {"prefect-server", "mlflow"},
    }
    for name, needs in expected.items():
        depends_on = services[name].get("depends_on")
        assert isinstance(depends_on, dict), f"{name}: depends_on needs the long form, with conditions"
        assert set(depends_on) >= needs, name
        for dependency in needs:
            assert depends_on[dependency].get("condition") == "service_healthy", (
                f"{name} must wait for {dependency} to be healthy")
            assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck to wait for"
    postgres_check = " ".join(healthcheck_argv(services["postgres"]))
    assert "pg_isready" in postgres_check
    # Over TCP: the image's init phase serves the Unix socket only, so healthy means the databases exist.
    assert "-h 127.0.0.1" in postgres_check or "-h localhost" in postgres_check
    for name in SERVICES:
        assert services[name].get("restart") in ("unless-stopped", "always"), name


def test_app_services_are_built_from_the_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    built = {name: service for name, service in services.items() if "build" in service}
    assert built.keys() >= APP_SERVICES
    images = set()
    for name, service in built.items():
        build = service["build"]
        assert (DOCKER / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
        assert build["args"]["TORCH_VARIANT"] in ("cpu", "cuda"), name
        images.add(service["image"])
        assert service.get("init") is True, f"{name}: without an init, signals and zombies go unhandled"
    assert len(images) == 1, f"one app image for every app service, not {images}"
    worker = services["prefect-worker"]
    command = worker["command"]
    assert isinstance(command, list), "exec form, so that signals reach the worker"
    assert command[:3] == ["prefect", "worker", "start"]
    assert option(command, "--pool") == POOL
    assert option(command, "--type") == "process"
    assert worker["working_dir"] == "/app"


def test_databases_and_urls_agree(services: dict[str, dict[str, Any]], stack_env: dict[str, str]) -> None:
    postgres = services["postgres"]
    pg_env = environment(postgres)
    assert pg_env["POSTGRES_PASSWORD"] == stack_env["POSTGRES_PASSWORD"]
    mounts = volume_mounts(postgres)
    assert mounts.get("/var/lib/postgresql/data") in named_volumes()
    init_targets = [target for target in mounts if target.startswith("/docker-entrypoint-initdb.d/")]
    assert len(init_targets) == 1 and init_targets[0].endswith(".sh")
    script = (DOCKER / mounts[init_targets[0]]).resolve()
    assert script.is_file() and os.access(script, os.X_OK), f"{script} must exist and be executable"

    prefect_url = urlsplit(environment(services["prefect-server"])["PREFECT_API_DATABASE_CONNECTION_URL"])
    mlflow_url = urlsplit(environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"])
    for url, scheme, app in ((prefect_url, "postgresql+asyncpg", "PREFECT"), (mlflow_url, "postgresql", "MLFLOW")):
        assert url.scheme == scheme
        assert (url.hostname, url.port) == ("postgres", 5432)
        assert url.username == pg_env[f"{app}_DB_USER"]
        assert url.password == pg_env[f"{app}_DB_PASSWORD"] == stack_env[f"{app}_DB_PASSWORD"]
        assert url.path == "/" + pg_env[f"{app}_DB_NAME"]
    assert pg_env["PREFECT_DB_NAME"] != pg_env["MLFLOW_DB_NAME"]
    # Secrets stay out of command lines (`docker ps`, `ps` show those).
    for name, service in services.items():
        command = " ".join(service.get("command", []))
        for secret in PASSWORDS:
            assert stack_env[secret] not in command, f"{name}'s command holds {secret}"


def test_mlflow_serves_artifacts_from_a_named_volume(services: dict[str, dict[str, Any]]) -> None:
    from mlflow.server.security_utils import is_allowed_host_header

    mlflow = services["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    assert "--serve-artifacts" in command and "--no-serve-artifacts" not in command
    assert "--artifacts-only" not in command
    # A --default-artifact-root would send clients to the storage directly instead of through the server.
    assert "--default-artifact-root" not in command
    assert "--backend-store-uri" not in command, "the backend store (with its password) comes from the environment"
    destination = option(command, "--artifacts-destination")
    assert destination and destination.startswith("/")
    assert volume_mounts(mlflow).get(destination) in named_volumes()
    port = int(option(command, "--port"))
    # The app reaches the server by its service name, a browser by localhost: both Host headers are allowed,
    # others are not.
    allowed = option(command, "--allowed-hosts").split(",")
    tracking = urlsplit(environment(services["prefect-worker"])["MLFLOW_TRACKING_URI"])
    assert (tracking.scheme, tracking.hostname, tracking.port) == ("http", "mlflow", port)
    for host in (f"mlflow:{port}", "localhost", f"localhost:{port}", f"127.0.0.1:{port}"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "attacker.example")
    assert "*" not in allowed


def test_worker_environment_matches_settings(services: dict[str, dict[str, Any]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.settings import Settings

    worker = services["prefect-worker"]
    env = environment(worker)
    server_port = int(option(services["prefect-server"]["command"], "--port"))
    assert env["PREFECT_API_URL"] == f"http://prefect-server:{server_port}/api"
    assert env["YOTSUBA_DATA_DIR"] == "/data"
    # deployments/prefect.yaml runs flows from {{ $YOTSUBA_APP_DIR }}: where the image holds the source.
    assert env["YOTSUBA_APP_DIR"] == worker["working_dir"] == "/app"
    assert volume_mounts(worker).get("/data") in named_volumes()
    # Every YOTSUBA_* variable names a setting (a typo would be silently ignored otherwise).
    fields = {f"YOTSUBA_{name.upper()}" for name in Settings.model_fields}
    unknown = {key for key in env if key.startswith("YOTSUBA_")} - fields - {"YOTSUBA_APP_DIR"}
    assert not unknown, f"not settings of flows/settings.py: {unknown}"
    for key in ("YOTSUBA_REDDIT_CLIENT_ID", "YOTSUBA_REDDIT_CLIENT_SECRET", "YOTSUBA_IMGUR_CLIENT_ID"):
        assert key in env, key
    # The settings object reads this environment as the flows will.
    for key in [key for key in os.environ if key.startswith(("YOTSUBA_", "MLFLOW_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.tracking_uri() == env["MLFLOW_TRACKING_URI"]
    assert settings.data_dir == Path("/data")


def test_env_example_lists_every_variable(compose: dict[str, Any], env_example: dict[str, str]) -> None:
    used = variables_used(compose)
    assert used, "compose.yaml reads no variable?"
    assert used - env_example.keys() == set(), "variables compose.yaml reads but .env.example does not list"
    assert env_example.keys() - used == set(), "variables .env.example lists but compose.yaml does not read"
    # No password ships: each is empty in the example and required by compose.
    for name in PASSWORDS:
        assert env_example[name] == "", name
        with pytest.raises(InterpolationError, match=name):
            interpolate(compose["services"], {**env_example, **{p: "x" for p in PASSWORDS if p != name}})
    for key, value in env_example.items():
        if any(word in key for word in ("SECRET", "PASSWORD", "CLIENT_ID")):
            assert value == "", f"{key} must stay an empty placeholder"
    assert env_example["TORCH_VARIANT"] in ("cpu", "cuda")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        keyword, _, rest = whole.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile(env_example: dict[str, str]) -> None:
    instructions = dockerfile_instructions()
    text = DOCKERFILE.read_text()
    stages = [args for keyword, args in instructions if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: build in one stage, copy the environment into a clean one"
    assert any(keyword == "COPY" and "--from=" in args for keyword, args in instructions)
    # The build argument and both of its branches.
    assert ("ARG", "TORCH_VARIANT=cpu") in instructions
    assert re.search(r"^\s*cpu\)\s.*--index-url\s+\S*", text, re.M), "cpu branch: the PyTorch CPU index"
    assert "https://download.pytorch.org/whl/cpu" in text
    assert re.search(r"^\s*cuda\)\s", text, re.M), "cuda branch"
    assert re.search(r"^\s*\*\)\s.*exit 1", text, re.M), "any other TORCH_VARIANT fails the build"
    # The Dockerfile installs torch by the exact pins of pyproject.toml, found by `grep -E '^(torch|torchvision)=='`.
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert len([d for d in deps if re.match(r"^(torch|torchvision)==", d)]) == 2, deps
    assert "pip install --no-deps ." in text
    # The final stage: non-root, the source in /app, data in /data.
    final = instructions[max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"):]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must run as a non-root user"
    assert [args for keyword, args in final if keyword == "WORKDIR"][-1] == "/app"
    envs = " ".join(args for keyword, args in final if keyword == "ENV").split()
    assert "YOTSUBA_DATA_DIR=/data" in envs
    assert "YOTSUBA_APP_DIR=/app" in envs
    # No secret baked in.
    for keyword, args in instructions:
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|CLIENT_ID|TOKEN", args), args
    assert not any(keyword == "COPY" and ".env" in args.split() for keyword, args in instructions)


def test_dockerignore() -> None:
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    for needed in (".git", ".venv", ".env", "**/.env", "yotsuba-data", "yotsuba-demo", "mlflow.db",
                   "**/__pycache__"):
        assert needed in patterns, needed
    # What the build needs stays in the context.
    for kept in ("pyproject.toml", "README.md", "flows", "tasks", "models", "fakes", "docker"):
        assert kept not in patterns and f"/{kept}" not in patterns, kept


# --------------------------------------------------------------------------------------------------------------
# Native run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0)
    for directory in [*reversed(candidates), *(
            [str(Path(shutil.which("pg_ctl")).resolve().parent)] if shutil.which("pg_ctl") else [])]:
        if all((Path(directory) / tool).is_file() for tool in ("initdb", "postgres", "pg_isready", "psql")):
            return Path(directory)
    return None


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30, group: bool = True) -> int | None:
        """`sig` to the process's group (or to the process alone), then SIGKILL to the group after `timeout`.
        The exit status the process reached by itself; None when it had to be killed."""
        code = self.popen.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                (os.killpg if group else os.kill)(self.popen.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self.popen.wait(timeout)
        # Whatever is left of the group: children that outlived their parent, or all of it after the timeout.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        return code


def wait_until(check: Callable[[], bool], timeout: float, what: str, processes: list[Process]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            if process.popen.poll() is not None:
                pytest.fail(f"{process.name} exited ({process.popen.returncode}) while waiting for {what}:\n"
                            f"{process.tail()}")
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in processes)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(0.5)


@dataclass
class NativeStack:
    """compose.yaml's services as native processes on 127.0.0.1."""

    services: dict[str, dict[str, Any]]
    workdir: Path
    exits: contextlib.ExitStack
    ports: dict[str, int] = field(default_factory=dict)  # service -> native port
    internal: dict[str, int] = field(default_factory=dict)  # service -> its port inside the stack
    paths: dict[str, Path] = field(default_factory=dict)  # container path -> native path
    processes: list[Process] = field(default_factory=list)
    pg_bin: Path | None = None

    # ---- translation of compose values
    def translate(self, text: str, service: str) -> str:
        for other, port in self.internal.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(other)}:{port}(?!\d)", f"127.0.0.1:{self.ports[other]}", text)
        if service in self.internal:
            text = re.sub(rf"(?<![\w.-])(?:127\.0\.0\.1|localhost):{self.internal[service]}(?!\d)",
                          f"127.0.0.1:{self.ports[service]}", text)
        text = text.replace("0.0.0.0", "127.0.0.1")
        for inside, outside in sorted(self.paths.items(), key=lambda item: -len(item[0])):
            if text == inside or text.startswith(inside + "/"):
                return str(outside) + text[len(inside):]
        return text

    def argv(self, argv: list[str], service: str) -> list[str]:
        out = [self.translate(arg, service) for arg in argv]
        if "--port" in out and service in self.ports:
            out[out.index("--port") + 1] = str(self.ports[service])
        return out

    def env(self, service: str) -> dict[str, str]:
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("PREFECT_", "MLFLOW_", "YOTSUBA_", "PG"))}
        path = [str(VENV_BIN)] + ([str(self.pg_bin)] if self.pg_bin else []) + [base.get("PATH", "")]
        home = self.workdir / "home" / service
        home.mkdir(parents=True, exist_ok=True)
        env = {**base, "PATH": os.pathsep.join(path), "PREFECT_HOME": str(home / ".prefect"),
               "PYTHONUNBUFFERED": "1"}
        for key, value in environment(self.services[service]).items():
            if key.endswith("_PORT") and service in self.internal and value == str(self.internal[service]):
                env[key] = str(self.ports[service])
            else:
                env[key] = self.translate(value, service)
        return env

    def cwd(self, service: str) -> Path:
        if "working_dir" in self.services[service]:
            return Path(self.translate(self.services[service]["working_dir"], service))
        directory = self.workdir / "cwd" / service
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    # ---- processes
    def spawn(self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path, user: int | None = None,
              group: int | None = None) -> Process:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, user=user, group=group, extra_groups=[] if user is not None else None,
            )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_service(self, service: str) -> Process:
        spec = self.services[service]
        process = self.spawn(service, self.argv(spec["command"], service), self.env(service), self.cwd(service))
        return process

    def healthcheck(self, service: str) -> bool:
        """The service's compose healthcheck, run natively."""
        argv = self.argv(healthcheck_argv(self.services[service]), service)
        env = self.env(service)
        if service == "postgres":
            env["PGPORT"] = str(self.ports["postgres"])
        result = subprocess.run(argv, env=env, cwd=self.workdir, capture_output=True, timeout=30)
        return result.returncode == 0

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"


def start_postgres(stack: NativeStack) -> None:
    """initdb + postgres as an unprivileged user (PostgreSQL refuses to run as root), then the compose
    healthcheck, then the init script the postgres service mounts, with the service's environment."""
    pg_env = environment(stack.services["postgres"])
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("running as root and there is no `nobody` user to run PostgreSQL as")
        uid, gid = account.pw_uid, account.pw_gid
    else:
        uid, gid = None, None
    base = Path(tempfile.mkdtemp(prefix="yotsuba-pg-"))  # outside pytest's root-only tmp tree
    stack.exits.callback(shutil.rmtree, base, True)
    if uid is not None:
        os.chown(base, uid, gid)
    password_file = base / "password"
    password_file.write_text(pg_env["POSTGRES_PASSWORD"] + "\n")
    if uid is not None:
        os.chown(password_file, uid, gid)
    env = {"PATH": f"{stack.pg_bin}{os.pathsep}{os.environ.get('PATH', '')}", "LC_ALL": "C", "LANG": "C",
           "HOME": str(base)}
    initdb = subprocess.run(
        [str(stack.pg_bin / "initdb"), "-D", str(base / "data"), "-U", pg_env["POSTGRES_USER"],
         f"--pwfile={password_file}", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
         "--no-locale", "--no-sync"],
        env=env, cwd=base, user=uid, group=gid, extra_groups=[] if uid is not None else None,
        capture_output=True, text=True, timeout=120,
    )
    password_file.unlink()
    assert initdb.returncode == 0, initdb.stdout + initdb.stderr
    process = stack.spawn(
        "postgres",
        [str(stack.pg_bin / "postgres"), "-D", str(base / "data"), "-p", str(stack.ports["postgres"]), "-k", str(base),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
        env, base, user=uid, group=gid,
    )
    # Fast shutdown (SIGINT) of the postmaster, registered before anything that connects to it.
    stack.exits.callback(process.stop, signal.SIGINT, 30, False)
    wait_until(lambda: stack.healthcheck("postgres"), 60, "postgres's healthcheck", [process])

    mounts = volume_mounts(stack.services["postgres"])
    script = next((DOCKER / source).resolve() for target, source in mounts.items()
                  if target.startswith("/docker-entrypoint-initdb.d/"))
    init_env = {**stack.env("postgres"), "PGHOST": "127.0.0.1", "PGPORT": str(stack.ports["postgres"]),
                "PGPASSWORD": pg_env["POSTGRES_PASSWORD"]}
    for attempt in ("first run", "second run (idempotent)"):
        result = subprocess.run([str(script)], env=init_env, cwd=base, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{script.name}, {attempt}:\n{result.stdout}{result.stderr}"


def pg_connect(stack: NativeStack, app: str):
    import psycopg2

    pg_env = environment(stack.services["postgres"])
    return psycopg2.connect(host="127.0.0.1", port=stack.ports["postgres"], user=pg_env[f"{app}_DB_USER"],
                            password=pg_env[f"{app}_DB_PASSWORD"], dbname=pg_env[f"{app}_DB_NAME"], connect_timeout=10)


def pg_query(stack: NativeStack, app: str, sql: str, params: tuple = ()) -> list[tuple]:
    conn = pg_connect(stack, app)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stack(services: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeStack]:
    pg_bin = postgres_bin_dir()
    if pg_bin is None:
        pytest.skip("PostgreSQL server binaries (initdb, postgres, pg_isready, psql) are not installed: "
                    "apt-get install postgresql")
    workdir = tmp_path_factory.mktemp("docker-stack")
    with contextlib.ExitStack() as exits:
        native = NativeStack(services=services, workdir=workdir, exits=exits, pg_bin=pg_bin)
        native.internal = {
            "postgres": 5432,  # the postgres image's port
            "prefect-server": int(option(services["prefect-server"]["command"], "--port")),
            "mlflow": int(option(services["mlflow"]["command"], "--port")),
            "prefect-worker": int(environment(services["prefect-worker"])["PREFECT_WORKER_WEBSERVER_PORT"]),
        }
        native.ports = {name: free_port() for name in native.internal}
        for service in services.values():
            for target, source in volume_mounts(service).items():
                if not source.startswith((".", "/")):  # a named volume
                    native.paths[target] = workdir / "volumes" / source
                    native.paths[target].mkdir(parents=True, exist_ok=True)
        native.paths["/app"] = ROOT

        start_postgres(native)
        # Both servers start at once (each takes a while on two cores); each is stopped after whatever started
        # later, and before postgres.
        for name in ("prefect-server", "mlflow"):
            process = native.start_service(name)
            exits.callback(process.stop, signal.SIGTERM, 30)
        for name in ("prefect-server", "mlflow"):
            wait_until(lambda name=name: native.healthcheck(name), 240, f"{name}'s healthcheck", native.processes)
        yield native


@pytest.mark.slow
def test_postgres_databases_belong_to_their_roles(stack: NativeStack) -> None:
    import psycopg2

    pg_env = environment(stack.services["postgres"])
    for app in ("PREFECT", "MLFLOW"):
        rows = pg_query(stack, app, "SELECT current_user, current_database(), "
                                    "pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()")
        assert rows == [(pg_env[f"{app}_DB_USER"], pg_env[f"{app}_DB_NAME"], pg_env[f"{app}_DB_USER"])]
    assert pg_query(stack, "PREFECT", "SELECT extname FROM pg_extension WHERE extname = 'pg_trgm'") == [("pg_trgm",)]
    # Each database is closed to the other application's role.
    with pytest.raises(psycopg2.OperationalError, match="permission denied"):
        psycopg2.connect(host="127.0.0.1", port=stack.ports["postgres"], user=pg_env["MLFLOW_DB_USER"],
                         password=pg_env["MLFLOW_DB_PASSWORD"], dbname=pg_env["PREFECT_DB_NAME"], connect_timeout=10)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host="127.0.0.1", port=stack.ports["postgres"], user=pg_env["PREFECT_DB_USER"],
                         password="wrong", dbname=pg_env["PREFECT_DB_NAME"], connect_timeout=10)


@pytest.mark.slow
def test_prefect_server_stores_in_postgres(stack: NativeStack) -> None:
    api = stack.url("prefect-server", "/api")
    assert requests.get(f"{api}/health", timeout=10).json() is True
    assert requests.get(f"{api}/ready", timeout=10).status_code == 200
    assert pg_query(stack, "PREFECT", "SELECT count(*) FROM alembic_version")[0][0] == 1
    name = f"docker_stack_{secrets.token_hex(4)}"
    response = requests.post(f"{api}/variables/", json={"name": name, "value": "stored"}, timeout=10)
    assert response.status_code == 201, response.text
    assert pg_query(stack, "PREFECT", "SELECT value FROM variable WHERE name = %s", (name,)) == [("stored",)]


@pytest.mark.slow
def test_mlflow_keeps_runs_in_postgres_and_serves_artifacts(stack: NativeStack, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    base = stack.url("mlflow")
    assert requests.get(f"{base}/health", timeout=10).status_code == 200
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    port = stack.internal["mlflow"]
    # The Host header the app sends inside the stack is allowed; an unknown one is refused.
    assert requests.get(base + search, headers={"Host": f"mlflow:{port}"}, timeout=10).status_code == 200
    assert requests.get(base + search, headers={"Host": "attacker.example"}, timeout=10).status_code == 403

    client = MlflowClient(tracking_uri=base)
    experiment_id = client.create_experiment(f"docker-stack-{secrets.token_hex(4)}")
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts must go through the server"
    client.log_metric(run_id, "answer", 42.0)
    payload = f"artifact of {run_id}\n"
    local = tmp_path / "report.txt"
    local.write_text(payload)
    client.log_artifact(run_id, str(local), artifact_path="reports")
    client.set_terminated(run_id)

    artifacts = stack.paths[option(stack.services["mlflow"]["command"], "--artifacts-destination")]
    stored = [path for path in artifacts.rglob("report.txt") if run_id in path.parts]
    assert len(stored) == 1 and stored[0].read_text() == payload, sorted(map(str, artifacts.rglob("*")))
    downloaded = Path(client.download_artifacts(run_id, "reports/report.txt", str(tmp_path / "download")))
    assert downloaded.read_text() == payload

    assert pg_query(stack, "MLFLOW", "SELECT value FROM metrics WHERE run_uuid = %s AND key = 'answer'",
                    (run_id,)) == [(42.0,)]
    assert pg_query(stack, "MLFLOW", "SELECT status FROM runs WHERE run_uuid = %s", (run_id,)) == [("FINISHED",)]


PROBE_FLOW = '''
    """A flow the test deploys to the worker: it uses the settings the stack gives flows."""
    import json
    import os

    import mlflow
    from prefect import flow

    from flows.settings import Settings


    @flow(name="docker-stack-probe")
    def probe(token: str) -> str:
        settings = Settings(_env_file=None)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        (settings.data_dir / "probe.json").write_text(json.dumps({"token": token, "cwd": os.getcwd()}))
        mlflow.set_tracking_uri(settings.tracking_uri())
        mlflow.set_experiment("docker-stack-probe")
        with mlflow.start_run(run_name=token):
            mlflow.log_metric("probe", 1.0)
        return token
'''


@pytest.fixture
def worker(stack: NativeStack) -> Iterator[Process]:
    process = stack.start_service("prefect-worker")
    try:
        yield process
    finally:
        process.stop(signal.SIGTERM, 30)  # before the servers, which the module fixture stops later
        stack.processes.remove(process)


@pytest.mark.slow
def test_worker_joins_the_pool_and_runs_a_flow(stack: NativeStack, worker: Process, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    api = stack.url("prefect-server", "/api")
    watched = stack.processes  # the worker among them

    def workers() -> list[dict[str, Any]]:
        response = requests.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=10)
        return response.json() if response.status_code == 200 else []

    wait_until(lambda: len(workers()) >= 1, 120, f"a worker in the {POOL} pool", watched)
    wait_until(lambda: stack.healthcheck("prefect-worker"), 60, "the worker's healthcheck", watched)
    assert pg_query(stack, "PREFECT", "SELECT type FROM work_pool WHERE name = %s", (POOL,)) == [("process",)]
    assert pg_query(stack, "PREFECT", "SELECT count(*) FROM worker JOIN work_pool ON work_pool.id = "
                                      "worker.work_pool_id WHERE work_pool.name = %s", (POOL,))[0][0] >= 1

    # A deployment as deployments/prefect.yaml makes one: a pull step that sets the working directory to
    # {{ $YOTSUBA_APP_DIR }}, resolved by the flow run from the worker's environment. The flow's file stays out
    # of the app directory, so its entrypoint is absolute.
    source = tmp_path / "probe-source"
    source.mkdir()
    (source / "probe.py").write_text(textwrap.dedent(PROBE_FLOW))
    token = f"probe-{secrets.token_hex(4)}"
    flow_id = requests.post(f"{api}/flows/", json={"name": "docker-stack-probe"}, timeout=10).json()["id"]
    response = requests.post(f"{api}/deployments/", timeout=10, json={
        "name": "docker-stack-probe", "flow_id": flow_id, "work_pool_name": POOL,
        "entrypoint": f"{source / 'probe.py'}:probe",
        "pull_steps": [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $YOTSUBA_APP_DIR }}"}}],
        "parameter_openapi_schema": {"title": "Parameters", "type": "object",
                                     "properties": {"token": {"title": "token", "type": "string"}},
                                     "required": ["token"]},
    })
    assert response.status_code in (200, 201), response.text
    deployment_id = response.json()["id"]
    response = requests.post(f"{api}/deployments/{deployment_id}/create_flow_run", timeout=10,
                             json={"parameters": {"token": token}})
    assert response.status_code in (200, 201), response.text
    flow_run_id = response.json()["id"]

    def final_state() -> str | None:
        state = requests.get(f"{api}/flow_runs/{flow_run_id}", timeout=10).json()["state"]
        return state["type"] if state and state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

    wait_until(lambda: final_state() is not None, 240, "the probe flow run to finish", watched)
    assert final_state() == "COMPLETED", worker.tail(80)
    assert pg_query(stack, "PREFECT", "SELECT state_type FROM flow_run WHERE id = %s",
                    (flow_run_id,)) == [("COMPLETED",)]

    # The flow ran with the worker's environment: in the app directory, on the data volume, with the MLflow server.
    worker_env = environment(stack.services["prefect-worker"])
    data_dir = stack.paths[worker_env["YOTSUBA_DATA_DIR"]]
    report = json.loads((data_dir / "probe.json").read_text())
    assert report == {"token": token, "cwd": str(stack.paths[worker_env["YOTSUBA_APP_DIR"]])}
    runs = MlflowClient(tracking_uri=stack.url("mlflow")).search_runs(
        [MlflowClient(tracking_uri=stack.url("mlflow")).get_experiment_by_name("docker-stack-probe").experiment_id],
        filter_string=f"attributes.run_name = '{token}'",
    )
    assert len(runs) == 1 and runs[0].data.metrics == {"probe": 1.0}
    assert pg_query(stack, "MLFLOW", "SELECT count(*) FROM runs WHERE name = %s", (token,)) == [(1,)]

    # The worker stops by itself on SIGTERM (what `docker compose stop` sends), before the servers do.
    assert worker.stop(signal.SIGTERM, 30) is not None, worker.tail()


def test_cli_service_runs(services: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    """The one-off CLI service's command works on the app's install."""
    cli = services.get("yotsuba")
    if cli is None:
        pytest.skip("no CLI service")
    command = cli["command"]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("YOTSUBA_", "MLFLOW_"))}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run([shutil.which(command[0], path=env["PATH"]) or command[0], *command[1:]], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train" in result.stdout
