"""The deployment files stay true without a Docker engine or a cluster.

* ``compose.yaml`` against the Compose Specification's JSON schema (the copy check-jsonschema
  vendors and keeps current), then what a schema cannot say: every ``depends_on`` target
  exists, every Darkroom process is built from ``deploy/Dockerfile``, every process's
  configuration loads from the environment compose gives it (so each required secret is set),
  services reach each other by service name, the gateway's published port.
* ``deploy/k8s``: the example overlay rendered (kustomize's merge, done here for the features
  the layout uses; compared with ``kubectl kustomize`` where kubectl is installed), every
  resource validated against the Kubernetes schemas of a pinned version (kubernetes-validate,
  strict: unknown fields fail), then probes, resources, the HPA's target, Service selectors,
  the Ingress and the service URLs.
* ``deploy/Dockerfile``: multi-stage, no compilers in the final stage, a non-root user, a
  HEALTHCHECK.

Each validator is also shown a deliberately broken copy, and must refuse it.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.config import GatewayConfig
from services.auth.config import AuthConfig
from services.ingest.config import IngestConfig
from services.processing.config import ProcessingConfig
from services.reports.config import ReportsConfig
from shared.config import ServersConfig, describe, load
from tests.conftest import ROOT

K8S_VERSION = "1.32.0"
DOCKERFILE = "deploy/Dockerfile"
OVERLAY = ROOT / "deploy/k8s/overlays/example"
PORTS = {"gateway": 8080, "auth": 8081, "ingest": 8082, "processing": 8083, "reports": 8084}
#: The command of each Darkroom process → the configuration class it loads.
PROCESSES: dict[tuple[str, ...], type] = {
    ("python", "-m", "gateway"): GatewayConfig,
    ("python", "-m", "services.auth"): AuthConfig,
    ("python", "-m", "services.ingest"): IngestConfig,
    ("python", "-m", "services.processing"): ProcessingConfig,
    ("python", "-m", "services.reports"): ReportsConfig,
    ("darkroom", "migrate"): ServersConfig,
}
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|build-essential|make|cmake|rustc|cargo)\b")
HEALTH_PATH = re.compile(r"/(healthz|readyz)\b")


# --- compose -------------------------------------------------------------------------------


def compose_schema() -> dict:
    vendored = importlib.resources.files("check_jsonschema") / "builtin_schemas/vendor"
    return json.loads((vendored / "compose-spec.json").read_text())


def compose_schema_errors(doc: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(compose_schema())
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def read_env_file(path: Path) -> dict[str, str]:
    """A dotenv file as compose reads it: ``NAME=value`` lines, ``#`` comments."""
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation (``${A}``, ``${A:-default}``, ``${A:?error}``, ``$$``)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg, current = match.group("op"), match.group("arg"), env.get(name)
        unset = current is None or (current == "" and op and op.startswith(":"))
        if op and op.endswith("?") and unset:
            raise KeyError(f"{name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return current or ""

    return _VARIABLE.sub(substitute, value)


def process_config(command: Any) -> type | None:
    return PROCESSES.get(tuple(command)) if isinstance(command, list) else None


def compose_problems(doc: dict, env: dict[str, str]) -> list[str]:
    """What the compose schema cannot check; [] when the file is right."""
    problems = []
    services = doc.get("services", {})
    for name, service in services.items():
        needs = service.get("depends_on", {})
        for target in needs if isinstance(needs, list) else needs.keys():
            if target not in services:
                problems.append(f"{name}: depends_on {target!r}, which is not a service")
        cls = process_config(service.get("command"))
        if cls is None:
            continue
        build = service.get("build") or {}
        if not isinstance(build, dict) or build.get("dockerfile") != DOCKERFILE:
            problems.append(f"{name}: not built from {DOCKERFILE}")
        try:
            environment = interpolate(service.get("environment", {}), env)
        except KeyError as exc:
            problems.append(f"{name}: a required variable is missing: {exc}")
            continue
        if not isinstance(environment, dict):
            problems.append(f"{name}: environment must be a mapping")
            continue
        required = [var for var, default, _ in describe(cls) if default == "(secret, required)"]
        for var in required:
            if not environment.get(var):
                problems.append(f"{name}: the secret {var} is not provided")
        if cls is ServersConfig:
            continue
        if environment.get("DARKROOM_HOST") != "0.0.0.0":
            problems.append(f"{name}: DARKROOM_HOST must be 0.0.0.0 (reachable by service name)")
        try:
            config = load(cls, {**environment, "DARKROOM_SECRETS_DIR": "/nonexistent"})
        except Exception as exc:
            problems.append(f"{name}: its configuration does not load: {exc}")
            continue
        for other in ("auth", "ingest", "processing", "reports"):
            if config.service_url(other) != f"http://{other}:{PORTS[other]}":
                problems.append(f"{name}: reaches {other} at {config.service_url(other)}")
            if other not in services:
                problems.append(f"{name}: no service {other!r} to reach")
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test", [])))
        if not HEALTH_PATH.search(test):
            problems.append(f"{name}: no health check on /healthz or /readyz")
    gateway = services.get("gateway", {})
    published = [str(interpolate(p, env)) for p in gateway.get("ports", [])]
    if not any(p.split(":")[-1] == "8080" and p.count(":") >= 1 for p in published):
        problems.append("gateway: container port 8080 is not published")
    processing = services.get("processing", {})
    if "container_name" in processing or "ports" in processing:
        problems.append("processing: a container_name or published port prevents --scale")
    for name, service in services.items():
        for target, need in (service.get("depends_on") or {}).items():
            if isinstance(need, dict) and need.get("condition") == "service_healthy":
                target_service = services.get(target, {})
                check = target_service.get("healthcheck") or {}
                built = process_config(target_service.get("command")) is not None
                if check.get("disable") or not (check.get("test") or built):
                    problems.append(f"{name}: waits for {target} healthy, which has no check")
    return problems


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
    for name in ("auth", "ingest", "processing", "reports", "gateway"):
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
        assert needs["minio-init"] == {"condition": "service_completed_successfully"}, name
        assert needs["rabbitmq"] == {"condition": "service_healthy"}, name
        check = services[name]["healthcheck"]["test"]
        assert f"127.0.0.1:{PORTS[name]}/readyz" in check[-1], name
        compile(check[-1], f"{name} healthcheck", "exec")
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
        ("processing pinned", "prevents --scale"),
        ("variable missing from .env", "a required variable is missing"),
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
    else:
        del env["POSTGRES_PASSWORD"]
    assert compose_schema_errors(broken) == []
    problems = compose_problems(broken, env)
    assert any(expected in p for p in problems), problems


# --- Kubernetes ----------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strategic_merge(base: Any, patch: Any) -> Any:
    """Strategic merge as the layout needs it: maps merge, lists of named items merge by name,
    other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value) if key in base else value
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(i, dict) and "name" in i for i in base + patch):
        merged = [dict(i) for i in base]
        for item in patch:
            index = next((n for n, i in enumerate(merged) if i["name"] == item["name"]), None)
            if index is None:
                merged.append(item)
            else:
                merged[index] = strategic_merge(merged[index], item)
        return merged
    return patch


def pod_containers(resource: dict) -> list[dict]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return spec.get("containers", []) + spec.get("initContainers", [])


def render(folder: Path) -> list[dict]:
    """``kustomize build`` for resources, namespace, images and patches (strategic merge)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    assert set(kustomization) <= allowed, f"render() does not know {set(kustomization) - allowed}"
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = folder / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    for patch_entry in kustomization.get("patches", []):
        for patch in load_documents(folder / patch_entry["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            index = [
                n for n, r in enumerate(resources) if (r["kind"], r["metadata"]["name"]) == key
            ]
            assert len(index) == 1, f"patch {patch_entry['path']} matches {len(index)} resources"
            resources[index[0]] = strategic_merge(resources[index[0]], patch)
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in pod_containers(resource):
                if container["image"].split(":")[0] == image["name"]:
                    name = image.get("newName", image["name"])
                    container["image"] = f"{name}:{image['newTag']}" if "newTag" in image else name
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] != "Namespace":
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def k8s_schema_errors(resources: list[dict]) -> list[str]:
    errors = []
    for resource in resources:
        try:
            kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = f"{resource.get('kind')}/{resource['metadata']['name']} {exc.json_path}"
            errors.append(f"{where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{resource.get('kind')}/{resource['metadata']['name']}: {exc.message}")
    return errors


def of_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def k8s_problems(resources: list[dict]) -> list[str]:
    """What the Kubernetes schemas cannot check; [] when the manifests are right."""
    problems = []
    deployments, services = of_kind(resources, "Deployment"), of_kind(resources, "Service")
    configs, secrets = of_kind(resources, "ConfigMap"), of_kind(resources, "Secret")
    environment = {**configs.get("darkroom-config", {}).get("data", {})}
    environment |= secrets.get("darkroom-secrets", {}).get("stringData", {})
    commands = {}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        labels = pod["metadata"].get("labels", {})
        if not set(deployment["spec"]["selector"]["matchLabels"].items()) <= set(labels.items()):
            problems.append(f"{name}: its selector does not match its pod labels")
        security = pod["spec"].get("securityContext", {})
        if not security.get("runAsNonRoot"):
            problems.append(f"{name}: pods may run as root")
        for container in pod["spec"]["containers"]:
            commands[name] = tuple(container.get("command", []))
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                got = container.get(probe, {}).get("httpGet", {}).get("path")
                if got != path:
                    problems.append(f"{name}: {probe} must ask {path}, asks {got}")
            limits = container.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(limits.get(part, {})):
                    problems.append(f"{name}: no cpu and memory {part}")
            if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
                problems.append(f"{name}: the root filesystem is writable")
            if process_config(list(commands[name])) is None:
                problems.append(f"{name}: runs {commands[name]}, not a Darkroom process")
    for name, service in services.items():
        selector = set(service["spec"]["selector"].items())
        matching = [
            d
            for d in deployments.values()
            if selector <= set(d["spec"]["template"]["metadata"]["labels"].items())
        ]
        if len(matching) != 1:
            problems.append(f"Service {name}: its selector matches {len(matching)} Deployments")
            continue
        ports = {p["name"] for c in pod_containers(matching[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            if port.get("targetPort") not in ports:
                problems.append(f"Service {name}: targetPort {port.get('targetPort')} unknown")
    for name, hpa in of_kind(resources, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            problems.append(f"HPA {name}: targets {target['kind']} {target['name']}")
        elif commands.get(target["name"]) != ("python", "-m", "services.processing"):
            problems.append(f"HPA {name}: scales {target['name']}, not processing")
    ingresses = of_kind(resources, "Ingress")
    if not ingresses:
        problems.append("no Ingress")
    for name, ingress in ingresses.items():
        for rule in ingress["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                backend = path["backend"]["service"]
                if commands.get(backend["name"]) != ("python", "-m", "gateway"):
                    problems.append(f"Ingress {name}: routes to {backend['name']}, not the gateway")
    jobs = of_kind(resources, "Job")
    if not any(
        tuple(c.get("command", [])) == ("darkroom", "migrate")
        for j in jobs.values()
        for c in pod_containers(j)
    ):
        problems.append("no Job runs `darkroom migrate`")
    for cls in {*PROCESSES.values()} - {ServersConfig}:
        try:
            config = load(cls, {**environment, "DARKROOM_SECRETS_DIR": "/nonexistent"})
        except Exception as exc:
            problems.append(f"{cls.__name__} does not load from the ConfigMap + Secret: {exc}")
            continue
        for other in ("auth", "ingest", "processing", "reports"):
            host, _, port = config.service_url(other).removeprefix("http://").partition(":")
            ports = [p["port"] for p in services.get(host, {}).get("spec", {}).get("ports", [])]
            if int(port or 80) not in ports:
                problems.append(f"{other}'s URL {config.service_url(other)} is no Service port")
    return problems


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(OVERLAY)


def test_manifests_match_the_kubernetes_schemas(rendered):
    assert len(rendered) >= 14
    assert k8s_schema_errors(rendered) == []


def test_manifests_probe_limit_scale_and_route_right(rendered):
    assert k8s_problems(rendered) == []
    assert set(of_kind(rendered, "Deployment")) == {f"darkroom-{n}" for n in PORTS}
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        "darkroom-example"
    }
    images = {c["image"] for r in rendered for c in pod_containers(r)}
    assert images == {"registry.example.com/darkroom:0.1.0"}


def test_the_example_overlay_patches_the_base(rendered):
    deployments = of_kind(rendered, "Deployment")
    assert deployments["darkroom-gateway"]["spec"]["replicas"] == 3
    (worker,) = deployments["darkroom-processing"]["spec"]["template"]["spec"]["containers"]
    assert worker["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"  # kept from the base
    config = of_kind(rendered, "ConfigMap")["darkroom-config"]["data"]
    assert config["DARKROOM_PUBLIC_URL"] == "https://images.example.org"
    assert config["DARKROOM_AUTH_URL"] == "http://darkroom-auth:8081"  # kept from the base
    secret = of_kind(rendered, "Secret")["darkroom-secrets"]["stringData"]
    assert all("change-me" in value for value in secret.values()), "placeholders only"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_render_agrees_with_kubectl_kustomize(rendered):
    result = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr

    def key(r: dict) -> tuple:
        return (r["kind"], r["metadata"]["name"])

    theirs = [r for r in yaml.safe_load_all(result.stdout) if r]
    assert sorted(map(key, theirs)) == sorted(map(key, rendered))
    assert {key(r): r for r in theirs} == {key(r): r for r in rendered}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("bad apiVersion", "apps/v1beta1"),
        ("unknown field", "replica"),
        ("wrong type", "replicas"),
    ],
)
def test_k8s_schemas_refuse_a_broken_copy(rendered, breakage, expected):
    broken = copy.deepcopy(rendered)
    gateway = next(r for r in broken if r["metadata"]["name"] == "darkroom-gateway")
    if breakage == "bad apiVersion":
        gateway["apiVersion"] = "apps/v1beta1"
    elif breakage == "unknown field":
        gateway["spec"]["replica"] = 2
    else:
        gateway["spec"]["replicas"] = "three"
    errors = k8s_schema_errors(broken)
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("no probes", "readinessProbe must ask /readyz"),
        ("liveness on the wrong path", "livenessProbe must ask /healthz"),
        ("no limits", "no cpu and memory limits"),
        ("HPA on the gateway", "not processing"),
        ("Service selector mismatch", "matches 0 Deployments"),
        ("Ingress to auth", "not the gateway"),
        ("service URL without a Service", "is no Service port"),
        ("root filesystem writable", "root filesystem is writable"),
    ],
)
def test_k8s_checks_refuse_a_broken_copy(rendered, breakage, expected):
    broken = copy.deepcopy(rendered)
    deployments, services = of_kind(broken, "Deployment"), of_kind(broken, "Service")
    auth = deployments["darkroom-auth"]["spec"]["template"]["spec"]["containers"][0]
    if breakage == "no probes":
        del auth["readinessProbe"], auth["livenessProbe"]
    elif breakage == "liveness on the wrong path":
        auth["livenessProbe"]["httpGet"]["path"] = "/"
    elif breakage == "no limits":
        del auth["resources"]["limits"]
    elif breakage == "HPA on the gateway":
        hpa = next(iter(of_kind(broken, "HorizontalPodAutoscaler").values()))
        hpa["spec"]["scaleTargetRef"]["name"] = "darkroom-gateway"
    elif breakage == "Service selector mismatch":
        services["darkroom-reports"]["spec"]["selector"]["app.kubernetes.io/component"] = "report"
    elif breakage == "Ingress to auth":
        ingress = next(iter(of_kind(broken, "Ingress").values()))
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = (
            "darkroom-auth"
        )
    elif breakage == "service URL without a Service":
        of_kind(broken, "ConfigMap")["darkroom-config"]["data"]["DARKROOM_AUTH_URL"] = (
            "http://auth:8081"
        )
    else:
        auth["securityContext"]["readOnlyRootFilesystem"] = False
    assert k8s_schema_errors(broken) == []
    problems = k8s_problems(broken)
    assert any(expected in p for p in problems), problems


# --- Dockerfile ----------------------------------------------------------------------------


def parse_dockerfile(text: str) -> list[list[tuple[str, str]]]:
    """Stages, each a list of ``(INSTRUCTION, arguments)``; continuations joined."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    stages: list[list[tuple[str, str]]] = []
    for line in lines:
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if not stages:
            continue
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def dockerfile_problems(text: str) -> list[str]:
    stages = parse_dockerfile(text)
    if len(stages) < 2:
        return ["not multi-stage"]
    final = stages[-1]
    problems = []
    base = final[0][1].split()[0]
    if not base.startswith("python:3.11-slim"):
        problems.append(f"final stage from {base}, not python:3.11-slim")
    for instruction, arguments in final:
        if instruction == "RUN" and COMPILERS.search(arguments):
            problems.append(f"final stage installs a compiler: {arguments}")
        if instruction == "COPY" and "--from" not in arguments:
            problems.append(f"final stage copies from the build context: {arguments}")
    users = [arguments.split(":")[0] for instruction, arguments in final if instruction == "USER"]
    if not users or users[-1] in {"root", "0"}:
        problems.append("the final stage runs as root")
    checks = [arguments for instruction, arguments in final if instruction == "HEALTHCHECK"]
    if not checks or checks[-1].upper().startswith("NONE"):
        problems.append("no HEALTHCHECK")
    elif not HEALTH_PATH.search(checks[-1]):
        problems.append("the HEALTHCHECK asks neither /healthz nor /readyz")
    if not any(instruction == "CMD" for instruction, _ in final):
        problems.append("no CMD")
    return problems


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / DOCKERFILE).read_text()


def test_dockerfile_is_multi_stage_non_root_and_healthchecked(dockerfile):
    assert dockerfile_problems(dockerfile) == []
    stages = parse_dockerfile(dockerfile)
    assert any(COMPILERS.search(arguments) for _, arguments in stages[0]), "build has compilers"
    (check,) = [arguments for instruction, arguments in stages[-1] if instruction == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")


def test_every_process_the_image_runs_has_a_main(compose):
    for command in PROCESSES:
        if command[:2] == ("python", "-m"):
            assert (ROOT / command[2].replace(".", "/") / "__main__.py").is_file(), command
    assert "darkroom = " in (ROOT / "pyproject.toml").read_text()
    for name, service in compose["services"].items():
        if "build" in service:
            assert process_config(service["command"]) is not None, name


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile):
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for instruction, arguments in (i for stage in parse_dockerfile(dockerfile) for i in stage):
        if instruction == "COPY" and "--from" not in arguments:
            sources = shlex.split(arguments)[:-1]
            assert all(s.rstrip("/") in kept for s in sources), sources


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("root", "runs as root"),
        ("no user", "runs as root"),
        ("compiler", "installs a compiler"),
        ("single stage", "not multi-stage"),
        ("no healthcheck", "no HEALTHCHECK"),
    ],
)
def test_dockerfile_checks_refuse_a_broken_copy(dockerfile, breakage, expected):
    if breakage == "root":
        broken = dockerfile.replace("USER 10001:10001", "USER root")
    elif breakage == "no user":
        broken = dockerfile.replace("USER 10001:10001", "")
    elif breakage == "compiler":
        broken = dockerfile + "RUN apt-get update && apt-get install -y gcc\n"
    elif breakage == "single stage":
        broken = dockerfile.split("FROM python:3.11-slim-bookworm AS runtime")[0]
    else:
        broken = re.sub(r"HEALTHCHECK.*?\]\n", "", dockerfile, flags=re.S)
    assert broken != dockerfile
    assert any(expected in p for p in dockerfile_problems(broken)), dockerfile_problems(broken)
