"""The wire contract: generated code is fresh, importable from the installed package, and usable."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) generates the protobuf code")
_spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
generate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(generate)


def test_generated_code_is_fresh():
    stale = generate.stale_files()
    assert stale == [], f"run `make proto`: stale generated files {stale}"


def test_staleness_check_catches_a_changed_proto(tmp_path: Path):
    shutil.copytree(REPO / "proto" / "ms3m", tmp_path / "ms3m")
    assert generate.stale_files(tmp_path) == []
    proto = tmp_path / "ms3m" / "v1" / "kpm.proto"
    proto.write_text(proto.read_text().replace("uint64 message_id = 5;", "uint64 message_id = 5;\n  string extra = 9;"))
    assert "ms3m/v1/kpm_pb2.py" in generate.stale_files(tmp_path)


def test_generated_modules_import_from_installed_package(tmp_path: Path):
    code = ("import ms3m.v1.kpm_pb2 as k, ms3m.v1.forecast_pb2_grpc as f, ms3m.v1.policy_pb2 as p;"
            "print(k.__file__); assert hasattr(f, 'ForecastingStub')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("kpm_pb2.py")


def test_kpi_indication_round_trip():
    from ms3m.v1 import kpm_pb2

    msg = kpm_pb2.KpiIndication(
        e2_node_id="gnb-1", granularity_period_ms=1000, meas_names=["DRB.UEThpDl", "RRU.PrbUsedDl"], message_id=7
    )
    r = msg.reports.add(cell_id="cell-1", timestamp_ms=1_700_000_000_000, sequence=1, values=[12.5, 0.0], absent=[1])
    r.slice.sst = 1
    back = kpm_pb2.KpiIndication.FromString(msg.SerializeToString())
    assert back == msg
    assert back.reports[0].HasField("slice") and not back.reports[0].HasField("ue_id")


def test_services_declared():
    from ms3m.v1 import forecast_pb2, kpm_pb2

    ingest = kpm_pb2.DESCRIPTOR.services_by_name["E2Ingest"]
    assert ingest.methods_by_name["Publish"].client_streaming
    assert not ingest.methods_by_name["Publish"].server_streaming
    forecasting = forecast_pb2.DESCRIPTOR.services_by_name["Forecasting"]
    assert forecasting.methods_by_name["Subscribe"].server_streaming
    assert set(forecasting.methods_by_name) == {"Predict", "Subscribe"}
