"""The Kubernetes manifests in ``deploy/k8s`` stay true without a cluster: the example overlay
rendered (kustomize's merge, done in tests/deploy_support.py for the features the layout uses;
compared with ``kubectl kustomize`` where kubectl is installed), every resource validated
against the Kubernetes schemas of a pinned version (kubernetes-validate, strict: unknown fields
fail), then probes, resources, the HPA's target, Service selectors, the Ingress, the service
URLs, which image each process runs, Chromium's /dev/shm.

Each validator is also shown a deliberately broken copy, and must refuse it.
"""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
import yaml

from tests.deploy_support import (
    OVERLAY,
    PORTS,
    SCALABLE,
    SHM,
    TARGETS,
    WRITABLE,
    k8s_problems,
    k8s_schema_errors,
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
    assert set(of_kind(rendered, "Deployment")) == {f"darkroom-{n}" for n in PORTS}
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        "darkroom-example"
    }
    images = {c["image"] for r in rendered for c in pod_containers(r)}
    assert images == {f"registry.example.com/{name}:0.1.0" for name in TARGETS.values()}
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
    else:
        auth["securityContext"]["readOnlyRootFilesystem"] = False
    assert k8s_schema_errors(broken) == []
    problems = k8s_problems(broken)
    assert any(expected in p for p in problems), problems
