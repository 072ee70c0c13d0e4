"""docker-compose demo: the Compose file against the Compose Specification schema, the wiring between its
services, Prometheus and Grafana provisioning, and the dashboard's queries against a live xApp's /metrics.

The Compose Specification JSON schema comes from the `check-jsonschema` package (its vendored copy of
compose-spec/compose-spec schema/compose-spec.json, Apache-2.0), so nothing is vendored here.
"""

from __future__ import annotations

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
from tests.deploy.conftest import DEPLOY, REPO, load_yaml

COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ms3m.json"
HTTP_PORT = Settings.model_fields["http_port"].default
GRPC_PORT = Settings.model_fields["grpc_port"].default


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


def interpolate(value: str) -> str:
    """Compose `${VAR:-default}` with the variables unset."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value)


def command(service: dict) -> list[str]:
    return [interpolate(str(a)) for a in service["command"]]


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("check_jsonschema", reason="needs check-jsonschema (dev extra): it ships the Compose schema")
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
                           str(path)], capture_output=True, text=True, timeout=120)


# -- the Compose file ------------------------------------------------------------------------------------------
def test_compose_file_matches_the_compose_specification():
    r = check_compose_schema(COMPOSE)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_schema_check_rejects_a_broken_file(tmp_path):
    broken = COMPOSE.read_text().replace("    depends_on:\n", "    depend_on:\n", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    r = check_compose_schema(tmp_path / "docker-compose.yml")
    assert r.returncode != 0 and "depend_on" in r.stdout + r.stderr


def test_services_and_build_targets(compose):
    services = compose["services"]
    assert {"redis", "trainer", "xapp", "simulator", "replayer", "prometheus", "grafana"} <= set(services)
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (REPO / "Dockerfile").read_text(), flags=re.M | re.I)
    for name in ("xapp", "simulator"):
        assert services[name]["build"]["target"] == "serve" and services[name]["image"] == "ms3m-xapp:local"
    for name in ("trainer", "replayer"):
        assert services[name]["build"]["target"] == "trainer"
    for svc in services.values():
        if "build" in svc:
            assert svc["build"]["target"] in stages and svc["build"]["context"] == "."
    assert services["replayer"]["profiles"] == ["replay"]


def test_redis_is_durable_and_healthchecked(compose):
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert "redis-cli" in redis["healthcheck"]["test"] and any(v.endswith(":/data") for v in redis["volumes"])


def test_trainer_writes_the_bundle_the_xapp_loads(compose):
    services = compose["services"]
    cmd = command(services["trainer"])
    assert cmd[0] == "ms3m-train-bundle" and (REPO / "deploy" / "train-bundle.sh").is_file()
    bundle, train_args = cmd[1], cmd[2:]
    args = build_parser().parse_args(["train", *train_args])  # the options `ms3m train` gets
    assert (args.model, args.data) == ("ms3m", "synthetic") and args.steps > 0
    assert json.loads(services["xapp"]["environment"]["MS3M_BUNDLES"]) == [bundle]
    assert "bundles:/bundles" in services["trainer"]["volumes"]
    assert "bundles:/bundles:ro" in services["xapp"]["volumes"] and "bundles" in compose["volumes"]
    assert services["trainer"]["restart"] == "no"


def test_xapp_service(compose):
    services = compose["services"]
    xapp = services["xapp"]
    assert xapp["depends_on"] == {"trainer": {"condition": "service_completed_successfully"},
                                  "redis": {"condition": "service_healthy"}}
    env = xapp["environment"]
    assert env["DBAAS_SERVICE_HOST"] == "redis" and env["DBAAS_SERVICE_PORT"] == "6379"
    assert sorted(xapp["ports"]) == sorted([f"{HTTP_PORT}:{HTTP_PORT}", f"{GRPC_PORT}:{GRPC_PORT}"])
    assert xapp["read_only"] is True and xapp["tmpfs"] == ["/tmp"] and xapp["cap_drop"] == ["ALL"]
    # CONFIG_FILE is the mounted descriptor
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in xapp["volumes"] if v.startswith("./"))
    assert mounts["./deploy/xapp-descriptor/config-file.json"] == env["CONFIG_FILE"]
    # the settings the environment gives parse (pydantic-settings, as the service reads them)
    s = Settings(**{"redis_host": env["DBAAS_SERVICE_HOST"], "redis_port": env["DBAAS_SERVICE_PORT"],
                    "bundles": json.loads(env["MS3M_BUNDLES"]), "config_file": env["CONFIG_FILE"],
                    "log_level": env["MS3M_LOG_LEVEL"]})
    assert s.buffer_kind == "redis"


def test_load_generators_target_the_xapp(compose):
    services = compose["services"]
    sim = services["simulator"]
    assert sim["depends_on"] == {"xapp": {"condition": "service_healthy"}}
    assert sim["healthcheck"] == {"disable": True}, "the serve image's HEALTHCHECK probes the xApp's own port"
    args = build_parser().parse_args(command(sim))
    assert args.target == f"xapp:{GRPC_PORT}" and args.cells >= 1
    rep = build_parser().parse_args(command(services["replayer"]))
    assert rep.target == f"xapp:{GRPC_PORT}" and rep.root == "/data/irish-5g"
    assert any(v.endswith(":/data/irish-5g:ro") for v in services["replayer"]["volumes"])


def test_bind_mounts_exist(compose):
    for name, svc in compose["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":", 1)[0]
            if src.startswith("./"):
                assert (REPO / src).exists(), f"{name}: bind mount source {src} is missing"


# -- Prometheus ------------------------------------------------------------------------------------------------
def test_prometheus_scrapes_the_xapp_every_5s(compose, live_service):
    prom = load_yaml(PROMETHEUS)
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "ms3m-xapp"]
    assert job.get("scrape_interval", prom["global"]["scrape_interval"]) == "5s"
    assert job["metrics_path"] in live_service.routes
    (target,) = [t for sc in job["static_configs"] for t in sc["targets"]]
    host, port = target.split(":")
    assert host in compose["services"] and f"{port}:{port}" in compose["services"][host]["ports"]
    assert int(port) == HTTP_PORT
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in \
        compose["services"]["prometheus"]["volumes"]


# -- Grafana ---------------------------------------------------------------------------------------------------
def test_grafana_provisioning(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    (ds,) = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    (provider,) = load_yaml(GRAFANA / "provisioning" / "dashboards" / "ms3m.yml")["providers"]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == provider["options"]["path"] + "/" + DASHBOARD.name
    dash = json.loads(DASHBOARD.read_text())
    for panel in all_panels(dash):
        if panel["type"] not in ("row", "text"):
            assert panel["datasource"]["uid"] == ds["uid"], panel["title"]
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == ds["uid"], panel["title"]


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out += p.get("panels", [])
    return out


def dashboard_queries(dash: dict) -> list[tuple[str, str, str]]:
    """(panel title, PromQL expression, legend format) of every query, template variables included."""
    out = [(p["title"], t["expr"], t.get("legendFormat", "")) for p in all_panels(dash) for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        out.append((f"variable {var['name']}", q["query"] if isinstance(q, dict) else q, ""))
    return out


def test_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "ms3m-xapp" and dash["refresh"] == "5s"
    assert "/v1/cells/{id}/forecast" in dash["description"]
    panels = all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    text = [p for p in panels if p["type"] == "text"]
    assert any("/v1/cells/" in p["options"]["content"] and "curl" in p["options"]["content"] for p in text)
    used = " ".join(e for _, e, _ in dashboard_queries(dash))
    for metric in ("ms3m_ingest_samples_total", "ms3m_step_latency_seconds_bucket",
                   "ms3m_ingest_to_forecast_seconds_bucket", "ms3m_active_cells", "ms3m_forecast_mae",
                   "ms3m_forecast_interval_coverage", "ms3m_expert_routing_share", "ms3m_expert_active_cells",
                   "ms3m_actions_total", "ms3m_ingest_rejected_total", "ms3m_redis_errors_total",
                   "ms3m_engine_dropped_total"):
        assert metric in used, f"the dashboard has no panel on {metric}"
    assert "histogram_quantile(0.99" in used and "histogram_quantile(0.5" in used


def test_dashboard_queries_name_only_exported_metrics_and_labels(live_service):
    """Every metric a dashboard query names is one the running xApp exports, with the labels it uses."""
    dash = json.loads(DASHBOARD.read_text())
    for title, expr, legend in dashboard_queries(dash):
        names = set(re.findall(r"\bms3m_[a-zA-Z0-9_]+", expr))
        assert names, f"{title}: no ms3m_ metric in {expr!r}"
        families = {}
        for n in names:
            fam = live_service.family(n)
            assert fam is not None, f"{title}: {n} is not exported by the xApp (/metrics)"
            families[n] = fam
        known = set().union(*(live_service.labels[f] for f in families.values()))
        for n, matchers in re.findall(r"\b(ms3m_[a-zA-Z0-9_]+)\{([^}]*)\}", expr):
            for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", matchers):
                assert label in live_service.labels[families[n]], f"{title}: {n} has no label {label!r}"
        for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            for label in filter(None, (s.strip() for s in group.split(","))):
                if label == "le":
                    assert any(n.endswith("_bucket") for n in names), f"{title}: `le` without a histogram"
                else:
                    assert label in known, f"{title}: aggregation by unknown label {label!r}"
        for label in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend):
            assert label in known, f"{title}: legend uses unknown label {label!r}"
        if "label_values(" in expr:
            metric, label = re.search(r"label_values\((\w+),\s*(\w+)\)", expr).groups()
            assert label in live_service.labels[families[metric]]


def _selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(series name, [(label, op, value)]) of every `ms3m_…{…}` selector in a PromQL expression."""
    out = []
    for name, body in re.findall(r"\b(ms3m_[a-zA-Z0-9_]+)(?:\{([^}]*)\})?", expr):
        matchers = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', body or "")
        out.append((name, matchers))
    return out


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for label, op, value in matchers:
        if "$" in value:  # a dashboard variable: any value Grafana could substitute
            continue
        have = labels.get(label, "")
        full = re.fullmatch(value, have) is not None if op in ("=~", "!~") else have == value
        if full != (op in ("=", "=~")):
            return False
    return True


def test_every_dashboard_query_returns_data_from_a_live_xapp(live_service):
    """Each selector of each panel matches at least one series the running xApp exports (Grafana would show
    "No data" otherwise, e.g. for a labelled counter whose labels were never initialized)."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, list[dict[str, str]]] = {}
    for fam in text_string_to_metric_families(live_service.text):
        for s in fam.samples:
            samples.setdefault(s.name, []).append(s.labels)
    dash = json.loads(DASHBOARD.read_text())
    empty = [(title, name, matchers) for title, expr, _ in dashboard_queries(dash)
             for name, matchers in _selectors(expr)
             if not any(_matches(labels, matchers) for labels in samples.get(name, []))]
    assert not empty, f"queries with no data on a live xApp: {empty}"


# -- the dashboard against Grafana's own schema ------------------------------------------------------------------
TYPESCRIPT = "5.8.3"


def grafana_schema_checker(version: str) -> Path:
    """A folder with TypeScript and `@grafana/schema` of the Grafana `version` compose pins (npm, cached under
    $XDG_CACHE_HOME/ms3m); skips the test with the reason when npm or its registry is unavailable."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("needs npm (Node.js) to fetch @grafana/schema and TypeScript for the dashboard schema check")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ms3m" / f"grafana-schema-{version}"
    tsc = cache / "node_modules" / ".bin" / "tsc"
    if not (tsc.exists() and (cache / "node_modules" / "@grafana" / "schema").is_dir()):
        cache.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--silent",
                              f"typescript@{TYPESCRIPT}", f"@grafana/schema@{version}"],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.skip(f"could not install @grafana/schema@{version} from npm: {out.stderr.strip()[-300:]}")
    return cache


def typecheck_dashboard(checker: Path, dash: dict, name: str) -> subprocess.CompletedProcess:
    """Type-check the dashboard as an object literal of Grafana's `Dashboard` type: unknown properties, wrong
    types and wrong enum / literal values are errors."""
    src = checker / f"{name}.ts"
    src.write_text('import type { Dashboard } from "@grafana/schema/dist/esm/raw/dashboard/x/dashboard_types.gen";\n'
                   f"export const dashboard: Dashboard = {json.dumps(dash, indent=1)};\n")
    try:
        return subprocess.run([str(checker / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict",
                               "--skipLibCheck", "--moduleResolution", "node", "--target", "es2020", str(src)],
                              capture_output=True, text=True, timeout=300, cwd=checker)
    finally:
        src.unlink(missing_ok=True)


def test_dashboard_matches_the_schema_of_the_pinned_grafana(compose):
    image = compose["services"]["grafana"]["image"]
    version = re.fullmatch(r"grafana/grafana:(\d+\.\d+\.\d+)", image).group(1)
    checker = grafana_schema_checker(version)
    dash = json.loads(DASHBOARD.read_text())
    ok = typecheck_dashboard(checker, dash, f"ms3m-{uuid.uuid4().hex[:8]}")
    assert ok.returncode == 0, f"the dashboard does not match Grafana {version}'s schema:\n{ok.stdout}{ok.stderr}"
    broken = json.loads(DASHBOARD.read_text())
    broken["panels"][0]["gridPoss"] = broken["panels"][0].pop("gridPos")  # a misspelt field: the check must bite
    bad = typecheck_dashboard(checker, broken, f"ms3m-broken-{uuid.uuid4().hex[:8]}")
    assert bad.returncode != 0 and "gridPoss" in bad.stdout


# -- Redis durability and authentication (README, "Security") -----------------------------------------------------
def test_redis_fsyncs_as_the_chart_does(compose):
    """An ack means "in Redis": the demo's Redis keeps an append-only file fsynced before it replies, the same
    choice as the Helm chart's default, on the named volume."""
    cmd = compose["services"]["redis"]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--appendfsync") + 1] == "always"
    chart = load_yaml(REPO / "helm" / "ms3m-xapp" / "values.yaml")["redis"]
    assert chart["appendfsync"] == cmd[cmd.index("--appendfsync") + 1] and chart["appendonly"] is True
    assert "redis-data:/data" in compose["services"]["redis"]["volumes"] and "redis-data" in compose["volumes"]


def test_demo_is_zero_config_and_the_auth_example_is_valid(compose, tmp_path):
    """No authentication or TLS by default; the commented example (lines marked `#> `), once enabled, is a valid
    Compose file whose secret is the file MS3M_AUTH_TOKENS_FILE names, and the service reads it."""
    from service.api.auth import load_token_auth

    env = compose["services"]["xapp"]["environment"]
    assert not [k for k in env if k.startswith(("MS3M_AUTH", "MS3M_TLS"))] and "secrets" not in compose
    text = COMPOSE.read_text()
    assert re.search(r"^\s*#> ", text, flags=re.M), "the commented authentication example is missing"
    enabled = re.sub(r"^(\s*)#> ", r"\1", text, flags=re.M)
    (tmp_path / "deploy").mkdir()
    (tmp_path / "docker-compose.yml").write_text(enabled)
    r = check_compose_schema(tmp_path / "docker-compose.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    on = load_yaml(tmp_path / "docker-compose.yml")
    xapp = on["services"]["xapp"]
    (name,) = xapp["secrets"]
    assert xapp["environment"]["MS3M_AUTH_TOKENS_FILE"] == f"/run/secrets/{name}"  # where Compose mounts it
    tokens = tmp_path / on["secrets"][name]["file"]
    tokens.write_text("write:0123456789abcdef-write\nread:0123456789abcdef-read\n")
    auth = load_token_auth(None, tokens)
    assert auth.role_of("0123456789abcdef-write") == "write"
