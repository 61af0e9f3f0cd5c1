"""The Kubernetes manifests in ``deploy/k8s`` stay true without a cluster: the example overlay
rendered (kustomize's merge, done in tests/deploy_support.py for the features the layout uses;
compared with ``kubectl kustomize`` where kubectl is installed), every resource validated
against the Kubernetes schemas of a pinned version (kubernetes-validate, strict: unknown fields
fail), then probes, resources, the HPA's target, Service selectors, the Ingress, the service
URLs, which image each process runs, Chromium's /dev/shm, Redis wired to the gateways; and the
overlay with KEDA: ScaledObjects on the queues the workers consume, instead of the CPU HPAs.

Each validator is also shown a deliberately broken copy, and must refuse it.
"""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
import yaml

from tests.deploy_support import (
    KEDA_API,
    KEDA_OVERLAY,
    OVERLAY,
    PORTS,
    SCALABLE,
    SERVERS,
    SHM,
    TARGETS,
    WRITABLE,
    k8s_problems,
    k8s_schema_errors,
    keda_problems,
    of_kind,
    pod_containers,
    render,
)


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(OVERLAY)


def test_manifests_match_the_kubernetes_schemas(rendered):
    assert len(rendered) >= 19
    assert k8s_schema_errors(rendered) == []


def test_manifests_probe_limit_scale_and_route_right(rendered):
    assert k8s_problems(rendered) == []
    assert set(of_kind(rendered, "Deployment")) == {f"darkroom-{n}" for n in PORTS} | set(SERVERS)
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        "darkroom-example"
    }
    images = {c["image"] for r in rendered for c in pod_containers(r)}
    assert images == {f"registry.example.com/{name}:0.1.0" for name in TARGETS.values()} | {
        "redis:7.2-alpine"
    }
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(rendered, "HorizontalPodAutoscaler").values()
    }
    assert scaled == {f"darkroom-{n}" for n in SCALABLE}


def test_the_example_overlay_patches_the_base(rendered):
    deployments = of_kind(rendered, "Deployment")
    assert deployments["darkroom-gateway"]["spec"]["replicas"] == 3
    (worker,) = deployments["darkroom-processing"]["spec"]["template"]["spec"]["containers"]
    assert worker["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"  # kept from the base
    renderer = deployments["darkroom-rendering"]["spec"]["template"]["spec"]
    (browser,) = renderer["containers"]
    assert browser["resources"]["limits"] == {"cpu": "4", "memory": "4Gi"}
    (concurrency,) = [e for e in browser["env"] if e["name"] == "DARKROOM_RENDER_CONCURRENCY"]
    assert concurrency["valueFrom"]["resourceFieldRef"] == {
        "containerName": "rendering",
        "resource": "limits.cpu",
        "divisor": "1",
    }
    assert {*WRITABLE, SHM} <= {m["mountPath"] for m in browser["volumeMounts"]}
    config = of_kind(rendered, "ConfigMap")["darkroom-config"]["data"]
    assert config["DARKROOM_PUBLIC_URL"] == "https://images.example.org"
    assert config["DARKROOM_AUTH_URL"] == "http://darkroom-auth:8081"  # kept from the base
    secret = of_kind(rendered, "Secret")["darkroom-secrets"]["stringData"]
    assert all("change-me" in value for value in secret.values()), "placeholders only"


def test_the_gateways_share_their_rate_limits_in_redis(rendered):
    config = of_kind(rendered, "ConfigMap")["darkroom-config"]["data"]
    assert config["REDIS_URL"] == "redis://darkroom-redis:6379/0"
    redis = of_kind(rendered, "Deployment")["darkroom-redis"]["spec"]["template"]["spec"]
    (server,) = redis["containers"]
    assert server["command"][0] == "redis-server" and "--save" in server["command"]
    assert server["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    (port,) = of_kind(rendered, "Service")["darkroom-redis"]["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (6379, "redis")
    (gateway,) = of_kind(rendered, "Deployment")["darkroom-gateway"]["spec"]["template"]["spec"][
        "containers"
    ]
    assert {"configMapRef": {"name": "darkroom-config"}} in gateway["envFrom"]


@pytest.fixture(scope="module")
def with_keda() -> list[dict]:
    return render(KEDA_OVERLAY)


def test_with_keda_processing_and_rendering_scale_on_their_queues(rendered, with_keda):
    kubernetes = [r for r in with_keda if r["apiVersion"] != KEDA_API]
    assert k8s_schema_errors(kubernetes) == []
    assert k8s_problems(with_keda) == []
    assert keda_problems(with_keda) == []
    scaled = of_kind(with_keda, "ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {
        f"darkroom-{n}" for n in SCALABLE
    }
    assert of_kind(with_keda, "HorizontalPodAutoscaler") == {}  # KEDA makes its own
    # Without KEDA the base's CPU HPAs stay, and nothing of KEDA's is applied.
    assert len(of_kind(rendered, "HorizontalPodAutoscaler")) == 2
    assert not [r for r in rendered if r["apiVersion"] == KEDA_API]
    assert {r["metadata"].get("namespace") for r in with_keda if r["kind"] != "Namespace"} == {
        "darkroom-example"
    }


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("wrong queue", "watches"),
        ("HPA left beside", "is also scaled by an HPA"),
        ("no CPU fallback", "no cpu trigger"),
        ("scales the gateway", "not a queue worker"),
        ("broker address unknown", "host is no key of a Secret"),
    ],
)
def test_keda_checks_refuse_a_broken_copy(rendered, with_keda, breakage, expected):
    broken = copy.deepcopy(with_keda)
    processing = of_kind(broken, "ScaledObject")["darkroom-processing"]["spec"]
    if breakage == "wrong queue":
        processing["triggers"][0]["metadata"]["queueName"] = "darkroom.processing"
    elif breakage == "HPA left beside":
        broken += list(of_kind(rendered, "HorizontalPodAutoscaler").values())
    elif breakage == "no CPU fallback":
        processing["triggers"] = [t for t in processing["triggers"] if t["type"] != "cpu"]
    elif breakage == "scales the gateway":
        processing["scaleTargetRef"]["name"] = "darkroom-gateway"
    else:
        auth = of_kind(broken, "TriggerAuthentication")["darkroom-rabbitmq"]
        auth["spec"]["secretTargetRef"][0]["key"] = "RABBITMQ_URL"
    problems = keda_problems(broken)
    assert any(expected in p for p in problems), problems


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", [OVERLAY, KEDA_OVERLAY], ids=["example", "example-keda"])
def test_render_agrees_with_kubectl_kustomize(overlay):
    rendered = render(overlay)
    result = subprocess.run(
        ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=30
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
        ("HPA on the gateway", "not a queue worker"),
        ("Service selector mismatch", "matches 0 Deployments"),
        ("Ingress to auth", "not the gateway"),
        ("service URL without a Service", "is no Service port"),
        ("root filesystem writable", "root filesystem is writable"),
        ("rendering without Chromium", "not 'darkroom-renderer'"),
        ("Chromium for auth", "not 'darkroom'"),
        ("no /dev/shm", "memory-backed emptyDir at /dev/shm"),
        ("mount without a volume", "which is not a volume"),
        ("rendering URL missing", "rendering's URL http://127.0.0.1:8085 is no Service port"),
        ("Redis URL without a Service", "REDIS_URL 'redis://redis:6379/0' is no Service port"),
        ("Redis without probes", "darkroom-redis: no readinessProbe"),
        ("Redis runs something else", "not redis-server"),
    ],
)
def test_k8s_checks_refuse_a_broken_copy(rendered, breakage, expected):
    broken = copy.deepcopy(rendered)
    deployments, services = of_kind(broken, "Deployment"), of_kind(broken, "Service")
    auth = deployments["darkroom-auth"]["spec"]["template"]["spec"]["containers"][0]
    renderer = deployments["darkroom-rendering"]["spec"]["template"]["spec"]
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
    elif breakage == "rendering without Chromium":
        renderer["containers"][0]["image"] = auth["image"]
    elif breakage == "Chromium for auth":
        auth["image"] = renderer["containers"][0]["image"]
    elif breakage == "no /dev/shm":
        renderer["volumes"] = [v for v in renderer["volumes"] if "medium" not in v["emptyDir"]]
        renderer["containers"][0]["volumeMounts"] = [
            m for m in renderer["containers"][0]["volumeMounts"] if m["mountPath"] != SHM
        ]
    elif breakage == "mount without a volume":
        renderer["volumes"] = [v for v in renderer["volumes"] if v["name"] != "var"]
    elif breakage == "rendering URL missing":
        del of_kind(broken, "ConfigMap")["darkroom-config"]["data"]["DARKROOM_RENDERING_URL"]
    elif breakage == "Redis URL without a Service":
        of_kind(broken, "ConfigMap")["darkroom-config"]["data"]["REDIS_URL"] = (
            "redis://redis:6379/0"
        )
    elif breakage.startswith("Redis"):
        (server,) = deployments["darkroom-redis"]["spec"]["template"]["spec"]["containers"]
        if breakage == "Redis without probes":
            del server["readinessProbe"]
        else:
            server["command"] = ["sleep", "infinity"]
    else:
        auth["securityContext"]["readOnlyRootFilesystem"] = False
    assert k8s_schema_errors(broken) == []
    problems = k8s_problems(broken)
    assert any(expected in p for p in problems), problems
