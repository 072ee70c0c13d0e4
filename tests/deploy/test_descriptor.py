"""The O-RAN SC xApp descriptor deploy/xapp-descriptor/config-file.json and its schema.json: the descriptor
validates, the schema refuses bad descriptors and bad `controls` (also on its own, as the O-RAN SC onboarder
uses an xApp's schema.json), and ports, probes, controls and metrics match the service."""

from __future__ import annotations

import copy
import inspect
import json
import re

import pytest

from service.a1 import OBJECTIVE_POLICY_TYPE_ID
from service.config import Settings
from service.control import StepControl
from tests.deploy.conftest import DESCRIPTOR, DESCRIPTOR_SCHEMA

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def descriptor() -> dict:
    return json.loads(DESCRIPTOR.read_text())


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(DESCRIPTOR_SCHEMA.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_descriptor_validates(validator, descriptor):
    validator.validate(descriptor)


def test_controls_validate_on_their_own(validator, descriptor):
    """dms_cli onboard validates the `controls` section against the xApp's schema.json."""
    validator.validate(descriptor["controls"])
    assert list(validator.iter_errors({"actionMode": "always"}))


def mutate(d: dict, path: str, value) -> dict:
    d = copy.deepcopy(d)
    *parents, last = path.split(".")
    node = d
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return d


@pytest.mark.parametrize("path, value", [
    ("controls.actionMode", "always"),
    ("controls.intervalCoverage", 1.0),
    ("controls.intervalCoverage", "0.9"),
    ("controls.decisionPeriodSamples", 0),
    ("controls.actionmode", "enforce"),  # a typo: the service would ignore it silently
    ("version", "v1"),
    ("xapp_name", "MS3M_xApp"),
    ("containers.0.image.registry", "no registry"),
    ("containers.0.image", KeyError),
    ("messaging.ports.0.port", 70000),
    ("messaging.ports.1.description", KeyError),
    ("livenessProbe.httpGet", KeyError),
    ("readinessProbe.periodSeconds", 0),
    ("metrics.0.type", "meter"),
    ("metrics.0.objectName", KeyError),
    ("controls", KeyError),
])
def test_schema_rejects_bad_descriptors(validator, descriptor, path, value):
    assert list(validator.iter_errors(mutate(descriptor, path, value))), f"{path}={value!r} was accepted"


def test_ports_are_the_service_defaults(descriptor):
    ports = {p["name"]: p for p in descriptor["messaging"]["ports"]}
    assert set(ports) == {"http", "grpc"}  # no RMR ports: this xApp has no RMR
    assert ports["http"]["port"] == Settings.model_fields["http_port"].default == 8080
    assert ports["grpc"]["port"] == Settings.model_fields["grpc_port"].default == 50051
    assert all(p["container"] == descriptor["containers"][0]["name"] for p in ports.values())
    assert "no RMR" in ports["grpc"]["description"]
    assert f"/A1-P/v2/policytypes/{OBJECTIVE_POLICY_TYPE_ID}" in ports["http"]["description"]


def test_probes_hit_existing_endpoints(descriptor, live_service):
    http = next(p["port"] for p in descriptor["messaging"]["ports"] if p["name"] == "http")
    for probe, path in (("livenessProbe", "/ric/v1/health/alive"), ("readinessProbe", "/ric/v1/health/ready")):
        get = descriptor[probe]["httpGet"]
        assert get == {"path": path, "port": http}
        assert get["path"] in live_service.routes


def test_controls_are_the_keys_the_service_applies(descriptor):
    """`controls` keys are exactly those StepControl.apply_controls reads; defaults equal the Settings defaults."""
    read = set(re.findall(r"controls\.get\(\"(\w+)\"\)", inspect.getsource(StepControl.apply_controls)))
    assert set(descriptor["controls"]) == read
    f = Settings.model_fields
    assert descriptor["controls"] == {"actionMode": f["action_mode"].default,
                                      "intervalCoverage": f["interval_coverage"].default,
                                      "decisionPeriodSamples": f["decision_period_samples"].default,
                                      "bundles": {}}  # no swap asked for: the bundles of MS3M_BUNDLES serve


def test_metrics_mirror_the_exported_families(descriptor, live_service):
    exported = {f: t for f, t in live_service.types.items()
                if not (f.endswith("_created") and t == "gauge")}  # prometheus_client's *_created series
    listed = {m["name"]: m for m in descriptor["metrics"]}
    assert len(listed) == len(descriptor["metrics"]), "a metric is listed twice"
    unknown = set(listed) - set(exported)
    assert not unknown, f"descriptor lists metrics the xApp does not export: {sorted(unknown)}"
    missing = set(exported) - set(listed)
    assert not missing, (f"exported metrics missing from deploy/xapp-descriptor/config-file.json "
                         f"(and helm/ms3m-xapp/files/config-file.json): {sorted(missing)}")
    for name, m in listed.items():
        assert m["type"] == exported[name], name
        for label in live_service.labels[name]:
            assert label in m["description"], f"{name}: describe its label {label!r}"
