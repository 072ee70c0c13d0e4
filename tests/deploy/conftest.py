"""Shared fixtures of the deployment tests: repository paths, a strict YAML loader, and a live xApp's metrics.

`live_service` starts one xApp in-process (tests/service/helpers.py `running_xapp` with a tiny MS³M bundle),
drives enough traffic through gRPC that the labelled metric families have samples (forecasts, rejections,
expert gauges), and returns what the deployment files must agree with: the /metrics exposition, the metric
families and their label names, and the REST routes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = REPO / "helm" / "ms3m-xapp"
DESCRIPTOR = DEPLOY / "xapp-descriptor" / "config-file.json"
DESCRIPTOR_SCHEMA = DEPLOY / "xapp-descriptor" / "schema.json"
K8S_VERSION = "1.33.0"  # Kubernetes version the rendered manifests are validated against (kubernetes-validate schemas)


def load_yaml_all(text: str) -> list:
    """YAML documents of `text`; a mapping with a repeated key is an error (PyYAML silently keeps the last)."""
    yaml = pytest.importorskip("yaml")

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged keys may be overridden
                continue
            key = loader.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            keys.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d is not None]


def load_yaml(path: Path):
    docs = load_yaml_all(path.read_text())
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


def series_names(family: str, typ: str) -> set[str]:
    """The sample names of a metric family as Prometheus stores them (what a PromQL query can name)."""
    if typ == "counter":
        base = family.removesuffix("_total")
        return {base + "_total", base + "_created"}
    if typ == "histogram":
        return {family + s for s in ("_bucket", "_sum", "_count", "_created")}
    if typ == "summary":
        return {family, *(family + s for s in ("_sum", "_count", "_created"))}
    return {family}


@dataclass
class Exposition:
    """What a running xApp exports on /metrics."""

    text: str
    types: dict[str, str]  # family name as in `# TYPE` (counters with _total) -> type
    labels: dict[str, set[str]] = field(default_factory=dict)  # family -> label names (seen or declared)
    routes: set[str] = field(default_factory=set)

    def family(self, series: str) -> str | None:
        """The family a series name belongs to (ms3m_x_bucket -> ms3m_x), or None if the service exports none."""
        return next((f for f, t in self.types.items() if series in series_names(f, t)), None)


def parse_exposition(text: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Families (`# TYPE` lines, present even for labelled families without samples) and their label names."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    by_series = {s: f for f, t in types.items() for s in series_names(f, t)}
    labels: dict[str, set[str]] = {f: set() for f in types}
    for name, body in re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", text, flags=re.M):
        if name in by_series:
            labels[by_series[name]].update(k for k in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', body) if k != "le")
    return types, labels


async def _drive_live_xapp(bundle: Path) -> Exposition:
    import httpx

    from tests.service.helpers import indication, publish, running_xapp

    async with running_xapp([bundle]) as xapp:
        # 40 steps of 4 cells: forecasts, realized errors, router decisions; then a replayed old message
        # (duplicate / out-of-order rejections) and one NaN report (non_finite).
        await publish(xapp.grpc_port, [indication(4, t, mid=t + 1) for t in range(40)])
        bad = indication(2, 40, mid=100)
        bad.reports[0].values[0] = float("nan")
        await publish(xapp.grpc_port, [indication(4, 5, mid=99), bad])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{xapp.http_port}") as http:
            text = ""
            for _ in range(100):  # the expert gauges are set by a 1 s periodic task
                text = (await http.get("/metrics")).text
                if "ms3m_expert_routing_share{" in text and "ms3m_forecasts_total{" in text:
                    break
                await asyncio.sleep(0.1)
            ric = (await http.get("/ric/v1/metrics")).text
        routes = {getattr(r, "path", "") for r in xapp.rest_app.routes}
        declared = {c._name: set(c._labelnames) for c in vars(xapp.metrics).values() if hasattr(c, "_labelnames")}
    types, labels = parse_exposition(text)
    assert parse_exposition(ric)[0] == types, "/ric/v1/metrics and /metrics export different families"
    for fam in labels:  # families without samples yet: the label names they were declared with
        labels[fam] |= declared.get(fam.removesuffix("_total"), set()) | declared.get(fam, set())
    return Exposition(text=text, types=types, labels=labels, routes=routes)


@pytest.fixture(scope="session")
def live_service(tmp_path_factory) -> Exposition:
    pytest.importorskip("torch", reason="building the test bundle needs torch (the `train` extra)")
    pytest.importorskip("httpx")
    from tests.service.helpers import make_bundle

    bundle = make_bundle(tmp_path_factory.mktemp("deploy-bundle"), "ms3m")
    return asyncio.run(_drive_live_xapp(bundle))
