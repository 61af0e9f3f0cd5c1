"""How the deployment files are read and checked without a Docker engine or a cluster, for
tests/test_deploy.py (compose, Procfile), tests/test_deploy_k8s.py and
tests/test_deploy_dockerfile.py.

* ``compose.yaml``: compose's variable interpolation and ``.env`` reading, the Compose
  Specification's JSON schema (the copy check-jsonschema vendors), and ``compose_problems``:
  what a schema cannot say.
* ``deploy/k8s``: kustomize's merge for the features the layout uses (``render``), the
  Kubernetes schemas of a pinned version (kubernetes-validate, strict), and ``k8s_problems``.
* ``deploy/Dockerfile``: its stages and targets (``parse_dockerfile``, ``lineage``), and
  ``dockerfile_problems``.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import yaml

from gateway.config import GatewayConfig
from services.auth.config import AuthConfig
from services.ingest.config import IngestConfig
from services.processing.config import ProcessingConfig
from services.rendering.config import RenderingConfig
from services.reports.config import ReportsConfig
from shared.config import SERVICES, ServersConfig, describe, load
from tests.conftest import ROOT

K8S_VERSION = "1.32.0"
DOCKERFILE = "deploy/Dockerfile"
OVERLAY = ROOT / "deploy/k8s/overlays/example"
#: The example again, with the KEDA component (queue-length autoscaling).
KEDA_OVERLAY = ROOT / "deploy/k8s/overlays/example-keda"
KEDA_API = "keda.sh/v1alpha1"
PORTS = {
    "gateway": 8080,
    "auth": 8081,
    "ingest": 8082,
    "processing": 8083,
    "reports": 8084,
    "rendering": 8085,
}
#: The command of each Darkroom process → the configuration class it loads.
PROCESSES: dict[tuple[str, ...], type] = {
    ("python", "-m", "gateway"): GatewayConfig,
    ("python", "-m", "services.auth"): AuthConfig,
    ("python", "-m", "services.ingest"): IngestConfig,
    ("python", "-m", "services.processing"): ProcessingConfig,
    ("python", "-m", "services.reports"): ReportsConfig,
    ("python", "-m", "services.rendering"): RenderingConfig,
    ("darkroom", "migrate"): ServersConfig,
}
RENDERING = ("python", "-m", "services.rendering")
#: Competing consumers of a queue: `--scale` in compose, an HPA on Kubernetes.
SCALABLE = {"processing", "rendering"}
#: Servers the Kubernetes base runs beside the Darkroom processes: Deployment → its command.
SERVERS = {"darkroom-redis": "redis-server"}
#: The Dockerfile target → the image Kubernetes runs it as. Only rendering gets Chromium.
TARGETS = {"runtime": "darkroom", "renderer": "darkroom-renderer"}
FONTS = ("fonts-dejavu-core", "fonts-liberation2", "fonts-noto-color-emoji")
#: Mount paths (not temporary files we create): Chromium's shared memory, and where a process
#: may write under a read-only root filesystem (compose's tmpfs and volume, the emptyDirs).
SHM = "/dev/shm"  # noqa: S108
WRITABLE = ("/tmp", "/app/var")  # noqa: S108
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


def image_target(command: Any) -> str:
    """The Dockerfile target a process's image is built from."""
    return "renderer" if tuple(command) == RENDERING else "runtime"


def byte_size(value: Any) -> int:
    """A compose byte value (``1gb``, ``512m``, ``67108864``) in bytes; 0 if unreadable."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(value).strip().lower())
    return int(float(match[1]) * 1024 ** " kmg".index(match[2] or " ")) if match else 0


def compose_problems(doc: dict, env: dict[str, str]) -> list[str]:
    """What the compose schema cannot check; [] when the file is right."""
    problems = []
    services = doc.get("services", {})
    images: dict[str, set] = {}
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
            continue
        want = image_target(service["command"])
        if build.get("target") != want:
            problems.append(f"{name}: built from target {build.get('target')!r}, needs {want!r}")
        if service.get("image"):  # two builds must not tag one image name
            images.setdefault(service["image"], set()).add(build.get("target"))
        shm = service.get("shm_size")
        if want == "renderer" and byte_size(shm) < 256 * 1024**2:
            problems.append(f"{name}: shm_size {shm!r} is under 256 MB (Chromium's /dev/shm)")
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
        for other in SERVICES:
            if config.service_url(other) != f"http://{other}:{PORTS[other]}":
                problems.append(f"{name}: reaches {other} at {config.service_url(other)}")
            if other not in services:
                problems.append(f"{name}: no service {other!r} to reach")
        test = " ".join(map(str, (service.get("healthcheck") or {}).get("test", [])))
        if not HEALTH_PATH.search(test):
            problems.append(f"{name}: no health check on /healthz or /readyz")
    gateway = services.get("gateway", {})
    redis = urlsplit(str((gateway.get("environment") or {}).get("REDIS_URL", "")))
    if redis.scheme != "redis" or redis.hostname not in services:
        problems.append(f"gateway: REDIS_URL {redis.geturl()!r} names no compose service")
    elif gateway.get("depends_on", {}).get(redis.hostname) != {"condition": "service_healthy"}:
        problems.append(f"gateway: does not wait for {redis.hostname} to be healthy")
    published = [str(interpolate(p, env)) for p in gateway.get("ports", [])]
    if not any(p.split(":")[-1] == "8080" and p.count(":") >= 1 for p in published):
        problems.append("gateway: container port 8080 is not published")
    for image, targets in images.items():
        if len(targets) > 1:
            problems.append(f"image {image} is built from {len(targets)} targets: {targets}")
    for name in sorted(SCALABLE):
        if {"container_name", "ports"} & set(services.get(name, {})):
            problems.append(f"{name}: a container_name or published port prevents --scale")
    for name, service in services.items():
        for target, need in (service.get("depends_on") or {}).items():
            if isinstance(need, dict) and need.get("condition") == "service_healthy":
                target_service = services.get(target, {})
                check = target_service.get("healthcheck") or {}
                built = process_config(target_service.get("command")) is not None
                if check.get("disable") or not (check.get("test") or built):
                    problems.append(f"{name}: waits for {target} healthy, which has no check")
    return problems


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


def render(folder: Path, resources: list[dict] | None = None) -> list[dict]:
    """``kustomize build`` for resources, components, namespace, images and patches (strategic
    merge, ``$patch: delete``); a Component is applied to the ``resources`` so far."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "components", "namespace", "images", "patches"}
    assert set(kustomization) <= allowed, f"render() does not know {set(kustomization) - allowed}"
    resources = [] if resources is None else resources
    for entry in kustomization.get("resources", []):
        path = folder / entry
        resources += render(path) if path.is_dir() else load_documents(path)
    for entry in kustomization.get("components", []):
        resources = render(folder / entry, resources)
    for patch_entry in kustomization.get("patches", []):
        for patch in load_documents(folder / patch_entry["path"]):
            key = (patch["kind"], patch["metadata"]["name"])
            index = [
                n for n, r in enumerate(resources) if (r["kind"], r["metadata"]["name"]) == key
            ]
            assert len(index) == 1, f"patch {patch_entry['path']} matches {len(index)} resources"
            if patch.get("$patch") == "delete":
                del resources[index[0]]
            else:
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


def image_name(image: str) -> str:
    """``registry.example.com/darkroom-renderer:0.1.0`` → ``darkroom-renderer``."""
    return image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]


def pod_problems(name: str, spec: dict) -> list[str]:
    """A pod's volumes and images: every mount has its volume, each process runs the image of
    its Dockerfile target, Chromium gets a memory-backed /dev/shm."""
    problems = []
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for volume in set(mounts.values()) - set(volumes):
            problems.append(f"{name}: mounts {volume!r}, which is not a volume")
        command = container.get("command", [])
        if process_config(command) is None:
            continue
        want = TARGETS[image_target(command)]
        if image_name(container.get("image", "")) != want:
            problems.append(f"{name}: runs image {container.get('image')!r}, not {want!r}")
        shm = volumes.get(mounts.get(SHM), {}).get("emptyDir", {})
        if tuple(command) == RENDERING and shm.get("medium") != "Memory":
            problems.append(f"{name}: Chromium needs a memory-backed emptyDir at /dev/shm")
    return problems


def k8s_problems(resources: list[dict]) -> list[str]:
    """What the Kubernetes schemas cannot check; [] when the manifests are right."""
    problems = []
    deployments, services = of_kind(resources, "Deployment"), of_kind(resources, "Service")
    configs, secrets = of_kind(resources, "ConfigMap"), of_kind(resources, "Secret")
    environment = {**configs.get("darkroom-config", {}).get("data", {})}
    environment |= secrets.get("darkroom-secrets", {}).get("stringData", {})
    commands = {}
    for name, workload in {**deployments, **of_kind(resources, "Job")}.items():
        problems += pod_problems(name, workload["spec"]["template"]["spec"])
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
                if name in SERVERS and not container.get(probe):
                    problems.append(f"{name}: no {probe}")
                elif name not in SERVERS and got != path:
                    problems.append(f"{name}: {probe} must ask {path}, asks {got}")
            limits = container.get("resources", {})
            for part in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(limits.get(part, {})):
                    problems.append(f"{name}: no cpu and memory {part}")
            if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
                problems.append(f"{name}: the root filesystem is writable")
            if name in SERVERS:
                if commands[name][:1] != (SERVERS[name],):
                    problems.append(f"{name}: runs {commands[name]}, not {SERVERS[name]}")
            elif process_config(list(commands[name])) is None:
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
    workers = {("python", "-m", f"services.{name}") for name in SCALABLE}
    for name, hpa in of_kind(resources, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            problems.append(f"HPA {name}: targets {target['kind']} {target['name']}")
        elif commands.get(target["name"]) not in workers:
            problems.append(f"HPA {name}: scales {target['name']}, not a queue worker")
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
        for other in SERVICES:
            host, _, port = config.service_url(other).removeprefix("http://").partition(":")
            ports = [p["port"] for p in services.get(host, {}).get("spec", {}).get("ports", [])]
            if int(port or 80) not in ports:
                problems.append(f"{other}'s URL {config.service_url(other)} is no Service port")
        if cls is GatewayConfig:
            redis = urlsplit(config.redis_url)
            ports = [
                p["port"] for p in services.get(redis.hostname, {}).get("spec", {}).get("ports", [])
            ]
            if redis.scheme != "redis" or (redis.port or 6379) not in ports:
                problems.append(f"the gateway's REDIS_URL {config.redis_url!r} is no Service port")
    return problems


def worker_queues(exchange: str) -> dict[str, set[str]]:
    """The RabbitMQ queues each queue worker's Deployment consumes (as the code names them)."""
    from services.processing.consumers import ANALYSES_CONSUMER, COMPARISONS_CONSUMER
    from services.rendering.consumers import RENDERS_CONSUMER

    return {
        "darkroom-processing": {
            f"{exchange}.{ANALYSES_CONSUMER}",
            f"{exchange}.{COMPARISONS_CONSUMER}",
        },
        "darkroom-rendering": {f"{exchange}.{RENDERS_CONSUMER}"},
    }


def keda_problems(resources: list[dict]) -> list[str]:
    """KEDA's resources (custom, so no schema of the pinned Kubernetes knows them): each
    ScaledObject scales a queue worker on the length of every queue it consumes, with CPU as a
    second trigger, through a TriggerAuthentication that reads darkroom-secrets' AMQP_URL, and
    no other HPA scales its target (KEDA makes its own); [] when they are right."""
    problems = []
    deployments, secrets = of_kind(resources, "Deployment"), of_kind(resources, "Secret")
    auths = of_kind(resources, "TriggerAuthentication")
    config = of_kind(resources, "ConfigMap").get("darkroom-config", {}).get("data", {})
    queues = worker_queues(config.get("DARKROOM_EXCHANGE", "darkroom"))
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(resources, "HorizontalPodAutoscaler").values()
    }
    for name, auth in auths.items():
        refs = {r["parameter"]: r for r in auth["spec"].get("secretTargetRef", [])}
        host = refs.get("host", {})
        if host.get("key") not in secrets.get(host.get("name"), {}).get("stringData", {}):
            problems.append(f"TriggerAuthentication {name}: host is no key of a Secret")
    for name, scaled in of_kind(resources, "ScaledObject").items():
        if scaled["apiVersion"] != KEDA_API:
            problems.append(f"ScaledObject {name}: apiVersion {scaled['apiVersion']}")
        spec = scaled["spec"]
        target = spec["scaleTargetRef"]["name"]
        if target not in deployments or target not in queues:
            problems.append(f"ScaledObject {name}: scales {target}, not a queue worker")
            continue
        if target in hpas:
            problems.append(f"ScaledObject {name}: {target} is also scaled by an HPA")
        if not 1 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 0):
            problems.append(f"ScaledObject {name}: needs 1 <= minReplicaCount <= maxReplicaCount")
        triggers = spec.get("triggers", [])
        watched = set()
        for trigger in triggers:
            if trigger["type"] != "rabbitmq":
                continue
            meta = trigger["metadata"]
            watched.add(meta.get("queueName"))
            if meta.get("mode") != "QueueLength" or not str(meta.get("value", "")).isdigit():
                problems.append(f"ScaledObject {name}: {meta.get('queueName')} not by QueueLength")
            if trigger.get("authenticationRef", {}).get("name") not in auths:
                problems.append(f"ScaledObject {name}: no TriggerAuthentication for the broker")
        if watched != queues[target]:
            problems.append(
                f"ScaledObject {name}: watches {sorted(watched)}, consumes {sorted(queues[target])}"
            )
        if not any(t["type"] == "cpu" for t in triggers):
            problems.append(f"ScaledObject {name}: no cpu trigger")
    return problems


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


def stage_base(stage: list[tuple[str, str]]) -> str:
    """What a stage is ``FROM``: an image, or an earlier stage's name."""
    return next(word for word in stage[0][1].split() if not word.startswith("--"))


def stage_name(stage: list[tuple[str, str]]) -> str:
    words = [word for word in stage[0][1].split() if not word.startswith("--")]
    return words[2] if len(words) == 3 and words[1].upper() == "AS" else ""


def lineage(stages: list[list[tuple[str, str]]], target: str) -> list[list[tuple[str, str]]]:
    """The stages an image of ``target`` is made of, root first ([] if there is no such stage)."""
    by_name = {stage_name(stage): stage for stage in stages}
    chain: list[list[tuple[str, str]]] = []
    stage = by_name.get(target)
    while stage is not None and stage not in chain:
        chain.insert(0, stage)
        stage = by_name.get(stage_base(stage))
    return chain


def image_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The variables ``ENV`` sets (``ENV A=1 B=2`` and the legacy ``ENV A 1``)."""
    env = {}
    for instruction, arguments in instructions:
        if instruction == "ENV":
            words = shlex.split(arguments)
            if words and "=" not in words[0]:
                env[words[0]] = " ".join(words[1:])
            else:
                env |= dict(word.partition("=")[::2] for word in words)
    return env


def dockerfile_problems(text: str) -> list[str]:
    """Each target (``runtime``, ``renderer``) with what it inherits: from python:3.11-slim, no
    compilers, nothing copied past the build stage, non-root, a HEALTHCHECK, a CMD; Chromium and
    the pinned fonts in the renderer only, with a writable HOME."""
    stages = parse_dockerfile(text)
    if len(stages) < 2:
        return ["not multi-stage"]
    problems = []
    for target in TARGETS:
        chain = lineage(stages, target)
        if not chain:
            problems.append(f"no stage {target!r}")
            continue
        image = [instruction for stage in chain for instruction in stage[1:]]
        base = stage_base(chain[0])
        if not base.startswith("python:3.11-slim"):
            problems.append(f"{target}: from {base}, not python:3.11-slim")
        runs = [arguments for instruction, arguments in image if instruction == "RUN"]
        for arguments in runs:
            if COMPILERS.search(arguments):
                problems.append(f"{target}: installs a compiler: {arguments}")
            lean = (
                "--no-install-recommends" in arguments and "rm -rf /var/lib/apt/lists" in arguments
            )
            if "apt-get install" in arguments and not lean:
                problems.append(
                    f"{target}: apt-get install needs --no-install-recommends, rm lists"
                )
        for instruction, arguments in image:
            if instruction == "COPY" and "--from" not in arguments:
                problems.append(f"{target}: copies from the build context: {arguments}")
        users = [
            arguments.split(":")[0] for instruction, arguments in image if instruction == "USER"
        ]
        if not users or users[-1] in {"root", "0"}:
            problems.append(f"{target}: runs as root")
        checks = [arguments for instruction, arguments in image if instruction == "HEALTHCHECK"]
        if not checks or checks[-1].upper().startswith("NONE"):
            problems.append(f"{target}: no HEALTHCHECK")
        elif not HEALTH_PATH.search(checks[-1]):
            problems.append(f"{target}: the HEALTHCHECK asks neither /healthz nor /readyz")
        if not any(instruction == "CMD" for instruction, _ in image):
            problems.append(f"{target}: no CMD")
        installed = {word for run in runs if "apt-get install" in run for word in run.split()}
        env = image_env(image)
        if target == "runtime" and "chromium" in installed:
            problems.append("runtime: installs Chromium (only the renderer target may)")
        if target != "renderer":
            continue
        if "runtime" not in map(stage_name, chain):
            problems.append("renderer: not built FROM runtime")
        for package in ("chromium", *FONTS):
            if package not in installed:
                problems.append(f"renderer: does not install {package}")
        if env.get("DARKROOM_CHROMIUM") != "/usr/bin/chromium":
            problems.append("renderer: DARKROOM_CHROMIUM is not Debian's /usr/bin/chromium")
        home = env.get("HOME", "/app")
        if not any(home == path or home.startswith(path + "/") for path in WRITABLE):
            problems.append(f"renderer: HOME {home} is on the read-only root filesystem")
    return problems
