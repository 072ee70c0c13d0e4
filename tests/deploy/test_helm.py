"""The Helm chart helm/ms3m-xapp: lint, render (default values, values-external-redis.yaml, every option on),
validate every manifest against the Kubernetes schemas of a pinned version, and check that the values schema
refuses bad values.

Helm itself runs in-process through `helm-python-sdk` (ctypes bindings of the Helm v4 Go SDK: `helm_python.lint`,
`Chart.render`, `Chart.validate_schema`), so no helm binary and no cluster are needed. Manifests are validated
with `kubernetes-validate` in strict mode (unknown fields are errors) against Kubernetes K8S_VERSION.
"""

from __future__ import annotations

import json
import os
import re

import pytest

from service.cli import build_parser
from service.config import Settings
from tests.deploy.conftest import CHART, DESCRIPTOR, DESCRIPTOR_SCHEMA, K8S_VERSION, load_yaml, load_yaml_all

helm = pytest.importorskip("helm_python", reason="needs helm-python-sdk (dev extra)")
kv = pytest.importorskip("kubernetes_validate", reason="needs kubernetes-validate (dev extra)")

RELEASE, NAMESPACE = "ms3m-xapp", "ricxapp"
HTTP_PORT = Settings.model_fields["http_port"].default
GRPC_PORT = Settings.model_fields["grpc_port"].default
ALL_ON = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4},
    "redis": {"persistence": {"enabled": True}, "auth": {"password": "s3cret"}},
    "bundles": {"volume": {"enabled": True, "accessModes": ["ReadWriteMany"]}},
    "retraining": {"enabled": True},
    "podAnnotations": {"example.com/team": "ran"},
    "imagePullSecrets": [{"name": "regcred"}],
    "xapp": {"settings": {"max_cells": 1_000_000, "flush_ms": 0.5, "ignore_unknown_kpis": True},
             "extraEnv": [{"name": "MS3M_MAX_BATCH", "value": "4096"}]},
}


def value_sets() -> dict[str, dict]:
    return {"default": {}, "external-redis": load_yaml(CHART / "values-external-redis.yaml"), "all-on": ALL_ON}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as c:
        yield c


def render(chart, values: dict) -> list[dict]:
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith((".yaml", ".yml")):
            docs += load_yaml_all(text)  # strict: a duplicated key in a template fails here
    return docs


@pytest.fixture(scope="module")
def rendered(chart) -> dict[str, list[dict]]:
    return {name: render(chart, values) for name, values in value_sets().items()}


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def xapp_deployment(docs):
    return one(docs, "Deployment", RELEASE)


def container_env(dep: dict) -> dict[str, dict]:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names)), f"duplicated env names: {names}"
    return {e["name"]: e for e in c["env"]}


# -- lint and schema validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("values", ["default", "external-redis", "all-on"])
def test_helm_lint(values):
    report = helm.lint(CHART, value_sets()[values] or None, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{K8S_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error (1 info: "icon ...")
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("values", ["default", "external-redis", "all-on"])
def test_rendered_manifests_validate_against_kubernetes_schemas(rendered, values):
    docs = rendered[values]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap"} <= kinds
    for d in docs:
        if d["apiVersion"] == "monitoring.coreos.com/v1":
            # A CRD of the Prometheus Operator: kubernetes-validate ships only built-in Kubernetes kinds.
            check_service_monitor(d)
            continue
        try:
            kv.validate(d, K8S_VERSION, strict=True)
        except kv.ValidationError as e:
            pytest.fail(f"{d['kind']}/{d['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
        assert d["metadata"]["namespace"] == NAMESPACE
        labels = d["metadata"]["labels"]
        assert labels["release"] == RELEASE and labels["app.kubernetes.io/managed-by"] == "Helm"
        if labels.get("app.kubernetes.io/component") != "trainer":
            assert labels["app"].startswith(f"{NAMESPACE}-")  # O-RAN SC: app=<namespace>-<name>


def check_service_monitor(sm: dict) -> None:
    """ServiceMonitor (monitoring.coreos.com/v1): no schema in kubernetes-validate, so check the fields we set."""
    assert sm["kind"] == "ServiceMonitor" and sm["metadata"]["namespace"] == NAMESPACE
    spec = sm["spec"]
    assert set(spec) == {"namespaceSelector", "selector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (ep,) = spec["endpoints"]
    assert set(ep) <= {"port", "path", "interval", "scrapeTimeout"}
    assert ep["port"] == "http" and ep["path"] == "/ric/v1/metrics"
    assert re.fullmatch(r"\d+s", ep["interval"]) and re.fullmatch(r"\d+s", ep["scrapeTimeout"])


def test_service_monitor_selects_the_http_service(rendered):
    docs = rendered["all-on"]
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"  # the operator's selector label wins
    selected = [d for d in docs if d["kind"] == "Service"
                and sm["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()]
    assert [p["name"] for s in selected for p in s["spec"]["ports"]].count("http") == 1
    assert all(s["metadata"]["labels"]["app.kubernetes.io/component"] == "xapp" for s in selected)


@pytest.mark.parametrize("bad, where", [
    ({"replicaCount": -1}, "/replicaCount"),
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"image": {"repository": "ms3m-xapp", "tag": 1.0}}, "/image/tag"),
    ({"xapp": {"settings": {"runtime": "tensorrt"}}}, "/xapp/settings/runtime"),
    ({"xapp": {"settings": {"window_length": 0}}}, "/xapp/settings/window_length"),
    ({"xapp": {"settings": {"http_port": 9000}}}, "http_port"),  # has its own value: ports.http
    ({"ports": {"http": 70000, "grpc": 50051}}, "/ports/http"),
    ({"ports": {"http": "8080", "grpc": 50051}}, "/ports/http"),
    ({"redis": {"deploy": False}}, "/redis/external/host"),
    ({"retraining": {"enabled": True}}, "/bundles/volume/enabled"),
    ({"securityContext": {"runAsUser": 0}}, "/securityContext/runAsUser"),
    ({"descriptor": {"controls": {"actionMode": "always"}}}, "/descriptor/controls/actionMode"),
    ({"descriptor": {"controls": {"intervalCoverage": 1.0}}}, "/descriptor/controls/intervalCoverage"),
    ({"service": {"type": "ExternalName"}}, "/service/type"),
    ({"retraining": {"enabled": False, "schedule": "every night"}}, "/retraining/schedule"),
    ({"replicas": 2}, "replicas"),  # a typo of replicaCount: unknown keys are refused
])
def test_values_schema_rejects_bad_values(chart, bad, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(bad)
    with pytest.raises(helm.HelmValuesError):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)


def test_values_schema_accepts_the_shipped_values(chart):
    for values in value_sets().values():
        chart.validate_schema(values)
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(chart.values)


# -- the xApp Deployment ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", ["default", "external-redis", "all-on"])
def test_deployment_security_probes_and_ports(rendered, values):
    dep = xapp_deployment(rendered[values])
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsUser"] == 10001
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": HTTP_PORT, "grpc": GRPC_PORT}
    assert c["livenessProbe"]["httpGet"] == {"path": "/ric/v1/health/alive", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ric/v1/health/ready", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/ric/v1/health/alive"
    assert c["resources"]["limits"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert c["args"] == ["serve"]
    if values == "all-on":
        assert "replicas" not in dep["spec"]  # the HPA owns the replica count
        assert mounts["/bundles"]["readOnly"] is True
        assert volumes["bundles"]["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-bundles"


@pytest.mark.parametrize("values", ["default", "external-redis", "all-on"])
def test_environment_is_what_the_service_reads(rendered, values, monkeypatch):
    """The Deployment's env, given to the service's own Settings, yields the intended configuration."""
    docs = rendered[values]
    env = container_env(xapp_deployment(docs))
    fields = {f.upper() for f in Settings.model_fields}
    for name in env:
        if name.startswith("MS3M_"):
            assert name.removeprefix("MS3M_") in fields, f"{name} is not a setting of service/config.py"
    for k in list(os.environ):
        if k.startswith(("MS3M_", "DBAAS_")) or k == "CONFIG_FILE":
            monkeypatch.delenv(k)
    for name, e in env.items():
        if "value" in e:
            monkeypatch.setenv(name, e["value"])
        else:  # a Secret reference: the password reaches the service as MS3M_REDIS_PASSWORD
            assert name == "MS3M_REDIS_PASSWORD" and e["valueFrom"]["secretKeyRef"]["key"]
            monkeypatch.setenv(name, "from-secret")
    s = Settings()
    assert (s.http_port, s.grpc_port) == (HTTP_PORT, GRPC_PORT)
    assert [str(p) for p in s.bundles] == ["/bundles/default"]
    assert s.buffer_kind == "redis" and s.redis_port == 6379
    # CONFIG_FILE is the descriptor key of the mounted ConfigMap
    dep = xapp_deployment(docs)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    mount = next(m for m in c["volumeMounts"] if str(s.config_file).startswith(m["mountPath"] + "/"))
    vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    cm = one(docs, "ConfigMap", vol["configMap"]["name"])
    assert s.config_file.name in cm["data"]
    if values == "default":  # Redis deployed alongside
        svc = one(docs, "Service", s.redis_host)
        assert svc["spec"]["ports"][0]["port"] == s.redis_port
        redis = one(docs, "Deployment", s.redis_host)
        assert svc["spec"]["selector"].items() <= redis["spec"]["template"]["metadata"]["labels"].items()
        assert s.redis_password is None
    elif values == "external-redis":
        assert s.redis_host == "service-ricplt-dbaas-tcp.ricplt.svc.cluster.local"
        assert not [d for d in docs if d["metadata"]["name"].endswith("-redis")]
        ref = env["MS3M_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "ms3m-dbaas-auth", "key": "password"}
    else:
        ref = env["MS3M_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        secret = one(docs, "Secret", ref["name"])
        assert ref["key"] in secret["data"]
        redis = one(docs, "Deployment", s.redis_host)
        assert "--requirepass" in redis["spec"]["template"]["spec"]["containers"][0]["args"]
        assert s.max_cells == 1_000_000 and s.ignore_unknown_kpis is True  # numbers stay numbers (no 1e+06)


def test_services_follow_oran_sc_naming(rendered):
    docs = rendered["default"]
    dep = xapp_deployment(docs)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for port, number in (("http", HTTP_PORT), ("grpc", GRPC_PORT)):
        svc = one(docs, "Service", f"service-{NAMESPACE}-{RELEASE}-{port}")
        (p,) = svc["spec"]["ports"]
        assert (p["name"], p["port"], p["targetPort"]) == (port, number, port)
        assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert dep["spec"]["selector"]["matchLabels"] == {"app": f"{NAMESPACE}-{RELEASE}", "release": RELEASE}


def test_long_release_names_stay_within_kubernetes_limits(chart):
    docs = render_named(chart, "a-very-long-release-name-for-the-ms3m-xapp-chart-xyz")
    for d in docs:
        assert len(d["metadata"]["name"]) <= 63, d["metadata"]["name"]
        for v in d["metadata"]["labels"].values():
            assert len(v) <= 63, v


def render_named(chart, release: str) -> list[dict]:
    out = chart.render({}, name=release, namespace=NAMESPACE, is_install=True)
    return [d for p, t in out.items() if p.endswith(".yaml") for d in load_yaml_all(t)]


# -- descriptor ConfigMap, retraining CronJob -------------------------------------------------------------------
def test_chart_descriptor_is_the_deploy_descriptor():
    assert (CHART / "files" / "config-file.json").read_text() == DESCRIPTOR.read_text(), (
        "helm/ms3m-xapp/files/config-file.json must be a copy of deploy/xapp-descriptor/config-file.json "
        "(Helm cannot read files outside the chart): cp deploy/xapp-descriptor/config-file.json "
        "helm/ms3m-xapp/files/")


@pytest.mark.parametrize("values", ["default", "external-redis", "all-on"])
def test_configmap_descriptor_validates_and_carries_the_release_values(rendered, values):
    jsonschema = pytest.importorskip("jsonschema")
    docs = rendered[values]
    cm = one(docs, "ConfigMap")
    desc = json.loads(cm["data"]["config-file.json"])
    jsonschema.Draft7Validator(json.loads(DESCRIPTOR_SCHEMA.read_text())).validate(desc)
    chart_values = value_sets()[values]
    controls = {"actionMode": "recommend", "intervalCoverage": 0.9, "decisionPeriodSamples": 60, "bundles": {},
                **chart_values.get("descriptor", {}).get("controls", {})}
    assert desc["controls"] == controls
    (c,) = xapp_deployment(docs)["spec"]["template"]["spec"]["containers"]
    image = desc["containers"][0]["image"]
    assert c["image"].endswith(f"{image['name']}:{image['tag']}")
    assert desc["containers"][0]["name"] == c["name"] == desc["xapp_name"]
    assert {p["name"]: p["port"] for p in desc["messaging"]["ports"]} == {"http": HTTP_PORT, "grpc": GRPC_PORT}
    assert desc["metrics"] == json.loads(DESCRIPTOR.read_text())["metrics"]


def test_retraining_cronjob_runs_the_trainer_image_on_the_bundles_volume(rendered):
    docs = rendered["external-redis"]
    cron = one(docs, "CronJob")
    assert cron["spec"]["schedule"] == "30 2 * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["image"] == "registry.example.com:5000/ms3m-xapp-trainer:0.1.0"
    assert c["args"][:3] == ["ms3m-train-bundle", "--force", "/bundles/default"]
    args = build_parser().parse_args(["train", *c["args"][3:]])
    assert args.model == "ms3m" and args.steps == 3000
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in vols[mounts["/tmp"]]
    claim = vols[mounts["/bundles"]]["persistentVolumeClaim"]["claimName"]
    dep_vols = {v["name"]: v for v in xapp_deployment(docs)["spec"]["template"]["spec"]["volumes"]}
    assert dep_vols["bundles"]["persistentVolumeClaim"]["claimName"] == claim
    assert one(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
