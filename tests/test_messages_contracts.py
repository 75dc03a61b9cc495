"""The contracts in carbonflow.messages: today's documents round-trip unchanged, problems are one line
naming the record, and the package boundaries hold (messages imports only messages; the center never
imports the collector)."""

from __future__ import annotations

import ast
import copy
import json
import re
import tomllib
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from carbonflow.collector.config import config_from_dict
from carbonflow.collector.device_map_config import config_from_device_map, to_toml
from carbonflow.messages.base import ContractError
from carbonflow.messages.c5 import (
    BoundaryIntensities,
    Envelope,
    IntervalReport,
    MeterSum,
    RegionTotals,
    TieFlow,
    Verdict,
    Verification,
)
from carbonflow.messages.collector_config import CollectorConfig, ConfigError, collector_config_from_dict
from carbonflow.messages.device_map import DeviceMap
from carbonflow.messages.grid import GridDocument
from carbonflow.sim.cameras import add_cameras
from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid

warnings.filterwarnings("ignore", module="pandapower")
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "carbonflow"


@pytest.fixture(scope="module")
def net():
    return reference_grid()


def _json(document):
    return json.loads(json.dumps(document))


def test_the_reference_grid_document_round_trips_unchanged(net):
    document = _json(grid_document(net))
    assert document["schema_version"] == 1 and len(document["buses"]) == 104
    assert GridDocument.parse(document).document() == document
    legacy = {k: v for k, v in document.items() if k != "schema_version"}  # written before versioning
    assert GridDocument.parse(legacy).document() == legacy


def test_the_reference_device_map_round_trips_unchanged_with_its_cameras(net):
    document = _json(build_device_map(net))
    assert DeviceMap.parse(document).document() == document
    with_cameras = add_cameras(copy.deepcopy(document), net)
    assert any(d["protocol"] == "camera-http" for d in with_cameras["devices"])
    assert DeviceMap.parse(with_cameras).document() == with_cameras


def _docs_toml() -> dict:
    text = (ROOT / "docs" / "collector.md").read_text("utf-8")
    return tomllib.loads(re.search(r"```toml\n(.*?)```", text, re.S).group(1))


def test_the_documented_and_the_generated_collector_configurations_round_trip(net):
    documented = _docs_toml()
    assert documented["devices"] and CollectorConfig.from_document(documented).document() == documented
    generated = tomllib.loads(to_toml(config_from_device_map(build_device_map(net))))
    config = CollectorConfig.from_document(generated)
    assert config.document() == generated
    assert config.devices[0].period_s == generated["defaults"]["period_s"]  # inherited, not written


def test_a_grid_problem_is_one_line_naming_the_record():
    document = {"buses": [{"id": "B1", "vn_kv": 110, "kind": "user"}, {"id": "B2", "vn_kv": 110}]}
    with pytest.raises(ContractError) as caught:
        GridDocument.parse(document)
    assert str(caught.value) == "grid document: bus 'B2' (buses[1]): kind: required field is missing"
    document["buses"][1].update(kind="user", colour="red")
    with pytest.raises(ContractError, match=r"bus 'B2' \(buses\[1\]\): colour: unknown field"):
        GridDocument.parse(document)
    with pytest.raises(ContractError, match="schema_version 2 is newer"):
        GridDocument.parse({"schema_version": 2, "buses": []})


def test_a_device_map_problem_names_the_device_and_the_point():
    device = {
        "id": "EM-U01",
        "protocol": "dlt645",
        "points": [
            {
                "id": "EM-U01/1",
                "address": {"oad": "00100200"},
                "element_kind": "load",
                "element_id": "U01",
                "quantity": "import_energy_kwh",
            }
        ],
    }
    with pytest.raises(ContractError) as caught:
        DeviceMap.parse({"devices": [device]})
    message = str(caught.value)
    assert "\n" not in message and "device 'EM-U01' (devices[0])" in message and "has no 'di'" in message
    device["points"][0].update(address={"di": "00010000"}, id="EM-U02/1")
    with pytest.raises(ContractError, match="must be '<device id>/<name>'"):
        DeviceMap.parse({"devices": [device]})
    with pytest.raises(ContractError, match="device map: devices: required field is missing"):
        DeviceMap.parse({"version": 1})
    with pytest.raises(ContractError, match="device map: schema_version 2 is newer"):
        DeviceMap.parse({"version": 2, "devices": []})


INLINE = """
id = "col-1"
secret = "0123456789abcdef"
[center]
url = "http://127.0.0.1:8000"
[[devices]]
id = "MB-1"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:1502"
unit_id = 3
[devices.register_map]
model = "site-meter"
[[devices.register_map.points]]
name = "p_kw"
address = 0
type = "float32"
unit = "kW"
[[devices.points]]
name = "p"
register = "p_kw"
"""


def test_an_inline_register_map_is_checked_as_data_and_built_by_the_collector():
    data = tomllib.loads(INLINE)
    assert collector_config_from_dict(data).document()["devices"][0]["register_map"]["model"] == "site-meter"
    loaded = config_from_dict(data)
    assert loaded.register_map(loaded.devices[0]).point("p_kw").address == 0
    wrong = tomllib.loads(INLINE.replace('register = "p_kw"', 'register = "q_kvar"'))
    with pytest.raises(ConfigError, match=r"device 'MB-1' \(devices\[0\]\).*'q_kvar' is not in register map"):
        collector_config_from_dict(wrong, "pushed")
    no_map = tomllib.loads(
        INLINE.split("[devices.register_map]")[0] + '[[devices.points]]\nname = "p"\nregister = "p_kw"\n'
    )
    with pytest.raises(ConfigError, match="needs its register map"):
        collector_config_from_dict(no_map)


def _envelope(payload) -> Envelope:
    ts = datetime(2026, 6, 1, 8, 15, tzinfo=UTC)
    return Envelope(
        message_id="0f1e2d3c-4b5a",
        sender="AH-HF",
        recipient="AH",
        ts=ts,
        interval_s=900,
        created_at=ts,
        payload=payload,
    )


REGION = {"region": "AH/HF", "generation_carbon_t": 210.5, "load_carbon_t": 200.1, "loss_carbon_t": 10.4}
ENERGY = {"generation_energy_kwh": 2.6e5, "load_energy_kwh": 2.5e5, "loss_energy_kwh": 1e4}
TIE = {"branch_id": "L012", "lower_bus": "S012", "upper_bus": "S003", "p_into_lower_mw": -40.0}
TIE_ENERGY = {"energy_into_lower_kwh": -1e4, "lower_intensity_g_per_kwh": 612.0}
SUM = {"element_kind": "load", "quantity": "import_energy_kwh", "total": "250000.25", "points": 14}
VERDICT = {"check": "tie_flow", "status": "mismatch", "subject": "L012", "expected": -40.0, "found": -38.0}


def test_cascade_messages_are_signed_by_the_sender_and_survive_json():
    totals = RegionTotals(**REGION, **ENERGY)
    report = IntervalReport(
        totals=totals,
        ties=[TieFlow(**TIE, **TIE_ENERGY)],
        meter_sums=[MeterSum(**SUM)],
        result_hash="ab" * 32,
    )
    key = Ed25519PrivateKey.generate()
    envelope = _envelope(report).signed(key)
    received = Envelope.model_validate_json(envelope.model_dump_json())
    assert received == envelope and received.verify(key.public_key())
    assert isinstance(received.payload, IntervalReport)
    assert str(received.payload.meter_sums[0].total) == "250000.25"  # exact, as metered
    forged = received.model_copy(update={"recipient": "JS"})
    assert not forged.verify(key.public_key())
    assert not received.verify(Ed25519PrivateKey.generate().public_key())
    verdicts = Verification(report_hash="ab" * 32, status="mismatch", verdicts=[Verdict(**VERDICT)])
    boundary = BoundaryIntensities(boundaries=[{"bus": "S003", "intensity_g_per_kwh": 580.0}])
    for payload in (verdicts, boundary):
        again = Envelope.parse(json.loads(_envelope(payload).model_dump_json()))
        assert type(again.payload) is type(payload)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):  # function-local imports count too
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_messages_import_nothing_of_ours_but_messages():
    for path in (PACKAGE / "messages").rglob("*.py"):
        ours = {n for n in _imports(path) if n.startswith("carbonflow")}
        assert all(n.startswith("carbonflow.messages") for n in ours), (path, ours)


def test_the_center_never_imports_the_collector():
    for path in (PACKAGE / "center").rglob("*.py"):
        assert not {n for n in _imports(path) if n.startswith("carbonflow.collector")}, path
