"""The compose file and the Procfile stay true without a Docker engine.

* ``compose.yaml`` against the Compose Specification's JSON schema (the copy check-jsonschema
  vendors and keeps current), then what a schema cannot say: every ``depends_on`` target
  exists, every Darkroom process is built from ``deploy/Dockerfile`` (rendering from the
  target with Chromium, the rest from the one without), every process's configuration loads
  from the environment compose gives it (so each required secret is set), services reach each
  other by service name, the gateway's published port, the queue workers scalable, Chromium's
  /dev/shm.
* ``deploy/Procfile``: every process in it is a compose service and a Deployment.

Each validator is also shown a deliberately broken copy, and must refuse it. The readers and
checks are in tests/deploy_support.py; the Kubernetes manifests are tested in
tests/test_deploy_k8s.py, the Dockerfile in tests/test_deploy_dockerfile.py.
"""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml

from shared.config import SERVICES
from tests.conftest import ROOT
from tests.deploy_support import (
    OVERLAY,
    PORTS,
    compose_problems,
    compose_schema_errors,
    of_kind,
    read_env_file,
    render,
)

# --- compose -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ROOT / ".env.example")


def test_compose_matches_the_compose_specification(compose):
    assert compose_schema_errors(compose) == []


def test_compose_services_depend_build_configure_and_publish_right(compose, env_example):
    assert compose_problems(compose, env_example) == []
    assert {"postgres", "rabbitmq", "minio", "minio-init", "migrate", "gateway"} <= set(
        compose["services"]
    )


def test_compose_one_shots_and_health_conditions(compose):
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3-management")
    assert "mc mb" in " ".join(services["minio-init"]["command"])
    assert services["migrate"]["command"] == ["darkroom", "migrate"]
    assert services["redis"]["image"].startswith("redis:7")
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["gateway"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["gateway"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    for name in (*SERVICES, "gateway"):
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
        assert needs["minio-init"] == {"condition": "service_completed_successfully"}, name
        assert needs["rabbitmq"] == {"condition": "service_healthy"}, name
        check = services[name]["healthcheck"]["test"]
        assert f"127.0.0.1:{PORTS[name]}/readyz" in check[-1], name
        compile(check[-1], f"{name} healthcheck", "exec")
    for name in SERVICES:
        assert services["gateway"]["depends_on"][name] == {"condition": "service_healthy"}, name
    assert set(compose["volumes"]) >= {"pgdata", "rabbitdata", "miniodata"}


def test_no_secret_value_is_baked_into_compose(compose, env_example):
    text = (ROOT / "compose.yaml").read_text()
    secrets = {k: v for k, v in env_example.items() if "PASS" in k or "KEY" in k}
    assert secrets and all(v.startswith("change-me") for v in secrets.values())
    for name in secrets:
        assert f"${{{name}:?" in text, f"{name} must be a required variable in compose.yaml"
    assert "change-me" not in text


@pytest.mark.parametrize(
    "breakage",
    [
        "unknown service key",
        "wrong type",
        "unknown top-level key",
    ],
)
def test_compose_schema_refuses_a_broken_copy(compose, breakage):
    broken = copy.deepcopy(compose)
    if breakage == "unknown service key":
        broken["services"]["auth"]["comand"] = ["python"]
    elif breakage == "wrong type":
        broken["services"]["gateway"]["ports"] = {"8080": 8080}
    else:
        broken["servises"] = {}
    assert compose_schema_errors(broken) != []


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("depends on a missing service", "which is not a service"),
        ("secret not provided", "DARKROOM_SECRETS_KEY is not provided"),
        ("built elsewhere", "not built from deploy/Dockerfile"),
        ("listens on loopback", "DARKROOM_HOST must be 0.0.0.0"),
        ("wrong service URL", "reaches ingest at"),
        ("gateway not published", "8080 is not published"),
        ("processing pinned", "processing: a container_name or published port prevents"),
        ("rendering pinned", "rendering: a container_name or published port prevents"),
        ("rendering without Chromium", "built from target 'runtime', needs 'renderer'"),
        ("Chromium for everyone", "built from target 'renderer', needs 'runtime'"),
        ("one image name, two targets", "is built from 2 targets"),
        ("default /dev/shm", "is under 256 MB"),
        ("rendering URL missing", "reaches rendering at"),
        ("variable missing from .env", "a required variable is missing"),
        ("gateway without Redis", "REDIS_URL '' names no compose service"),
        ("Redis not awaited", "does not wait for redis to be healthy"),
    ],
)
def test_compose_checks_refuse_a_broken_copy(compose, env_example, breakage, expected):
    broken, env = copy.deepcopy(compose), dict(env_example)
    services = broken["services"]
    if breakage == "depends on a missing service":
        services["gateway"]["depends_on"]["cache"] = {"condition": "service_healthy"}
    elif breakage == "secret not provided":
        del services["auth"]["environment"]["DARKROOM_SECRETS_KEY"]
    elif breakage == "built elsewhere":
        services["reports"]["build"] = {"context": ".", "dockerfile": "Dockerfile.dev"}
    elif breakage == "listens on loopback":
        services["ingest"]["environment"]["DARKROOM_HOST"] = "127.0.0.1"
    elif breakage == "wrong service URL":
        services["gateway"]["environment"]["DARKROOM_INGEST_URL"] = "http://localhost:8082"
    elif breakage == "gateway not published":
        services["gateway"]["ports"] = ["9090:9090"]
    elif breakage == "processing pinned":
        services["processing"]["container_name"] = "darkroom-processing"
    elif breakage == "rendering pinned":
        services["rendering"]["ports"] = ["8085:8085"]
    elif breakage == "rendering without Chromium":
        services["rendering"]["build"] = services["auth"]["build"]
    elif breakage == "Chromium for everyone":
        services["auth"]["build"]["target"] = "renderer"  # the anchor's: every service's
    elif breakage == "one image name, two targets":
        services["rendering"]["image"] = services["auth"]["image"]
    elif breakage == "default /dev/shm":
        del services["rendering"]["shm_size"]
    elif breakage == "rendering URL missing":
        del services["gateway"]["environment"]["DARKROOM_RENDERING_URL"]
    elif breakage == "gateway without Redis":
        del services["gateway"]["environment"]["REDIS_URL"]
    elif breakage == "Redis not awaited":
        del services["gateway"]["depends_on"]["redis"]
    else:
        del env["POSTGRES_PASSWORD"]
    assert compose_schema_errors(broken) == []
    problems = compose_problems(broken, env)
    assert any(expected in p for p in problems), problems


# --- Procfile ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(OVERLAY)


def test_every_procfile_process_is_a_compose_service_and_a_deployment(compose, rendered):
    """``make run``'s processes are the containers' processes, on the same ports."""
    assert set(PORTS) == {*SERVICES, "gateway"}, "PORTS keeps pace with shared.config.SERVICES"
    procfile = {}
    for line in (ROOT / "deploy/Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            words = shlex.split(command)
            procfile[name.strip()] = ["python" if w.endswith("/python") else w for w in words]
    assert set(procfile) == set(PORTS)
    built = {n for n, s in compose["services"].items() if "build" in s} - {"migrate"}
    assert built == set(procfile)
    deployments = of_kind(rendered, "Deployment")
    for name, command in procfile.items():
        assert compose["services"][name]["command"] == command, name
        (container,) = deployments[f"darkroom-{name}"]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == command, name
        assert [p["containerPort"] for p in container["ports"]] == [PORTS[name]], name
