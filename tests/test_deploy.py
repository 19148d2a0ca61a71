"""The deployment artefacts agree with each other and with the real config schema.

Dockerfile, docker-compose.yml, deploy/kubernetes, deploy/prometheus and deploy/grafana
repeat the same facts (the config path, the port, the probe routes, env names, image
names, mount paths). Each check below is a function that returns the problems it finds;
the tests assert there are none, and the `*_detects_*` tests feed the same checks
broken copies, to show that they fail when a fact goes out of step.

No Docker engine or cluster runs here: the files are parsed (PyYAML, a small Dockerfile
reader), config files are validated with `app.config.load_settings` and
`llmcache check-config`, env names are resolved against `app.config.Settings`, probe
paths are requested from a real llmcache, and promtool (Debian's prometheus package,
installed by tests/install_test_servers.sh) checks the Prometheus config and rules.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import shlex
import subprocess
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from pydantic import BaseModel

from app.config import ConfigError, Settings, load_settings
from tests.conftest import installed_tool, run_cli

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "llmcache.json"

ENV_PREFIX = "LLMCACHE_"
# What the app serves for probes and scrapes (checked against a running llmcache below).
LIVENESS_PATH = "/health"
READINESS_PATH = "/ready"
METRICS_PATH = "/metrics"
COMPOSE_SERVICES = {"llmcache", "redis", "prometheus", "grafana"}

Problems = list[str]


# ---------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@dataclass
class Instruction:
    keyword: str  # upper case
    args: str
    stage: int  # index of the FROM it belongs to (-1: before the first FROM)


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    stages: list[tuple[str, str | None]] = field(default_factory=list)  # (image, alias)

    def final(self, keyword: str) -> list[Instruction]:
        last = len(self.stages) - 1
        return [i for i in self.instructions if i.stage == last and i.keyword == keyword]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> Dockerfile:
    """Instructions with continuations joined, comments dropped, global ARGs substituted."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker drops comment lines, also inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending.strip():
        logical.append(pending.strip())

    instructions: list[Instruction] = []
    stages: list[tuple[str, str | None]] = []
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        if keyword == "FROM":
            expanded = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), args)
            words = [w for w in expanded.split() if not w.startswith("--")]
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append((words[0], alias))
        instructions.append(Instruction(keyword, args, len(stages) - 1))
    return Dockerfile(instructions, stages)


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT/HEALTHCHECK CMD arguments: the JSON (exec) form, else shell words."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return shlex.split(args)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"not an exec form: {args}")
    return value


def healthcheck_command(instr: Instruction) -> list[str]:
    """The command of `HEALTHCHECK [--option=value ...] CMD ...`."""
    match = re.match(r"(?:--\S+\s+)*CMD\s+(.*)$", instr.args, re.DOTALL | re.IGNORECASE)
    assert match, f"HEALTHCHECK without CMD: {instr.args}"
    return exec_form(match.group(1).strip())


def option_value(argv: list[str], option: str) -> str | None:
    """The value of `--option V` or `--option=V` in an argv list."""
    for index, word in enumerate(argv):
        if word == option and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return None


def urls_in(text: str) -> list[str]:
    return re.findall(r"https?://[^\s'\"]+", text)


# ---------------------------------------------------------------------------------------
# config schema: env names and ${VAR}
# ---------------------------------------------------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (also through Optional), None for a leaf."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        others = [a for a in typing.get_args(annotation) if a is not type(None) and a not in models]
        if len(models) == 1 and not others:
            return models[0]
    return None


def settings_path_of_env(name: str) -> tuple[str, ...]:
    """The settings field `LLMCACHE_<SECTION>__<KEY>[__<SUBKEY>...]` sets; ValueError if none.

    A field that is not a settings model (a list of tiers, a tuple of routes) can only be
    set whole, as JSON, so nothing may follow it.
    """
    if not name.startswith(ENV_PREFIX):
        raise ValueError(f"{name}: not an {ENV_PREFIX}* name")
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    model: type[BaseModel] = Settings
    path: list[str] = []
    for index, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(path) or "the top level"
            raise ValueError(f"{name}: {where} has no key {part!r} (keys: {', '.join(sorted(fields))})")
        path.append(part)
        if index == len(parts) - 1:
            return tuple(path)
        sub = _model_in(fields[part].annotation)
        if sub is None:
            raise ValueError(f"{name}: {'.'.join(path)} has no sub-keys; set it whole, as JSON")
        model = sub
    raise AssertionError("unreachable")


ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def env_refs(text: str) -> set[str]:
    """`${VAR}` references llmcache expands inside a config file."""
    return set(ENV_REF.findall(text))


@dataclass
class EnvVar:
    name: str
    value: str | None  # None: from a Secret / unknown at deploy time
    where: str


def check_env_names(variables: list[EnvVar]) -> Problems:
    problems = []
    for var in variables:
        if var.name.startswith(ENV_PREFIX):
            try:
                settings_path_of_env(var.name)
            except ValueError as exc:
                problems.append(f"{var.where}: {exc}")
    return problems


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else where_from(path)


def where_from(path: Path) -> str:
    return "the config" if path.name.startswith("llmcache-k8s-") else str(path)


def check_config(path: Path, env: dict[str, str], where: str) -> Problems:
    """The file validates with load_settings and `llmcache check-config` under `env`."""
    problems = []
    try:
        settings_under(path, env)
    except ConfigError as exc:
        problems.append(f"{where}: {_shown(path)} does not validate: {exc}")
    if not problems:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
        run = run_cli("check-config", str(path), env={**clean, **env})
        if run.returncode != 0:
            problems.append(f"{where}: llmcache check-config {_shown(path)} failed: {run.stderr.strip()}")
    return problems


def settings_under(path: Path, env: dict[str, str]) -> Settings:
    """load_settings(path) with exactly `env` as the LLMCACHE_* environment."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
            del os.environ[name]
        os.environ.update(env)
        return load_settings(path)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def check_env_takes_effect(config: Path, variables: list[EnvVar], base_env: dict[str, str]) -> Problems:
    """Each string-valued LLMCACHE_* variable really lands in its setting over the file."""
    problems = []
    for var in variables:
        if not var.name.startswith(ENV_PREFIX):
            continue
        try:
            path = settings_path_of_env(var.name)
        except ValueError:
            continue  # reported by check_env_names
        sentinel = f"sentinel-{var.name.lower()}"
        try:
            settings = settings_under(config, {**base_env, var.name: sentinel})
        except ConfigError as exc:
            problems.append(f"{var.where}: {var.name}={sentinel!r} breaks the config: {exc}")
            continue
        value: Any = settings
        for part in path:
            value = getattr(value, part)
        if isinstance(value, str) and value != sentinel:
            problems.append(f"{var.where}: {var.name} did not set {'.'.join(path)} (got {value!r})")
    return problems


# ---------------------------------------------------------------------------------------
# the artefacts, loaded once
# ---------------------------------------------------------------------------------------


@dataclass
class Artefacts:
    dockerfile: Dockerfile
    dockerignore: list[str]
    compose: dict[str, Any]
    k8s: dict[str, list[dict[str, Any]]]  # file name -> documents
    prometheus: dict[str, Any]
    datasources: dict[str, Any]
    dashboard_provider: dict[str, Any]
    dashboard: dict[str, Any]

    def k8s_objects(self, kind: str) -> list[dict[str, Any]]:
        return [d for docs in self.k8s.values() for d in docs if d.get("kind") == kind]

    def k8s_one(self, kind: str) -> dict[str, Any]:
        objects = self.k8s_objects(kind)
        assert len(objects) == 1, f"expected one {kind} in deploy/kubernetes, found {len(objects)}"
        return objects[0]


def load_artefacts() -> Artefacts:
    return Artefacts(
        dockerfile=parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8")),
        dockerignore=[
            line.strip()
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.strip().startswith("#")
        ],
        compose=load_yaml(COMPOSE),
        k8s={p.name: load_yaml_docs(p) for p in sorted(K8S.glob("*.y*ml"))},
        prometheus=load_yaml(PROMETHEUS / "prometheus.yml"),
        datasources=load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml"),
        dashboard_provider=load_yaml(GRAFANA / "provisioning" / "dashboards" / "llmcache.yml"),
        dashboard=json.loads(DASHBOARD.read_text(encoding="utf-8")),
    )


@pytest.fixture(scope="module")
def art() -> Artefacts:
    return load_artefacts()


@pytest.fixture
def broken(art: Artefacts) -> Artefacts:
    """A private deep copy that a test may damage."""
    return copy.deepcopy(art)


# ---------------------------------------------------------------------------------------
# facts derived from the artefacts
# ---------------------------------------------------------------------------------------


def image_cmd(a: Artefacts) -> list[str]:
    cmds = a.dockerfile.final("CMD")
    assert cmds, "the final stage has no CMD"
    entry = a.dockerfile.final("ENTRYPOINT")
    return (exec_form(entry[-1].args) if entry else []) + exec_form(cmds[-1].args)


def image_config_path(a: Artefacts) -> str | None:
    return option_value(image_cmd(a), "--config")


def image_user(a: Artefacts) -> str | None:
    users = a.dockerfile.final("USER")
    return users[-1].args.split(":")[0] if users else None


def image_uid(a: Artefacts) -> int | None:
    """The final USER as a uid: numeric, or the --uid of the useradd that made it."""
    user = image_user(a)
    if user is None:
        return None
    if user.isdigit():
        return int(user)
    for run in a.dockerfile.final("RUN"):
        match = re.search(rf"useradd\b[^&;]*--uid\s+(\d+)[^&;]*\s{re.escape(user)}\b", run.args)
        if match:
            return int(match.group(1))
    return None


def exposed_ports(a: Artefacts) -> set[int]:
    ports = set()
    for instr in a.dockerfile.final("EXPOSE"):
        for word in instr.args.split():
            ports.add(int(word.split("/")[0]))
    return ports


def compose_service(a: Artefacts, name: str) -> dict[str, Any]:
    return a.compose["services"][name]


@dataclass
class Mount:
    source: str
    target: str
    read_only: bool


def compose_mounts(service: dict[str, Any]) -> list[Mount]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            mounts.append(Mount(parts[0], parts[1], len(parts) > 2 and "ro" in parts[2].split(",")))
        else:
            mounts.append(Mount(volume.get("source", ""), volume["target"], bool(volume.get("read_only"))))
    return mounts


def bind_source(mount: Mount) -> Path | None:
    """The repo path of a bind mount; None for a named volume."""
    if not mount.source.startswith((".", "/")):
        return None
    return (ROOT / mount.source).resolve()


def mount_for(service: dict[str, Any], target: str) -> Path | None:
    """The host file or directory behind `target` in a service's bind mounts."""
    best: tuple[int, Path] | None = None
    for mount in compose_mounts(service):
        source = bind_source(mount)
        if source is None:
            continue
        mount_target = PurePosixPath(mount.target)
        wanted = PurePosixPath(target)
        if wanted == mount_target or mount_target in wanted.parents:
            relative = wanted.relative_to(mount_target)
            depth = len(mount_target.parts)
            if best is None or depth > best[0]:
                best = (depth, source / relative)
    return None if best is None else best[1]


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {}) or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


COMPOSE_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def compose_interpolate(value: str, host_env: dict[str, str]) -> str:
    """Docker compose's ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ (a literal $)."""

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in host_env and (host_env[name] or not (op or "").startswith(":")):
            return host_env[name]
        if op in (":-", "-"):
            return arg or ""
        return f"<{name}>"

    return COMPOSE_VAR.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def strings_in(tree: Any) -> Iterator[str]:
    """Every string (keys too) of a parsed YAML tree: what compose interpolates."""
    if isinstance(tree, str):
        yield tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from strings_in(key)
            yield from strings_in(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from strings_in(item)


def compose_container_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []) or []:
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split(":")[-1].split("/")[0]))
    return ports


def compose_config_path(a: Artefacts) -> Path | None:
    config_path = image_config_path(a)
    return None if config_path is None else mount_for(compose_service(a, "llmcache"), config_path)


def healthcheck_argv(service: dict[str, Any]) -> list[str]:
    test = service.get("healthcheck", {}).get("test")
    if isinstance(test, str):
        return ["CMD-SHELL", test]
    return list(test or [])


def deployment_container(a: Artefacts) -> dict[str, Any]:
    containers = a.k8s_one("Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "llmcache")


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    for declared in container.get("ports", []):
        if port == declared["containerPort"] or port == declared.get("name"):
            return int(declared["containerPort"])
    return None


def k8s_config(a: Artefacts) -> tuple[str, str, str] | None:
    """(ConfigMap name, data key, mounted file path) of the llmcache config, if mounted."""
    deployment = a.k8s_one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = deployment_container(a)
    config_path = image_config_path(a)
    for mount in container.get("volumeMounts", []):
        volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
        if volume is None or "configMap" not in volume:
            continue
        if mount.get("subPath"):
            mounted = mount["mountPath"]
            key = mount["subPath"]
        else:
            key = PurePosixPath(config_path or "config.yaml").name
            mounted = str(PurePosixPath(mount["mountPath"]) / key)
        if mounted == config_path:
            return volume["configMap"]["name"], key, mounted
    return None


def k8s_env(a: Artefacts) -> list[EnvVar]:
    return [
        EnvVar(e["name"], e.get("value"), f"deployment.yaml env {e['name']}")
        for e in deployment_container(a).get("env", [])
    ]


def k8s_config_text(a: Artefacts) -> str | None:
    found = k8s_config(a)
    if found is None:
        return None
    name, key, _ = found
    for config_map in a.k8s_objects("ConfigMap"):
        if config_map["metadata"]["name"] == name:
            return config_map.get("data", {}).get(key)
    return None


def selector_matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes `path` (last matching pattern wins, ! re-includes)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = PurePosixPath(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        bare = pattern.removeprefix("**/")
        hit = any(fnmatch.fnmatchcase(p, pattern) for p in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, bare) for part in parts)
        )
        if hit:
            excluded = not negate
    return excluded


# ---------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------


def check_dockerfile(a: Artefacts) -> Problems:
    problems = []
    df = a.dockerfile
    if len(df.stages) < 2:
        problems.append("Dockerfile: not multi-stage (a builder and a runtime stage expected)")
    final_image = df.stages[-1][0] if df.stages else None
    if final_image != "python:3.11-slim":
        problems.append(f"Dockerfile: the final stage is {final_image!r}, expected python:3.11-slim")
    if df.stages and df.stages[0][0] != final_image:
        problems.append("Dockerfile: the builder's Python differs from the runtime's (the copied venv would break)")
    aliases = {alias for _, alias in df.stages[:-1] if alias}
    copied = [i for i in df.final("COPY") if i.args.startswith("--from=")]
    if not any(i.args.split()[0].split("=", 1)[1] in aliases for i in copied):
        problems.append("Dockerfile: the final stage copies nothing from a builder stage")
    # No compilers or package-manager installs in the image that runs.
    for run in df.final("RUN"):
        for banned in ("apt-get install", "apk add", "build-essential", "gcc", "pip install"):
            if banned in run.args:
                problems.append(f"Dockerfile: the final stage runs {banned!r}: {run.args[:80]}")
    user = image_user(a)
    if user in (None, "root", "0"):
        problems.append(f"Dockerfile: the final stage runs as {user or 'root (no USER)'}")
    elif image_uid(a) is None:
        problems.append(f"Dockerfile: cannot tell the uid of USER {user}")
    cmd = image_cmd(a)
    if cmd[:2] != ["llmcache", "serve"]:
        problems.append(f"Dockerfile: CMD is {cmd}, expected `llmcache serve ...`")
    if image_config_path(a) != "/etc/llmcache/config.yaml":
        problems.append(f"Dockerfile: CMD reads config {image_config_path(a)!r}, expected /etc/llmcache/config.yaml")
    if option_value(cmd, "--host") != "0.0.0.0":
        problems.append("Dockerfile: CMD must listen on --host 0.0.0.0 inside a container")
    checks = df.final("HEALTHCHECK")
    if not checks:
        problems.append("Dockerfile: no HEALTHCHECK")
    else:
        argv = healthcheck_command(checks[-1])
        if argv[0] in ("curl", "wget"):
            problems.append(f"Dockerfile: HEALTHCHECK runs {argv[0]}, which python:3.11-slim lacks")
        # An f-string URL ('http://127.0.0.1:{port}/health') counts with its port left out.
        urls = [u for word in argv for u in urls_in(word)]
        paths = {urlsplit(u.replace("{port}", "0")).path for u in urls}
        if LIVENESS_PATH not in paths:
            problems.append(f"Dockerfile: HEALTHCHECK does not request {LIVENESS_PATH} (requests {sorted(paths)})")
        # The port: a literal in the URL, or the env default when it reads LLMCACHE_SERVER__PORT.
        text = " ".join(argv)
        literal = {int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", text)}
        defaults = {int(p) for p in re.findall(r"LLMCACHE_SERVER__PORT['\"]\s*,\s*['\"](\d+)", text)}
        ports = literal | defaults
        if ports != exposed_ports(a):
            problems.append(
                f"Dockerfile: HEALTHCHECK probes port(s) {sorted(ports)}, EXPOSE says {sorted(exposed_ports(a))}"
            )
    if exposed_ports(a) != {8080}:
        problems.append(f"Dockerfile: EXPOSE {sorted(exposed_ports(a))}, expected 8080")
    # Every COPY source exists and survives .dockerignore.
    for instr in df.all("COPY"):
        words = [w for w in instr.args.split() if not w.startswith("--")]
        if instr.args.startswith("--from="):
            continue
        for source in words[:-1]:
            if not (ROOT / source).exists():
                problems.append(f"Dockerfile: COPY {source}: no such file in the build context")
            elif dockerignored(source, a.dockerignore):
                problems.append(f"Dockerfile: COPY {source}: excluded by .dockerignore")
    return problems


def check_dockerignore(a: Artefacts) -> Problems:
    problems = []
    for path in (
        ".git/config",
        ".venv/bin/python",
        ".testservers/x",
        ".llmcache/cache.db",
        "app/__pycache__/x.pyc",
        "tests/test_x.py",
        ".env",
    ):
        if not dockerignored(path, a.dockerignore):
            problems.append(f".dockerignore: {path} would be sent to the build")
    for path in ("app/server.py", "pyproject.toml", "README.md", "deploy/docker/config.yaml"):
        if dockerignored(path, a.dockerignore):
            problems.append(f".dockerignore: {path} is excluded but the image needs it")
    return problems


def check_image_config(a: Artefacts) -> Problems:
    """The config baked into the image (COPY ... /etc/llmcache/config.yaml) validates."""
    config_path = image_config_path(a)
    for instr in a.dockerfile.final("COPY"):
        words = [w for w in instr.args.split() if not w.startswith("--")]
        if not instr.args.startswith("--from=") and words[-1] == config_path:
            source = ROOT / words[0]
            problems = check_config(source, {}, "Dockerfile default config")
            settings = settings_under(source, {})
            if settings.server.port not in exposed_ports(a):
                problems.append(f"{words[0]}: server.port {settings.server.port} is not EXPOSEd")
            return problems
    return [f"Dockerfile: nothing is copied to {config_path} (a default config for a bare `docker run`)"]


def check_compose(a: Artefacts) -> Problems:
    problems = []
    services = a.compose.get("services", {})
    missing = COMPOSE_SERVICES - set(services)
    if missing:
        return [f"docker-compose.yml: services {sorted(missing)} missing"]
    for name, service in services.items():
        if not service.get("healthcheck"):
            problems.append(f"docker-compose.yml: service {name} has no healthcheck")
        for mount in compose_mounts(service):
            source = bind_source(mount)
            if source is not None and not source.exists():
                problems.append(f"docker-compose.yml: {name} mounts {mount.source}, which does not exist")
            if source is None and mount.source not in (a.compose.get("volumes") or {}):
                problems.append(f"docker-compose.yml: {name} uses volume {mount.source!r}, not declared")
        for dependency, spec in (service.get("depends_on") or {}).items():
            if dependency not in services:
                problems.append(f"docker-compose.yml: {name} depends on unknown service {dependency}")
            elif (
                isinstance(spec, dict)
                and spec.get("condition") == "service_healthy"
                and not services[dependency].get("healthcheck")
            ):
                problems.append(
                    f"docker-compose.yml: {name} waits for {dependency} to be healthy; it has no healthcheck"
                )
    expected_waits = {("llmcache", "redis"): "service_healthy", ("grafana", "prometheus"): "service_healthy"}
    for (name, dependency), condition in expected_waits.items():
        spec = (services[name].get("depends_on") or {}).get(dependency)
        if not isinstance(spec, dict) or spec.get("condition") != condition:
            problems.append(f"docker-compose.yml: {name} should depend on {dependency} with condition {condition}")

    llmcache = services["llmcache"]
    build = llmcache.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    dockerfile = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
    if context is None or (ROOT / context / dockerfile).resolve() != DOCKERFILE:
        problems.append("docker-compose.yml: llmcache is not built from ./Dockerfile")
    # Compose interpolates ${VAR} in its own file: only deliberate host variables, each
    # with a default or an error message, so `docker compose config` never blanks one silently.
    values = "\n".join(strings_in(a.compose)).replace("$$", "")
    for match in COMPOSE_VAR.finditer(values):
        if match.group(2) is None:
            problems.append(f"docker-compose.yml: ${{{match.group(1)}}} has no default (:-) or error (:?)")
    bare = re.findall(r"\$(?!\{)\w+", values)
    if bare:
        problems.append(f"docker-compose.yml: bare $VAR references {bare} (write ${{VAR:-...}} or $$)")

    config_path = image_config_path(a)
    config = compose_config_path(a)
    if config is None:
        problems.append(f"docker-compose.yml: llmcache mounts nothing at the image's config path {config_path}")
        return problems
    if not any(m.target == config_path and m.read_only for m in compose_mounts(llmcache)):
        problems.append(f"docker-compose.yml: the config at {config_path} should be mounted read-only")
    variables = [EnvVar(k, v, f"docker-compose.yml llmcache env {k}") for k, v in compose_env(llmcache).items()]
    problems += check_env_names(variables)
    if problems:
        return problems
    env = {v.name: compose_interpolate(v.value or "", {}) for v in variables}
    env.update({ref: f"value-of-{ref}" for ref in env_refs(config.read_text()) if ref not in env})
    problems += check_config(config, env, "docker-compose.yml llmcache")
    if problems:
        return problems
    problems += check_env_takes_effect(config, variables, env)
    settings = settings_under(config, env)

    # Ports: config, EXPOSE, the published container port, the healthcheck.
    port = settings.server.port
    if port not in exposed_ports(a):
        problems.append(f"compose config: server.port {port} is not EXPOSEd by the Dockerfile")
    if port not in compose_container_ports(llmcache):
        problems.append(
            f"docker-compose.yml: llmcache publishes {sorted(compose_container_ports(llmcache))}, "
            f"the app listens on {port}"
        )
    probe = " ".join(healthcheck_argv(llmcache))
    probe_urls = [urlsplit(u) for u in urls_in(probe)]
    if not any(u.path == LIVENESS_PATH and u.port == port for u in probe_urls):
        problems.append(f"docker-compose.yml: llmcache healthcheck does not request :{port}{LIVENESS_PATH}")

    # The shared tier is the redis service.
    redis_tiers = [t for t in settings.cache.tiers if t.type == "redis"]
    if not redis_tiers:
        problems.append("compose config: no redis tier")
    for tier in redis_tiers:
        host = urlsplit(tier.url).hostname if tier.url else tier.host  # type: ignore[union-attr]
        if host not in services:
            problems.append(f"compose config: redis tier points at {host!r}, not a compose service")
    if settings.cache.tiers and settings.cache.tiers[0].type != "local":
        problems.append("compose config: the first tier should be the in-process local tier")
    if (settings.server.host != "0.0.0.0") and option_value(image_cmd(a), "--host") != "0.0.0.0":
        problems.append("compose config: the server does not listen on 0.0.0.0")
    return problems


def check_prometheus_wiring(a: Artefacts) -> Problems:
    """prometheus.yml scrapes llmcache where compose runs it; rule files are mounted."""
    problems = []
    service = compose_service(a, "prometheus")
    command = service.get("command") or []
    command = shlex.split(command) if isinstance(command, str) else command
    config_target = option_value(command, "--config.file") or "/etc/prometheus/prometheus.yml"
    source = mount_for(service, config_target)
    if source != (PROMETHEUS / "prometheus.yml").resolve():
        problems.append(
            f"docker-compose.yml: prometheus reads {config_target}, which is not deploy/prometheus/prometheus.yml"
        )
    for rule_file in a.prometheus.get("rule_files", []):
        target = PurePosixPath(config_target).parent / rule_file
        mounted = mount_for(service, str(target))
        expected = (PROMETHEUS / rule_file).resolve()
        if mounted != expected or not expected.exists():
            problems.append(
                f"prometheus.yml: rule file {rule_file} resolves to {target} in the container, "
                f"which is not a mount of {expected.relative_to(ROOT)}"
            )
    jobs = {job["job_name"]: job for job in a.prometheus.get("scrape_configs", [])}
    job = jobs.get("llmcache")
    if job is None:
        return problems + ['prometheus.yml: no scrape job named llmcache (the alert rules use job="llmcache")']
    if job.get("metrics_path", "/metrics") != METRICS_PATH:
        problems.append(f"prometheus.yml: llmcache is scraped at {job.get('metrics_path')}, it serves {METRICS_PATH}")
    config = compose_config_path(a)
    port = settings_under(config, {}).server.port if config else None
    targets = [t for sc in job.get("static_configs", []) for t in sc.get("targets", [])]
    if f"llmcache:{port}" not in targets:
        problems.append(f"prometheus.yml: llmcache targets {targets}, expected llmcache:{port} (service:server.port)")
    return problems


def check_grafana_wiring(a: Artefacts) -> Problems:
    problems = []
    service = compose_service(a, "grafana")
    for sub, name in (("datasources", "prometheus.yml"), ("dashboards", "llmcache.yml")):
        target = f"/etc/grafana/provisioning/{sub}/{name}"
        expected = (GRAFANA / "provisioning" / sub / name).resolve()
        if mount_for(service, target) != expected:
            problems.append(f"docker-compose.yml: grafana does not see {expected.relative_to(ROOT)} at {target}")
    for provider in a.dashboard_provider.get("providers", []):
        path = provider.get("options", {}).get("path")
        host = mount_for(service, path) if path else None
        if host is None or (host / DASHBOARD.name).resolve() != DASHBOARD.resolve():
            problems.append(
                f"grafana provider {provider.get('name')}: path {path} is not a mount of "
                f"{DASHBOARD.parent.relative_to(ROOT)}"
            )
    home = compose_env(service).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home and mount_for(service, home) != DASHBOARD.resolve():
        problems.append(f"docker-compose.yml: grafana home dashboard {home} is not {DASHBOARD.relative_to(ROOT)}")

    datasources = a.datasources.get("datasources", [])
    uids = {d.get("uid") for d in datasources if d.get("type") == "prometheus"}
    prometheus_ports = compose_container_ports(compose_service(a, "prometheus")) or {9090}
    for source in datasources:
        url = urlsplit(source.get("url", ""))
        if url.hostname not in a.compose["services"] or url.port not in prometheus_ports:
            problems.append(
                f"grafana datasource {source.get('name')}: {source.get('url')} is not the prometheus service"
            )
    for panel in iter_panels(a.dashboard):
        for ref in [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]:
            if isinstance(ref, dict) and ref.get("uid") not in uids:
                problems.append(
                    f"dashboard panel {panel.get('title')!r}: datasource uid {ref.get('uid')!r} "
                    f"is not provisioned ({sorted(u for u in uids if u)})"
                )
    return problems


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def check_kubernetes(a: Artefacts) -> Problems:
    problems = []
    deployment = a.k8s_one("Deployment")
    template = deployment["spec"]["template"]
    pod = template["spec"]
    container = deployment_container(a)
    labels = template["metadata"].get("labels", {})
    if not selector_matches(deployment["spec"]["selector"]["matchLabels"], labels):
        problems.append("deployment.yaml: selector does not match the pod template's labels")

    # The command: the image's, pointing at the mounted config.
    argv = (container.get("command") or []) + (container.get("args") or [])
    config_path = image_config_path(a)
    if argv and option_value(argv, "--config") != config_path:
        problems.append(f"deployment.yaml: runs {argv}, not with --config {config_path}")
    found = k8s_config(a)
    if found is None:
        problems.append(f"deployment.yaml: no ConfigMap is mounted at the image's config path {config_path}")
        return problems
    config_map_name, key, _ = found
    text = k8s_config_text(a)
    if text is None:
        problems.append(f"deployment.yaml: ConfigMap {config_map_name} has no key {key}")
        return problems

    # Env: real settings; ${VAR} in the config provided by the pod; the config validates.
    variables = k8s_env(a)
    problems += check_env_names(variables)
    provided = {v.name for v in variables}
    for ref in sorted(env_refs(text)):
        if ref not in provided:
            problems.append(f"configmap.yaml: the config references ${{{ref}}}, the pod sets no such env")
    if problems:
        return problems
    config_file = _write_temp_config(text)
    try:
        env = {v.name: v.value if v.value is not None else f"secret-{v.name.lower()}" for v in variables}
        problems += check_config(config_file, env, "configmap.yaml")
        if problems:
            return problems
        problems += check_env_takes_effect(config_file, variables, env)
        settings = settings_under(config_file, env)
    finally:
        config_file.unlink()
    kinds = [t.type for t in settings.cache.tiers]
    if kinds[:1] != ["local"]:
        problems.append(f"configmap.yaml: tiers {kinds}: the first should be local")
    cluster = [t for t in settings.cache.tiers if t.type == "redis" and t.startup_nodes]  # type: ignore[union-attr]
    if not cluster:
        problems.append("configmap.yaml: no redis tier with startup_nodes (a Redis Cluster shared by the replicas)")
    if any(t.type == "disk" for t in settings.cache.tiers):
        problems.append("configmap.yaml: a disk tier makes replicas stateful (and needs a writable volume)")

    # Ports and probes.
    port = settings.server.port
    if container_port(container, port) != port:
        problems.append(f"deployment.yaml: no containerPort {port} (server.port)")
    if port not in exposed_ports(a):
        problems.append(f"configmap.yaml: server.port {port} is not EXPOSEd by the image")
    expected_probes = {"livenessProbe": LIVENESS_PATH, "readinessProbe": READINESS_PATH}
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name)
        if probe is None:
            if probe_name in expected_probes:
                problems.append(f"deployment.yaml: no {probe_name}")
            continue
        http = probe.get("httpGet", {})
        if container_port(container, http.get("port")) != port:
            problems.append(
                f"deployment.yaml: {probe_name} probes port {http.get('port')!r}, the app listens on {port}"
            )
        want = expected_probes.get(probe_name, LIVENESS_PATH)
        if http.get("path") != want:
            problems.append(f"deployment.yaml: {probe_name} requests {http.get('path')!r}, expected {want}")
    annotations = template["metadata"].get("annotations", {})
    if annotations.get("prometheus.io/scrape") == "true":
        if int(annotations.get("prometheus.io/port", -1)) != port:
            problems.append(f"deployment.yaml: prometheus.io/port {annotations.get('prometheus.io/port')} != {port}")
        if annotations.get("prometheus.io/path", METRICS_PATH) != METRICS_PATH:
            problems.append(f"deployment.yaml: prometheus.io/path is not {METRICS_PATH}")

    # Security: non-root (the image's uid), read-only root fs with a writable /tmp.
    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    run_as = security.get("runAsUser", pod_security.get("runAsUser"))
    if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
        problems.append("deployment.yaml: runAsNonRoot is not set")
    if run_as is not None and run_as != image_uid(a):
        problems.append(f"deployment.yaml: runAsUser {run_as} is not the image's uid {image_uid(a)}")
    if not security.get("readOnlyRootFilesystem"):
        problems.append("deployment.yaml: the root filesystem is not read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append("deployment.yaml: allowPrivilegeEscalation is not false")
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    tmp_mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
    if not any(m["name"] in empty_dirs for m in tmp_mounts):
        problems.append("deployment.yaml: /tmp is not a writable emptyDir (multi-worker metrics live there)")
    resources = container.get("resources", {})
    if not resources.get("requests", {}).get("cpu") or not resources.get("limits", {}).get("memory"):
        problems.append("deployment.yaml: resources need a cpu request (for the HPA) and a memory limit")

    # Secrets: every secretKeyRef names a key the example Secret documents.
    secrets = {s["metadata"]["name"]: s for s in a.k8s_objects("Secret")}
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            continue
        secret = secrets.get(ref["name"])
        keys = set((secret or {}).get("stringData", {})) | set((secret or {}).get("data", {}))
        if ref["key"] not in keys:
            problems.append(
                f"deployment.yaml: env {env['name']} reads secret {ref['name']}/{ref['key']}, "
                "which secret.example.yaml does not document"
            )
    if not any(
        e.get("name") == "LLMCACHE_UPSTREAM__API_KEY" and "secretKeyRef" in e.get("valueFrom", {})
        for e in container.get("env", [])
    ):
        problems.append("deployment.yaml: the upstream key does not come from a Secret (LLMCACHE_UPSTREAM__API_KEY)")

    # Service, HPA, PDB select these pods / this Deployment.
    service = a.k8s_one("Service")
    if not selector_matches(service["spec"].get("selector", {}), labels):
        problems.append("service.yaml: selector does not match the pods")
    for service_port in service["spec"].get("ports", []):
        if container_port(container, service_port.get("targetPort", service_port["port"])) != port:
            problems.append(f"service.yaml: targetPort {service_port.get('targetPort')!r} is not the app's port {port}")
    hpa = a.k8s_one("HorizontalPodAutoscaler")
    if hpa.get("apiVersion") != "autoscaling/v2":
        problems.append(f"hpa.yaml: apiVersion {hpa.get('apiVersion')}, expected autoscaling/v2")
    target = hpa["spec"]["scaleTargetRef"]
    if (target.get("kind"), target.get("name"), target.get("apiVersion")) != (
        "Deployment",
        deployment["metadata"]["name"],
        deployment["apiVersion"],
    ):
        problems.append(f"hpa.yaml: scales {target}, not the llmcache Deployment")
    if hpa["spec"].get("minReplicas", 1) < 2:
        problems.append("hpa.yaml: minReplicas < 2 leaves a single point of failure")
    if "replicas" in deployment["spec"]:
        problems.append("deployment.yaml: sets replicas, which every apply would reset under the HPA")
    pdb = a.k8s_one("PodDisruptionBudget")
    if not selector_matches(pdb["spec"]["selector"].get("matchLabels", {}), labels):
        problems.append("pdb.yaml: selector does not match the pods")
    return problems


def _write_temp_config(text: str) -> Path:
    import tempfile

    handle, name = tempfile.mkstemp(suffix=".yaml", prefix="llmcache-k8s-")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(name)


def check_images_and_kustomization(a: Artefacts) -> Problems:
    problems = []
    compose_image = compose_service(a, "llmcache").get("image")
    k8s_image = deployment_container(a).get("image")
    if compose_image != k8s_image:
        problems.append(
            f"images differ: docker-compose.yml builds {compose_image!r}, deployment.yaml runs {k8s_image!r}"
        )
    kustomizations = a.k8s_objects("Kustomization")
    if len(kustomizations) != 1:
        return problems + ["deploy/kubernetes: expected one kustomization.yaml"]
    kustomization = kustomizations[0]
    listed = set(kustomization.get("resources", []))
    present = {
        name for name, docs in a.k8s.items() if not any(d.get("kind") in ("Kustomization", "Secret") for d in docs)
    }
    if listed != present:
        problems.append(f"kustomization.yaml: resources {sorted(listed)} != manifests {sorted(present)}")
    name, _, tag = (k8s_image or "").partition(":")
    for image in kustomization.get("images", []):
        if image.get("name") != name:
            problems.append(f"kustomization.yaml: images[].name {image.get('name')!r} is not {name!r}")
        if image.get("newTag") not in (None, tag):
            problems.append(f"kustomization.yaml: newTag {image.get('newTag')!r} is not {tag!r}")
    return problems


# ---------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------


def test_dockerfile(art: Artefacts) -> None:
    assert check_dockerfile(art) == []


def test_dockerignore(art: Artefacts) -> None:
    assert check_dockerignore(art) == []


@pytest.mark.subprocess  # llmcache check-config
def test_image_default_config_validates(art: Artefacts) -> None:
    assert check_image_config(art) == []


@pytest.mark.subprocess  # llmcache check-config
def test_compose(art: Artefacts) -> None:
    assert check_compose(art) == []


def test_prometheus_wiring(art: Artefacts) -> None:
    assert check_prometheus_wiring(art) == []


def test_grafana_wiring(art: Artefacts) -> None:
    assert check_grafana_wiring(art) == []


@pytest.mark.subprocess  # llmcache check-config
def test_kubernetes(art: Artefacts) -> None:
    assert check_kubernetes(art) == []


def test_images_and_kustomization(art: Artefacts) -> None:
    assert check_images_and_kustomization(art) == []


def test_every_manifest_parses(art: Artefacts) -> None:
    kinds = sorted(d["kind"] for docs in art.k8s.values() for d in docs)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Kustomization",
            "PodDisruptionBudget",
            "Secret",
            "Service",
        ]
    )
    for docs in art.k8s.values():
        for doc in docs:
            assert doc.get("apiVersion"), doc
            if doc["kind"] != "Kustomization":
                assert doc.get("metadata", {}).get("name"), doc


def test_probe_and_scrape_paths_are_served(serve: Callable[..., Any], art: Artefacts) -> None:
    """The paths the probes, the HEALTHCHECK and Prometheus use answer 200 on a real llmcache."""
    paths = {LIVENESS_PATH, READINESS_PATH, METRICS_PATH}
    container = deployment_container(art)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in container:
            paths.add(container[probe]["httpGet"]["path"])
    job = next(j for j in art.prometheus["scrape_configs"] if j["job_name"] == "llmcache")
    paths.add(job.get("metrics_path", "/metrics"))
    proxy = serve()
    with httpx.Client(base_url=proxy.root, timeout=10) as client:
        for path in sorted(paths):
            assert client.get(path).status_code == 200, path


# --- the checks can fail ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "LLMCACHE_UPSTREAM__API_KEY",
        "LLMCACHE_ADMIN__TOKEN",
        "LLMCACHE_SERVER__PORT",
        "LLMCACHE_CACHE__SEMANTIC__SIMILARITY_THRESHOLD",
        "LLMCACHE_CACHE__SEMANTIC__QDRANT__URL",
        "LLMCACHE_CACHE__TIERS",
        "LLMCACHE_METRICS__ENABLED",
        "LLMCACHE_UPSTREAM",
    ],
)
def test_env_names_that_exist(name: str) -> None:
    assert settings_path_of_env(name)


@pytest.mark.parametrize(
    "name",
    [
        "LLMCACHE_UPSTREAM__APIKEY",  # misspelt key
        "LLMCACHE_UPSTREAM_API_KEY",  # single underscore between section and key
        "LLMCACHE_UPSTRAEM__API_KEY",  # misspelt section
        "LLMCACHE_CACHE__TIERS__0__URL",  # a list: only settable whole, as JSON
        "LLMCACHE_SERVER__PORT__X",  # a leaf has no sub-keys
        "OPENAI_API_KEY",  # not ours at all
    ],
)
def test_env_names_that_do_not_exist(name: str) -> None:
    with pytest.raises(ValueError):
        settings_path_of_env(name)


def test_detects_a_wrong_env_name_in_kubernetes(broken: Artefacts) -> None:
    deployment_container(broken)["env"][0]["name"] = "LLMCACHE_UPSTREAM__APIKEY"
    assert any("APIKEY" in p for p in check_kubernetes(broken))


def test_detects_a_wrong_env_name_in_compose(broken: Artefacts) -> None:
    env = compose_service(broken, "llmcache")["environment"]
    env["LLMCACHE_UPSTREAM_API_KEY"] = env.pop("LLMCACHE_UPSTREAM__API_KEY")
    assert any("UPSTREAM_API_KEY" in p for p in check_compose(broken))


@pytest.mark.subprocess  # llmcache check-config
def test_detects_a_wrong_port(broken: Artefacts) -> None:
    container = deployment_container(broken)
    container["ports"][0]["containerPort"] = 9000
    assert check_kubernetes(broken)
    broken2 = load_artefacts()
    compose_service(broken2, "llmcache")["ports"] = ["8080:9000"]
    assert check_compose(broken2)


@pytest.mark.subprocess  # llmcache check-config
def test_detects_a_wrong_probe_path(broken: Artefacts) -> None:
    deployment_container(broken)["readinessProbe"]["httpGet"]["path"] = "/healthz"
    assert any("readinessProbe" in p for p in check_kubernetes(broken))


def test_detects_a_config_mounted_elsewhere(broken: Artefacts) -> None:
    for mount in deployment_container(broken)["volumeMounts"]:
        if mount.get("subPath") == "config.yaml":
            mount["mountPath"] = "/etc/llmcache/llmcache.yaml"
    assert any("config path" in p for p in check_kubernetes(broken))
    broken2 = load_artefacts()
    service = compose_service(broken2, "llmcache")
    service["volumes"] = [v.replace("/etc/llmcache/config.yaml", "/config.yaml") for v in service["volumes"]]
    assert any("config path" in p for p in check_compose(broken2))


def test_detects_an_invalid_config(broken: Artefacts) -> None:
    for config_map in broken.k8s_objects("ConfigMap"):
        config_map["data"]["config.yaml"] = config_map["data"]["config.yaml"].replace("startup_nodes", "startup_node")
    assert any("does not validate" in p and "startup_node" in p for p in check_kubernetes(broken))


def test_detects_an_unprovided_config_variable(broken: Artefacts) -> None:
    container = deployment_container(broken)
    container["env"] = [e for e in container["env"] if e["name"] != "REDIS_PASSWORD"]
    assert any("REDIS_PASSWORD" in p for p in check_kubernetes(broken))


def test_detects_grafana_paths_out_of_step(broken: Artefacts) -> None:
    broken.dashboard_provider["providers"][0]["options"]["path"] = "/var/lib/grafana/dashboards"
    assert check_grafana_wiring(broken)
    broken2 = load_artefacts()
    next(iter_panels(broken2.dashboard))["datasource"] = {"type": "prometheus", "uid": "nope"}
    assert any("nope" in p for p in check_grafana_wiring(broken2))


def test_detects_a_wrong_scrape_target(broken: Artefacts) -> None:
    job = next(j for j in broken.prometheus["scrape_configs"] if j["job_name"] == "llmcache")
    job["static_configs"] = [{"targets": ["llmcache:9090"]}]
    assert check_prometheus_wiring(broken)


def test_detects_inconsistent_images(broken: Artefacts) -> None:
    compose_service(broken, "llmcache")["image"] = "llmcache:9.9.9"
    assert any("images differ" in p for p in check_images_and_kustomization(broken))


def test_detects_a_root_image_and_wrong_healthcheck() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    art = load_artefacts()
    art.dockerfile = parse_dockerfile(text.replace("USER 10001:10001", "USER root"))
    assert any("runs as root" in p for p in check_dockerfile(art))
    art.dockerfile = parse_dockerfile(text.replace("/health", "/healthz"))
    assert any("HEALTHCHECK" in p for p in check_dockerfile(art))
    wrong_config = text.replace('"--config", "/etc/llmcache/config.yaml"', '"--config", "/cfg.yaml"')
    assert wrong_config != text
    art.dockerfile = parse_dockerfile(wrong_config)
    assert any("CMD reads config" in p for p in check_dockerfile(art))


def test_dockerignore_matching() -> None:
    patterns = [".venv", "**/__pycache__", "tests", "deploy/kubernetes", "!tests/keep.py"]
    assert dockerignored(".venv/bin/python", patterns)
    assert dockerignored("app/x/__pycache__/m.pyc", patterns)
    assert dockerignored("deploy/kubernetes/a.yaml", patterns)
    assert not dockerignored("deploy/docker/config.yaml", patterns)
    assert not dockerignored("tests/keep.py", patterns)


# --- promtool ---------------------------------------------------------------------------


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [installed_tool("promtool"), *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.prometheus
def test_promtool_check_config() -> None:
    run = _promtool("check", "config", "deploy/prometheus/prometheus.yml")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    run = _promtool("check", "rules", "deploy/prometheus/alerts.yml")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.prometheus
def test_promtool_rule_unit_tests() -> None:
    """deploy/prometheus/alerts_test.yml: each alert fires (and stays quiet) on synthetic series."""
    run = _promtool("test", "rules", "deploy/prometheus/alerts_test.yml")
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.prometheus
def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    rules = load_yaml(PROMETHEUS / "alerts.yml")
    rules["groups"][-1]["rules"][0]["expr"] = "sum by (tier) (rate(llmcache_tier_operations_total[5m])"
    bad = tmp_path / "alerts.yml"
    bad.write_text(yaml.safe_dump(rules))
    run = subprocess.run(
        [installed_tool("promtool"), "check", "rules", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode != 0
