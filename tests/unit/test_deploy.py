"""Deployment files, checked offline: Kubernetes overlays against the API schemas, KEDA's CRD models and a
structural RayService check; compose against the compose-spec schema; Serve configs; the dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.fixtures.kustomize import render

ROOT = Path(__file__).parents[2]
OVERLAYS = ("cpu", "gpu")
#: The oldest Kubernetes the manifests target, and the newest whose schemas the package ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRDS = {("keda.sh/v1alpha1", "ScaledObject"), ("ray.io/v1", "RayService")}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, dict[tuple[str, str], dict]]:
    """``(name, {(kind, name): resource})`` of a rendered overlay."""
    docs = render(ROOT / "k8s" / "overlays" / request.param)
    return request.param, {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_core_resources_validate_against_the_kubernetes_schemas(overlay):
    _, docs = overlay
    core = [d for d in docs.values() if (d["apiVersion"], d["kind"]) not in CRDS]
    assert {k for k, _ in docs} >= {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "ConfigMap", "Secret"}
    for doc in core:
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_scaledobject_validates_against_kedas_crd_models(overlay):
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    _, docs = overlay
    doc = docs[("ScaledObject", "iam-worker")]
    model = ScaledObject.model_validate(doc)
    # The models ignore unknown fields: a round trip that loses nothing proves there were none.
    assert model.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc
    assert docs[("Deployment", doc["spec"]["scaleTargetRef"]["name"])]
    trigger = doc["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql" and "FROM jobs WHERE status = 'queued'" in trigger["metadata"]["query"]
    assert trigger["metadata"]["connectionFromEnv"] in docs[("Secret", "iam-cluster-secrets")]["stringData"]


def serve_config_problems(config: dict) -> list[str]:
    """What Ray's Serve schema (which ignores unknown keys) and our builder's arguments reject."""
    from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

    from iam_cluster.serve.app import AppArgs

    def fields(model) -> set[str]:
        return set(getattr(model, "model_fields", None) or model.__fields__)

    (getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj)(config)
    problems = [f"unknown key {k}" for k in set(config) - fields(ServeDeploySchema)]
    for app in config["applications"]:
        problems += [f"unknown application key {k}" for k in set(app) - fields(ServeApplicationSchema)]
        problems += [f"unknown argument {k}" for k in set(app.get("args", {})) - set(AppArgs.model_fields)]
        AppArgs(**app.get("args", {}))
        for deployment in app.get("deployments", []):
            problems += [f"unknown deployment key {k}" for k in set(deployment) - fields(DeploymentSchema)]
    return problems


def test_rayservice_structure_pod_templates_and_serve_config(overlay):
    """KubeRay publishes no schema package: the structure is checked here, the pod templates
    against Kubernetes' PodTemplate schema, and serveConfigV2 against Ray's Serve schema."""
    name, docs = overlay
    spec = docs[("RayService", "iam-cluster")]["spec"]
    assert set(spec) <= {"serveConfigV2", "rayClusterConfig", "serviceUnhealthySecondThreshold",
                         "deploymentUnhealthySecondThreshold", "upgradeStrategy"}
    cluster = spec["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # map[string]string
        template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": group["template"]}
        kubernetes_validate.validate(template, K8S_VERSIONS[-1], strict=True)
    for worker in cluster["workerGroupSpecs"]:
        assert worker["groupName"] and worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]
    serve = yaml.safe_load(spec["serveConfigV2"])
    assert serve_config_problems(serve) == []
    args = serve["applications"][0]["args"]
    # The API accepts only jobs for the model the Serve application runs.
    assert docs[("ConfigMap", "iam-cluster-config")]["data"]["IAM_MODEL"] == args["model"]
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for w in cluster["workerGroupSpecs"]
            for c in w["template"]["spec"]["containers"]]
    if name == "gpu":
        assert args["device"] == "cuda" and args["asr_num_gpus"] >= 1 and all(g == "1" for g in gpus)
    else:
        assert args["device"] == "cpu" and args["asr_num_gpus"] == 0 and not any(gpus)


def containers(docs: dict) -> list[dict]:
    found = []

    def walk(node) -> None:
        if isinstance(node, dict):
            found.extend(node.get("containers", []) if isinstance(node.get("containers"), list) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(list(docs.values()))
    return found


def test_references_between_resources_resolve(overlay):
    _, docs = overlay
    for container in containers(docs):
        assert container["image"].startswith("REGISTRY/") and container["image"].endswith(":0.1.0")
        for source in container.get("envFrom", []):
            ref = source.get("configMapRef") or source.get("secretRef")
            kind = "ConfigMap" if "configMapRef" in source else "Secret"
            assert (kind, ref["name"]) in docs
    known = setting_variables()
    assert set(docs[("ConfigMap", "iam-cluster-config")]["data"]) <= known
    assert set(docs[("Secret", "iam-cluster-secrets")]["stringData"]) <= known
    hpa = docs[("HorizontalPodAutoscaler", "iam-api")]["spec"]["scaleTargetRef"]
    assert (hpa["kind"], hpa["name"]) in docs
    for (kind, name), doc in docs.items():
        if kind == "Service":
            pods = docs[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"].items() <= pods.items()
        assert kind == "Namespace" or doc["metadata"]["namespace"] == "iam-cluster"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
@pytest.mark.parametrize("folder", ["base", "overlays/cpu", "overlays/gpu"])
def test_the_python_rendering_matches_kubectl_kustomize(folder):
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s" / folder)], capture_output=True, text=True,
                         check=True)
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    theirs = {key(d): d for d in yaml.safe_load_all(out.stdout) if d}
    assert {key(d): d for d in render(ROOT / "k8s" / folder)} == theirs


def compose_validator() -> jsonschema.Draft201909Validator:
    schema = json.loads((ROOT / "tests" / "data" / "schemas" / "compose-spec.json").read_text())
    return jsonschema.Draft201909Validator(schema)  # what its $schema names


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu.yaml"])
def test_compose_files_validate_against_the_compose_spec(name):
    doc = yaml.safe_load((ROOT / name).read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in compose_validator().iter_errors(doc)]
    assert errors == []


def test_compose_runs_the_whole_stack_with_health_checks():
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert {"postgres", "redis", "minio", "migrate", "api", "worker", "serve"} <= set(services)
    for name in ("postgres", "redis", "minio", "api", "worker", "serve"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
    targets = set(re.findall(r"^FROM .+ AS (\w+)$", (ROOT / "Dockerfile").read_text(), re.M))
    assert {s["build"]["target"] for s in services.values() if "target" in s.get("build", {})} <= targets
    assert set(services["api"]["environment"]) <= setting_variables()


def setting_variables() -> set[str]:
    """Every environment variable the settings read."""
    import msgspec

    from iam_cluster.envconf import env_names
    from iam_cluster.settings import Settings

    names = set()
    for section in msgspec.structs.fields(Settings):
        for field in msgspec.structs.fields(section.type):
            names.update(env_names(section.type, field.name))
    return names


def test_dockerfiles_copy_what_exists_and_pin_a_cpu_torch():
    for name in ("Dockerfile", "Dockerfile.gpu"):
        for source in re.findall(r"^COPY (.+) \S+$", (ROOT / name).read_text(), re.M):
            for path in source.split():
                assert (ROOT / path).exists(), f"{name}: COPY {path}"
    assert re.search(r"--index-url https://download.pytorch.org/whl/cpu \"torch==[\d.]+\"",
                     (ROOT / "Dockerfile").read_text())


@pytest.mark.parametrize("name", ["serve_config.yaml", "deploy/serve/cpu.yaml", "deploy/serve/gpu.yaml"])
def test_serve_configs_validate(name):
    assert serve_config_problems(yaml.safe_load((ROOT / name).read_text())) == []


def defined_metrics() -> set[str]:
    """Names our code exports: prometheus-client ones (counters also as ``_total``), Ray Serve's
    (prefixed ``ray_``), scrape-time families, and Litestar's request metrics (prefix ``iam_api``)."""
    names = {f"iam_api_{suffix}" for suffix in ("requests_total", "request_duration_seconds",
                                                "requests_in_progress", "requests_error_total")}
    for path in (ROOT / "iam_cluster" / "observability").glob("*.py"):
        text = path.read_text()
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*\"(\w+)\"", text):
            prefix = "ray_" if path.name == "serve_metrics.py" else ""
            names.add(prefix + name)
            if kind == "Counter" and not prefix:
                names.add(name + "_total")
    return names


def test_the_dashboard_charts_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "iam-cluster.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    used = {re.sub(r"_(bucket|sum|count)$", "", name) for p in panels for t in p["targets"]
            for name in re.findall(r"\b((?:ray_)?iam_\w+)", t["expr"])}
    assert used and used <= defined_metrics(), used - defined_metrics()
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("queue", "jobs", "real-time factor", "batch fill", "errors", "latency"):
        assert topic in titles


def test_the_checks_catch_mistakes():
    from cloudcoil.models.keda.v1alpha1 import ScaledObject

    docs = {(d["kind"], d["metadata"]["name"]): d for d in render(ROOT / "k8s" / "overlays" / "cpu")}
    deployment = docs[("Deployment", "iam-api")]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)
    scaled = docs[("ScaledObject", "iam-worker")]
    scaled["spec"]["pollingIntervall"] = 30  # a typo the models would silently drop
    assert ScaledObject.model_validate(scaled).model_dump(by_alias=True, exclude_unset=True, mode="json") != scaled
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    compose["services"]["api"]["healthcheck"]["intervall"] = "5s"
    assert list(compose_validator().iter_errors(compose))
    assert serve_config_problems({"applications": [{"import_path": "iam_cluster.serve.app:build_app",
                                                    "args": {"modle": "tiny.en"}}]}) == ["unknown argument modle"]
