"""The Helm chart helm/ms3m-xapp: lint, render (default values, values-external-redis.yaml, every option on, the
security options: tokens, TLS, mTLS, cert-manager), validate every manifest against the Kubernetes schemas of a
pinned version, and check that the values schema refuses bad values. The security wiring is checked against the
service itself: the token Secret is parsed by service/api/auth.py, and the mTLS exec probe runs the image's
health check against a live xApp serving mTLS with certificates made like cert-manager's.

Helm itself runs in-process through `helm-python-sdk` (ctypes bindings of the Helm v4 Go SDK: `helm_python.lint`,
`Chart.render`, `Chart.validate_schema`), so no helm binary and no cluster are needed. Manifests are validated
with `kubernetes-validate` in strict mode (unknown fields are errors) against Kubernetes K8S_VERSION.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from service.cli import build_parser
from service.config import Settings
from tests.deploy.conftest import CHART, DEPLOY, DESCRIPTOR, DESCRIPTOR_SCHEMA, K8S_VERSION, load_yaml, load_yaml_all

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


WRITE_TOKEN, READ_TOKEN = "w-0123456789abcdef-write", "r-0123456789abcdef-read"
# tokens in a chart-made Secret, TLS from an existing Secret, mTLS with a separate client CA and probe certificate,
# metrics behind a read token, scraped over mTLS
SECURE = {
    "auth": {"tokens": [{"role": "write", "token": WRITE_TOKEN}, {"role": "read", "token": READ_TOKEN}],
             "reads": True, "metrics": True},
    "tls": {"enabled": True, "existingSecret": "ms3m-server-tls",
            "clientCA": {"enabled": True, "existingSecret": "ms3m-client-ca", "key": "ca.pem",
                         "probeSecret": "ms3m-probe-client"}},
    "serviceMonitor": {"enabled": True, "authorization": {"credentials": {"name": "prom-token", "key": "token"}},
                       "tlsConfig": {"ca": {"secret": {"name": "ms3m-server-tls", "key": "ca.crt"}},
                                     "cert": {"secret": {"name": "prom-client", "key": "tls.crt"}},
                                     "keySecret": {"name": "prom-client", "key": "tls.key"}}},
}
# a cert-manager Certificate, mTLS against its issuer's CA (ca.crt of the same Secret), tokens from an existing
# Secret, the platform's DBAAS over TLS
CERT_MANAGER = {
    "auth": {"existingSecret": "ms3m-tokens", "secretKey": "entries"},
    "tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "ric-ca", "kind": "Issuer"},
                                             "extraDnsNames": ["ms3m.example.com"]},
            "clientCA": {"enabled": True}},
    "redis": {"deploy": False, "external": {"host": "service-ricplt-dbaas-tcp.ricplt", "port": 6379,
                                            "tls": {"enabled": True, "caSecret": "dbaas-ca"}}},
    "serviceMonitor": {"enabled": True, "tlsConfig": {"ca": {"secret": {"name": "ms3m-xapp-tls", "key": "ca.crt"}},
                                                      "cert": {"secret": {"name": "prom-client", "key": "tls.crt"}},
                                                      "keySecret": {"name": "prom-client", "key": "tls.key"}}},
}
VALUE_SETS = ["default", "external-redis", "all-on", "secure", "cert-manager"]


def value_sets() -> dict[str, dict]:
    return {"default": {}, "external-redis": load_yaml(CHART / "values-external-redis.yaml"), "all-on": ALL_ON,
            "secure": SECURE, "cert-manager": CERT_MANAGER}


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


def container(dep: dict) -> dict:
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    return c


def container_env(dep: dict) -> dict[str, dict]:
    c = container(dep)
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names)), f"duplicated env names: {names}"
    return {e["name"]: e for e in c["env"]}


# -- lint and schema validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint(values):
    report = helm.lint(CHART, value_sets()[values] or None, strict=True, namespace=NAMESPACE,
                       kube_version=f"v{K8S_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 warning, 3 error (1 info: "icon ...")
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_manifests_validate_against_kubernetes_schemas(rendered, values):
    docs = rendered[values]
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    for d in docs:
        if d["apiVersion"] == "monitoring.coreos.com/v1":
            # A CRD of the Prometheus Operator: kubernetes-validate ships only built-in Kubernetes kinds.
            check_service_monitor(d)
            continue
        if d["apiVersion"] == "cert-manager.io/v1":  # a CRD too: test_certificate_matches_the_cert_manager_types
            assert d["kind"] == "Certificate" and d["metadata"]["namespace"] == NAMESPACE
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
    assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "tlsConfig", "authorization"}
    assert ep["port"] == "http" and ep["path"] == "/ric/v1/metrics"
    assert ep.get("scheme", "http") in ("http", "https") and ("tlsConfig" in ep) == (ep.get("scheme") == "https")
    if "authorization" in ep:
        assert ep["authorization"]["type"] == "Bearer" and set(ep["authorization"]["credentials"]) == {"name", "key"}
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
@pytest.mark.parametrize("values", VALUE_SETS)
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
    if values in ("secure", "cert-manager"):  # mTLS: exec probes (test_client_ca_switches_the_probes_to_exec)
        assert "httpGet" not in c["livenessProbe"] and "exec" in c["readinessProbe"]
    else:
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


@pytest.mark.parametrize("values", VALUE_SETS)
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
    s = Settings()  # also its checks: TLS certificate and key together, a client CA only with them
    assert (s.http_port, s.grpc_port) == (HTTP_PORT, GRPC_PORT)
    assert s.auth_tokens is None, "tokens only as a mounted file"
    assert (s.auth_tokens_file is not None) == (values in ("secure", "cert-manager"))
    mtls = values in ("secure", "cert-manager")
    assert (s.tls_cert_file is not None, s.tls_client_ca_file is not None) == (mtls, mtls)
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
    elif values == "cert-manager":  # DBAAS over TLS, verified against the mounted CA
        assert s.redis_tls is True and mounted_secret(dep, s.redis_tls_ca_file) == ("dbaas-ca", "ca.crt")
    elif values == "all-on":
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


# -- security: tokens, TLS, mTLS, NetworkPolicy, Redis persistence -----------------------------------------------
def mounted_secret(dep: dict, path) -> tuple[str, str]:
    """(Secret name, key) of the file `path` in the xApp container: a read-only mount of a Secret volume, the
    file either one of its `items` or, for a whole-Secret volume, the key of that name."""
    path = str(path)
    c = container(dep)
    mount = next(m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/"))
    assert mount.get("readOnly") is True, f"{mount['name']} is mounted writable"
    vol = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    secret = vol["secret"]
    assert secret["defaultMode"] == 0o440, f"{mount['name']}: secret files must not be world-readable"
    rel = path[len(mount["mountPath"].rstrip("/")) + 1:]
    if "items" in secret:
        (key,) = [i["key"] for i in secret["items"] if i["path"] == rel]
    else:
        key = rel
    return secret["secretName"], key


def all_env_values(docs: list[dict]) -> list[str]:
    """Every plain env value of every container and init container the manifests run."""
    out = []
    for d in docs:
        spec = d.get("spec", {})
        pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            out += [e["value"] for e in c.get("env", []) if "value" in e]
    return out


def probes(dep: dict) -> dict[str, dict]:
    c = container(dep)
    return {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}


def load_healthcheck():
    """deploy/healthcheck.py as a module (the image installs it as /usr/local/bin/ms3m-healthcheck)."""
    spec = importlib.util.spec_from_file_location("ms3m_healthcheck", DEPLOY / "healthcheck.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_default_render_has_a_network_policy_and_durable_redis(rendered):
    docs = rendered["default"]
    dep = xapp_deployment(docs)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    redis = one(docs, "Deployment", f"{RELEASE}-redis")
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    # the xApp: ingress only from the configured peers, per port; egress only to its Redis and DNS
    np = one(docs, "NetworkPolicy", RELEASE)
    assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert not np["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    ingress = {r["ports"][0]["port"]: r for r in np["spec"]["ingress"]}
    assert all(r["from"] for r in np["spec"]["ingress"]), "a rule without `from` admits every peer"
    rules = [(r["ports"], r["from"]) for r in np["spec"]["ingress"]]
    ricplt = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ricplt"}}}
    assert ([{"port": "http", "protocol": "TCP"}], [ricplt]) in rules
    assert ingress["grpc"]["from"] == [{**ricplt, "podSelector": {"matchLabels": {"app": "ricplt-e2term-alpha"}}}]
    prometheus = [f for p, f in rules if p == [{"port": "http", "protocol": "TCP"}] and f != [ricplt]]
    assert prometheus and prometheus[0][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert {p["port"] for r in np["spec"]["ingress"] for p in r["ports"]} == {"http", "grpc"}
    assert all(r["to"] for r in np["spec"]["egress"]), "a rule without `to` lets out to anywhere"
    egress = {(p["port"], p["protocol"]): r["to"] for r in np["spec"]["egress"] for p in r["ports"]}
    assert set(egress) == {(6379, "TCP"), (53, "UDP"), (53, "TCP")}
    (to_redis,) = egress[(6379, "TCP")]
    assert to_redis["podSelector"]["matchLabels"].items() <= redis_labels.items()
    assert egress[(53, "UDP")][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    # the chart's Redis: only the xApp pods may connect, and it connects nowhere
    rnp = one(docs, "NetworkPolicy", f"{RELEASE}-redis")
    assert rnp["spec"]["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = rnp["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}] and rnp["spec"]["egress"] == []
    # Redis keeps an append-only file, fsynced before each reply, in /data on a PersistentVolumeClaim
    (rc,) = redis["spec"]["template"]["spec"]["containers"]
    args = rc["args"]
    assert args[args.index("--appendonly") + 1] == "yes" and args[args.index("--appendfsync") + 1] == "always"
    data = next(m for m in rc["volumeMounts"] if m["mountPath"] == args[args.index("--dir") + 1])
    vol = next(v for v in redis["spec"]["template"]["spec"]["volumes"] if v["name"] == data["name"])
    pvc = one(docs, "PersistentVolumeClaim", vol["persistentVolumeClaim"]["claimName"])
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and redis["spec"]["strategy"]["type"] == "Recreate"
    assert load_yaml(CHART / "values.yaml")["redis"]["appendfsync"] == "always"


def test_redis_fsync_and_volume_follow_the_values(chart):
    docs = render(chart, {"redis": {"appendfsync": "everysec", "persistence": {"enabled": False}}})
    redis = one(docs, "Deployment", f"{RELEASE}-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendfsync") + 1] == "everysec"
    (vol,) = redis["spec"]["template"]["spec"]["volumes"]
    assert "emptyDir" in vol and not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


def test_network_policy_peers_external_redis_and_empty_lists(chart):
    """An empty peer list leaves its rule out (allowing nothing), never renders a rule that admits everyone;
    an external Redis is reached on its port at the configured peers; the policy can be switched off."""
    dbaas = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ricplt"}},
              "podSelector": {"matchLabels": {"app": "ricplt-dbaas"}}}]
    values = {"redis": {"deploy": False, "external": {"host": "dbaas.ricplt", "port": 6380}},
              "networkPolicy": {"enabled": True, "ingress": {"grpc": [], "metrics": []},
                                "egress": {"dns": [], "externalRedis": dbaas},
                                "extraIngress": [{"from": [{"podSelector": {"matchLabels": {"app": "probe"}}}],
                                                  "ports": [{"port": 9999, "protocol": "TCP"}]}]}}
    docs = render(chart, values)
    (np,) = [d for d in docs if d["kind"] == "NetworkPolicy"]  # no Redis of the chart, no policy for it
    kv.validate(np, K8S_VERSION, strict=True)
    ports = [p["port"] for r in np["spec"]["ingress"] for p in r["ports"]]
    assert sorted(ports, key=str) == sorted(["http", 9999], key=str)
    assert all(r.get("from") for r in np["spec"]["ingress"]) and all(r.get("to") for r in np["spec"]["egress"])
    (redis_rule,) = np["spec"]["egress"]  # no DNS rule: dns: []
    assert redis_rule == {"to": dbaas, "ports": [{"port": 6380, "protocol": "TCP"}]}
    nothing_in = render(chart, {"networkPolicy": {"enabled": True, "ingress": {"http": [], "grpc": [],
                                                                                "metrics": []}}})
    assert one(nothing_in, "NetworkPolicy", RELEASE)["spec"]["ingress"] == []  # isolated: nothing may connect
    off = render(chart, {"networkPolicy": {"enabled": False}})
    assert not [d for d in off if d["kind"] == "NetworkPolicy"]


def test_auth_tokens_are_a_secret_file_the_service_reads(rendered, chart, tmp_path):
    from service.api.auth import load_token_auth

    docs = rendered["secure"]
    dep = xapp_deployment(docs)
    env = container_env(dep)
    assert "MS3M_AUTH_TOKENS" not in env
    name, key = mounted_secret(dep, env["MS3M_AUTH_TOKENS_FILE"]["value"])
    secret = one(docs, "Secret", name)
    assert secret["type"] == "Opaque" and set(secret["data"]) == {key}
    text = base64.b64decode(secret["data"][key]).decode()
    (tmp_path / key).write_text(text)
    auth = load_token_auth(None, tmp_path / key)  # the service's own parser
    assert (auth.role_of(WRITE_TOKEN), auth.role_of(READ_TOKEN), auth.role_of("x" * 20)) == ("write", "read", None)
    assert (env["MS3M_AUTH_READS"]["value"], env["MS3M_AUTH_METRICS"]["value"]) == ("true", "true")
    for value in all_env_values(docs):  # no token in any env value, nor anywhere outside its Secret
        assert WRITE_TOKEN not in value and READ_TOKEN not in value
    for d in docs:
        if d is not secret:
            assert WRITE_TOKEN not in json.dumps(d) and READ_TOKEN not in json.dumps(d), d["kind"]
    # the pod rolls when the chart-made tokens change (the xApp reads them at start)
    annotation = dep["spec"]["template"]["metadata"]["annotations"]["checksum/auth-secret"]
    rotated = {**SECURE, "auth": {**SECURE["auth"], "tokens": [{"role": "write", "token": "another-write-token-1"}]}}
    assert xapp_deployment(render(chart, rotated))["spec"]["template"]["metadata"]["annotations"][
        "checksum/auth-secret"] != annotation
    # an existing Secret: mounted the same way, none rendered
    docs = rendered["cert-manager"]
    dep = xapp_deployment(docs)
    assert mounted_secret(dep, container_env(dep)["MS3M_AUTH_TOKENS_FILE"]["value"]) == ("ms3m-tokens", "entries")
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert "checksum/auth-secret" not in dep["spec"]["template"]["metadata"].get("annotations", {})
    # no token: authentication off, nothing mounted
    env = container_env(xapp_deployment(rendered["default"]))
    assert "MS3M_AUTH_TOKENS_FILE" not in env and env["MS3M_AUTH_READS"]["value"] == "false"


def test_tls_existing_secret_renders_env_mounts_and_https_probes(chart):
    docs = render(chart, {"tls": {"enabled": True, "existingSecret": "ms3m-server-tls"}})
    dep = xapp_deployment(docs)
    env = container_env(dep)
    assert mounted_secret(dep, env["MS3M_TLS_CERT_FILE"]["value"]) == ("ms3m-server-tls", "tls.crt")
    assert mounted_secret(dep, env["MS3M_TLS_KEY_FILE"]["value"]) == ("ms3m-server-tls", "tls.key")
    assert "MS3M_TLS_CLIENT_CA_FILE" not in env
    for name, probe in probes(dep).items():  # the kubelet probes over HTTPS (it does not verify certificates)
        assert probe["httpGet"]["scheme"] == "HTTPS" and probe["httpGet"]["port"] == "http", name
    assert probes(dep)["readinessProbe"]["httpGet"]["path"] == "/ric/v1/health/ready"
    assert not [d for d in docs if d["kind"] == "Certificate"]
    for d in docs:
        if d["apiVersion"] != "monitoring.coreos.com/v1":
            kv.validate(d, K8S_VERSION, strict=True)


@pytest.mark.parametrize("values, cert, ca", [
    ("secure", ("ms3m-probe-client", "tls.crt"), ("ms3m-client-ca", "ca.pem")),  # dedicated probe certificate
    ("cert-manager", ("ms3m-xapp-tls", "tls.crt"), ("ms3m-xapp-tls", "ca.crt")),  # the pod's own certificate
])
def test_client_ca_switches_the_probes_to_exec(rendered, values, cert, ca):
    dep = xapp_deployment(rendered[values])
    env = container_env(dep)
    assert mounted_secret(dep, env["MS3M_TLS_CLIENT_CA_FILE"]["value"]) == ca
    hc = load_healthcheck()
    for name, probe in probes(dep).items():
        assert set(probe) - {"initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"} == \
            {"exec"}, name
        cmd = probe["exec"]["command"]
        assert cmd[:2] == ["python", "/usr/local/bin/ms3m-healthcheck"]  # the Dockerfile's copy of healthcheck.py
        args = hc.parse_args(cmd[2:])
        assert args.tls and args.port == HTTP_PORT
        assert args.path == ("/ric/v1/health/ready" if name == "readinessProbe" else "/ric/v1/health/alive")
        assert mounted_secret(dep, args.cert) == cert and mounted_secret(dep, args.key) == (cert[0], "tls.key")


def test_cert_manager_certificate_names_the_services(rendered):
    docs = rendered["cert-manager"]
    cert = one(docs, "Certificate")
    spec = cert["spec"]
    dep = xapp_deployment(docs)
    env = container_env(dep)
    assert mounted_secret(dep, env["MS3M_TLS_CERT_FILE"]["value"]) == (spec["secretName"], "tls.crt")
    for svc in (d for d in docs if d["kind"] == "Service"):  # every name a client may dial the Services by
        name, ns = svc["metadata"]["name"], svc["metadata"]["namespace"]
        assert {name, f"{name}.{ns}", f"{name}.{ns}.svc", f"{name}.{ns}.svc.cluster.local"} <= set(spec["dnsNames"])
    assert "ms3m.example.com" in spec["dnsNames"] and len(spec["dnsNames"]) == len(set(spec["dnsNames"]))
    assert all(len(label) <= 63 for n in spec["dnsNames"] for label in n.split("."))
    assert spec["issuerRef"] == {"name": "ric-ca", "kind": "Issuer", "group": "cert-manager.io"}
    # `client auth`: under mTLS the exec probes present this certificate to the xApp
    assert {"server auth", "client auth", "digital signature"} <= set(spec["usages"])
    assert spec["privateKey"] == {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"}
    # the ServiceMonitor verifies the name it dials
    sm = one(docs, "ServiceMonitor")
    (ep,) = sm["spec"]["endpoints"]
    assert ep["scheme"] == "https" and ep["tlsConfig"]["cert"]["secret"]["name"] == "prom-client"


def test_service_monitor_over_tls_verifies_the_http_service_by_default(chart):
    values = {"tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "ric-ca"}}},
              "serviceMonitor": {"enabled": True}}
    docs = render(chart, values)
    (ep,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    cert = one(docs, "Certificate")["spec"]
    assert ep["scheme"] == "https" and ep["tlsConfig"]["ca"] == {"secret": {"name": cert["secretName"],
                                                                           "key": "ca.crt"}}
    assert ep["tlsConfig"]["serverName"] in cert["dnsNames"]
    assert ep["tlsConfig"]["serverName"].startswith(f"service-{NAMESPACE}-{RELEASE}-http.")
    assert "authorization" not in ep


# -- the mTLS exec probe against a live xApp -----------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ec_cert(d: Path, name: str, ca: str, ext: str) -> None:
    """`name`.crt / .key: an ECDSA P-256 certificate signed by `ca` with the X.509 extensions `ext`."""
    (d / f"{name}.ext").write_text(ext)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def secret_dir(tmp_path_factory) -> Path:
    """The TLS Secret as cert-manager writes it for the chart's Certificate (tls.crt with `server auth` and
    `client auth`, tls.key, ca.crt of the issuing CA), plus a certificate of another CA and one of the right CA
    for `server auth` only."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make test certificates")
    d = tmp_path_factory.mktemp("tls-secret")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                 "-subj", f"/CN={ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    san = f"subjectAltName=DNS:service-{NAMESPACE}-{RELEASE}-http.{NAMESPACE}.svc\nkeyUsage=digitalSignature\n"
    _ec_cert(d, "tls", "ca", san + "extendedKeyUsage=serverAuth,clientAuth\n")
    _ec_cert(d, "server-only", "ca", san + "extendedKeyUsage=serverAuth\n")
    _ec_cert(d, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth\n")
    shutil.copy(d / "ca.crt", d / "ca.pem")
    return d


async def _exec(cmd: list[str]) -> tuple[int, str]:
    """Run a probe command as the kubelet's exec does: a process; its exit status and stderr."""
    proc = await asyncio.create_subprocess_exec(*cmd, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode, err.decode()


async def _in_process(hc, argv: list[str]) -> tuple[int, str]:
    """The same health check's main(argv) in a thread (the xApp serves on this event loop): status, stderr."""
    err = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stderr(err):
            return hc.main(argv)

    return await asyncio.to_thread(run), err.getvalue()


async def test_mtls_exec_probe_passes_against_a_live_xapp(rendered, secret_dir):
    """The rendered exec probe, run as the kubelet would (paths of the pod mapped to the test's copy of the
    Secret), passes against an xApp serving mTLS configured from the rendered env; an untrusted or server-only
    client certificate fails it, as does presenting none."""
    from tests.service.helpers import running_xapp

    dep = xapp_deployment(rendered["cert-manager"])
    env = {k: e["value"] for k, e in container_env(dep).items() if "value" in e}
    pod_dir = str(Path(env["MS3M_TLS_CERT_FILE"]).parent)

    def local(path: str) -> str:
        assert path.startswith(pod_dir + "/")
        return str(secret_dir / Path(path).name)

    tls = {"tls_cert_file": local(env["MS3M_TLS_CERT_FILE"]), "tls_key_file": local(env["MS3M_TLS_KEY_FILE"]),
           "tls_client_ca_file": local(env["MS3M_TLS_CLIENT_CA_FILE"])}
    probe, hc = probes(dep), load_healthcheck()
    async with running_xapp([], **tls) as xapp:  # no bundle: alive, not ready

        def argv(name: str, **swap: str) -> list[str]:
            """The probe's arguments, pod paths mapped to the test's files, its port to the live xApp's."""
            out = [local(a) if a.startswith(pod_dir + "/") else a for a in probe[name]["exec"]["command"][2:]]
            out[out.index("--port") + 1] = str(xapp.http_port)
            for flag, file in swap.items():
                out[out.index(f"--{flag}") + 1] = str(secret_dir / file)
            return out

        rc, err = await _exec([sys.executable, str(DEPLOY / "healthcheck.py"), *argv("livenessProbe")])
        assert rc == 0, err
        rc, err = await _in_process(hc, argv("readinessProbe"))  # through mTLS to the app: not ready, no bundle
        assert rc == 1 and "HTTP 503" in err
        rc, err = await _in_process(hc, [*argv("livenessProbe"), "--ca", str(secret_dir / "ca.crt")])
        assert rc == 0, err  # the server's chain verified too
        for cert in ("rogue", "server-only"):  # another CA; the right CA without `client auth`
            rc, err = await _in_process(hc, argv("livenessProbe", cert=f"{cert}.crt", key=f"{cert}.key"))
            assert rc == 1 and err, cert
        live = argv("livenessProbe")
        no_cert = [a for i, a in enumerate(live) if a not in ("--cert", "--key") and live[i - 1] not in
                   ("--cert", "--key")]
        rc, err = await _in_process(hc, no_cert)
        assert rc == 1 and err
        rc, err = await _in_process(hc, [*live, "--ca", str(secret_dir / "rogue-ca.crt")])
        assert rc == 1 and "CERTIFICATE_VERIFY_FAILED" in err  # --ca does verify the server


# -- the Certificate against cert-manager's API types -------------------------------------------------------------
CERT_MANAGER_MODELS, TYPESCRIPT = "6.0.0", "5.8.3"


def cert_manager_types() -> Path:
    """A folder with TypeScript and @kubernetes-models/cert-manager (cert-manager's CRD types: every field, its
    type and enums) from npm, cached under $XDG_CACHE_HOME/ms3m; skips the test when npm is unavailable."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("needs npm (Node.js) to fetch @kubernetes-models/cert-manager and TypeScript")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ms3m" / \
        f"cert-manager-models-{CERT_MANAGER_MODELS}"
    if not ((cache / "node_modules" / ".bin" / "tsc").exists()
            and (cache / "node_modules" / "@kubernetes-models" / "cert-manager").is_dir()):
        cache.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--silent",
                              f"typescript@{TYPESCRIPT}", f"@kubernetes-models/cert-manager@{CERT_MANAGER_MODELS}"],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.skip(f"could not install @kubernetes-models/cert-manager from npm: {out.stderr.strip()[-300:]}")
    return cache


def typecheck_certificates(checker: Path, certs: dict[str, dict]) -> dict[str, str]:
    """Type-check each Certificate as an object literal of cert-manager's ICertificate (unknown fields, wrong types
    and values outside an enum, such as usages or key algorithms, are errors), all in one tsc run: name -> errors."""
    tag = uuid.uuid4().hex[:8]
    files = {name: checker / f"cert-{name}-{tag}.ts" for name in certs}
    for name, cert in certs.items():
        files[name].write_text('import type { ICertificate } from "@kubernetes-models/cert-manager/cert-manager.io/'
                               f'v1/Certificate";\nexport const certificate: ICertificate = '
                               f"{json.dumps(cert, indent=1)};\n")
    try:
        out = subprocess.run([str(checker / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict",
                              "--skipLibCheck", "--moduleResolution", "bundler", "--module", "esnext", "--target",
                              "es2020", *map(str, files.values())], capture_output=True, text=True, timeout=300,
                             cwd=checker)
    finally:
        for f in files.values():
            f.unlink(missing_ok=True)
    assert out.returncode == 0 or out.stdout, out.stderr
    return {name: "\n".join(line for line in out.stdout.splitlines() if f.name in line) for name, f in files.items()}


@pytest.mark.slow  # tsc: about 8 s on a shared 2-core machine (and the npm install once)
def test_certificate_matches_the_cert_manager_types(chart):
    rsa = {**CERT_MANAGER, "tls": {**CERT_MANAGER["tls"], "certManager": {
        **CERT_MANAGER["tls"]["certManager"], "privateKey": {"algorithm": "RSA", "size": 3072}}}}
    ecdsa, rsa = (one(render(chart, v), "Certificate") for v in (CERT_MANAGER, rsa))
    assert "key encipherment" in rsa["spec"]["usages"] and "key encipherment" not in ecdsa["spec"]["usages"]
    broken = json.loads(json.dumps(ecdsa))
    broken["spec"]["dnsName"] = broken["spec"].pop("dnsNames")  # a misspelt field: the check must bite
    errors = typecheck_certificates(cert_manager_types(), {"ecdsa": ecdsa, "rsa": rsa, "broken": broken})
    assert errors["ecdsa"] == "" and errors["rsa"] == "", f"not a cert-manager v1 Certificate: {errors}"
    assert "dnsName" in errors["broken"] and "does not exist in type 'ICertificateSpec'" in errors["broken"]


# -- bad security values ---------------------------------------------------------------------------------------------
TOKEN = {"role": "write", "token": WRITE_TOKEN}


@pytest.mark.parametrize("bad, where", [
    ({"redis": {"deploy": True, "appendfsync": "no"}}, "/redis/appendfsync"),  # would break the ack promise
    ({"redis": {"deploy": True, "persistence": {"enabled": True, "claim": "x"}}}, "/redis/persistence"),
    ({"auth": {"tokens": [{"role": "write", "token": "short"}]}}, "/auth/tokens/0/token"),
    ({"auth": {"tokens": [{"role": "admin", "token": WRITE_TOKEN}]}}, "/auth/tokens/0/role"),
    ({"auth": {"tokens": [{"role": "write", "token": "has a space in it!"}]}}, "/auth/tokens/0/token"),
    ({"auth": {"tokens": [TOKEN], "existingSecret": "tokens"}}, "/auth/tokens"),  # which one?
    ({"auth": {"reads": True}}, "/auth/tokens': minItems"),  # protects nothing without a token
    ({"auth": {"token": WRITE_TOKEN}}, "additional properties 'token'"),
    ({"xapp": {"settings": {"auth_tokens": f"write:{WRITE_TOKEN}"}}}, "auth_tokens"),  # a token as plain env
    ({"xapp": {"settings": {"tls_cert_file": "/x.pem"}}}, "tls_cert_file"),
    ({"xapp": {"settings": {}, "extraEnv": [{"name": "MS3M_AUTH_TOKENS", "value": f"write:{WRITE_TOKEN}"}]}},
     "/xapp/extraEnv/0"),
    ({"tls": {"enabled": True}}, "/tls/existingSecret': minLength"),  # no certificate
    ({"tls": {"enabled": True, "existingSecret": "s", "certManager": {"enabled": True,
                                                                      "issuerRef": {"name": "ca"}}}},
     "/tls/certManager/enabled': value must be false"),  # which one?
    ({"tls": {"enabled": True, "certManager": {"enabled": True}}}, "/tls/certManager/issuerRef/name"),  # no issuer
    ({"tls": {"enabled": True, "certManager": {"enabled": True, "issuerRef": {"name": "ca"},
                                               "privateKey": {"algorithm": "ECDSA", "size": 2048}}}},
     "/tls/certManager/privateKey/size"),
    ({"tls": {"enabled": False, "clientCA": {"enabled": True}}}, "/tls/enabled"),  # mTLS needs TLS
    ({"tls": {"enabled": True, "existingSecret": "Not_A_Name"}}, "/tls/existingSecret"),
    ({"networkPolicy": {"enabled": "yes"}}, "/networkPolicy/enabled"),
    ({"networkPolicy": {"enabled": True, "ingress": {"http": [{}]}}}, "/networkPolicy/ingress/http/0"),
    ({"networkPolicy": {"enabled": True, "ingress": {"grpc": [{"podSelectr": {}}]}}},
     "/networkPolicy/ingress/grpc/0"),
    ({"networkPolicy": {"enabled": True, "ingress": {"http": [{"ipBlock": {"cidr": "10.0.0.0/8"},
                                                               "podSelector": {}}]}}},
     "/networkPolicy/ingress/http/0"),
    ({"networkPolicy": {"enabled": True, "ingres": {}}}, "/networkPolicy"),
    ({"serviceMonitor": {"enabled": True}, "auth": {"tokens": [TOKEN], "metrics": True}},
     "/serviceMonitor/authorization"),  # Prometheus would get 401s
    ({"serviceMonitor": {"enabled": True}, "tls": {"enabled": True, "existingSecret": "s",
                                                    "clientCA": {"enabled": True}}},
     "/serviceMonitor/tlsConfig': missing properties 'cert', 'keySecret'"),  # no client certificate to scrape
    ({"redis": {"deploy": True, "external": {"tls": {"enabled": True, "ca": "x"}}}}, "/redis/external/tls"),
])
def test_values_schema_rejects_bad_security_values(chart, bad, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(bad)
    with pytest.raises(helm.HelmValuesError):
        chart.render(bad, name=RELEASE, namespace=NAMESPACE)
