"""Collector configuration: TOML validated with one-line errors naming file, device and field; a
configuration generated from the device map."""

from __future__ import annotations

import argparse
import json
from decimal import Decimal
from pathlib import Path

import pytest

from carbonflow.collector.config import load_config
from carbonflow.collector.device_map_config import config_from_device_map, to_toml
from carbonflow.commands import CommandInputError
from carbonflow.commands import collector as collector_command
from carbonflow.messages.collector_config import ConfigError

GOOD = """
id = "col-1"
secret = "0123456789abcdef"

[center]
url = "http://127.0.0.1:8000"

[defaults]
period_s = 5
offline_after = 2

[[devices]]
id = "EM-U01"
protocol = "dlt645"
endpoint = "127.0.0.1:26450"
address = "110100000001"
period_s = 1

[[devices.points]]
name = "1"
di = "00010000"
kind = "counter"
unit = "kWh"
min = 0
rollover = 1000000

[[devices]]
id = "RTU-P01"
protocol = "iec104"
endpoint = "127.0.0.1:2404"
common_address = 1

[[devices.points]]
name = "p"
ioa = 16385
unit = "MW"
"""


def write(tmp_path: Path, text: str, name: str = "collector.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_a_good_file_loads_with_defaults_filled_in(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    meter, rtu = config.devices
    assert (meter.period_s, rtu.period_s) == (1, 5)  # own period, else the default
    assert meter.points[0].rollover == Decimal("1000000") and meter.points[0].kind == "counter"
    assert (rtu.host, rtu.port, rtu.common_address) == ("127.0.0.1", 2404, 1)
    assert config.center.transport == "http" and config.secret_bytes == b"0123456789abcdef"
    assert config.outbox_path == tmp_path / "outbox.sqlite"  # relative to the file
    assert len(config.config_version or "") == 12


def test_errors_name_the_device_and_the_field(tmp_path):
    bad_oad = GOOD.replace('di = "00010000"', 'di = "0001zz00"')
    message = error_of(tmp_path, bad_oad)
    assert "device 'EM-U01' (devices[0])" in message and "points[0].di" in message and "0001zz00" in message

    wrong_field = GOOD.replace("ioa = 16385", 'oad = "00100200"')
    message = error_of(tmp_path, wrong_field)
    assert "device 'RTU-P01' (devices[1])" in message and "needs exactly 'ioa'" in message

    missing_address = GOOD.replace("common_address = 1\n", "")
    assert "common_address: required for protocol iec104" in error_of(tmp_path, missing_address)

    bad_endpoint = GOOD.replace('"127.0.0.1:2404"', '"127.0.0.1"')
    message = error_of(tmp_path, bad_endpoint)
    assert "device 'RTU-P01'" in message and "endpoint" in message and "host:port" in message

    typo = GOOD.replace('unit = "MW"', 'unti = "MW"')
    assert "points[0].unti: unknown field" in error_of(tmp_path, typo)

    bounds = GOOD.replace("min = 0", "min = 10\nmax = 1")
    assert "min 10 is above max 1" in error_of(tmp_path, bounds)


def test_whole_file_errors_are_one_line_too(tmp_path):
    assert "TOML syntax" in error_of(tmp_path, GOOD + "\n[[devices\n")
    assert "secret: give exactly one" in error_of(tmp_path, GOOD.replace('secret = "0123456789abcdef"', ""))
    assert "center: required field is missing" in error_of(tmp_path, GOOD.replace("[center]", "[elsewhere]"))
    duplicate = GOOD.replace('id = "RTU-P01"', 'id = "EM-U01"')
    assert "id 'EM-U01' appears twice" in error_of(tmp_path, duplicate)
    assert "mqtt://host:port" in error_of(tmp_path, GOOD.replace("http://127.0.0.1:8000", "ftp://x"))
    secret_file = GOOD.replace('secret = "0123456789abcdef"', 'secret_file = "nope.secret"')
    assert "secret_file" in error_of(tmp_path, secret_file) and "nope.secret" in error_of(
        tmp_path, secret_file
    )
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def test_modbus_points_must_exist_in_the_register_map(tmp_path):
    modbus = (
        GOOD
        + """
[[devices]]
id = "MB-1"
protocol = "modbus-tcp"
endpoint = "127.0.0.1:1502"
unit_id = 3
model = "cf-3ph-meter"

[[devices.points]]
name = "p"
register = "p_watts"
"""
    )
    message = error_of(tmp_path, modbus)
    assert (
        "device 'MB-1'" in message
        and "points[0].register: 'p_watts' is not in register map cf-3ph-meter" in message
    )
    assert "model" in error_of(tmp_path, modbus.replace("cf-3ph-meter", "no-such-meter"))
    load_config(write(tmp_path, modbus.replace("p_watts", "p_kw")))  # the right name loads


DEVICE_MAP = {
    "version": 1,
    "grid": "test",
    "host": "127.0.0.1",
    "devices": [
        {
            "id": "RTU-P01",
            "kind": "plant_rtu",
            "protocol": "iec104",
            "model": "cf-plant-rtu",
            "bus": "P01",
            "region": "AH",
            "endpoint": {"host": "127.0.0.1", "port": 24096},
            "address": {"common_address": 1},
            "points": [
                {
                    "id": "RTU-P01/1",
                    "address": {"ioa": 16385, "type": "M_ME_NC_1"},
                    "element_kind": "generator",
                    "element_id": "G1-1",
                    "quantity": "p_mw",
                    "end": "-",
                    "unit": "MW",
                    "scale_to_device": 1.0,
                },
                {
                    "id": "RTU-P01/2",
                    "address": {"ioa": 16386, "type": "M_ME_NC_1"},
                    "element_kind": "generator",
                    "element_id": "G1-1",
                    "quantity": "intensity_g_per_kwh",
                    "end": "-",
                    "unit": "g/kWh",
                    "scale_to_device": 1.0,
                },
                {
                    "id": "RTU-P01/3",
                    "address": {"ioa": 25601, "type": "M_IT_NA_1"},
                    "element_kind": "generator",
                    "element_id": "G1-1",
                    "quantity": "export_energy_kwh",
                    "end": "-",
                    "unit": "kWh",
                    "scale_to_device": 1.0,
                },
            ],
        },
        {
            "id": "MB-S057-1",
            "kind": "substation_meter",
            "protocol": "modbus-tcp",
            "model": "cf-3ph-meter",
            "bus": "S057",
            "region": "AH",
            "endpoint": {"host": "127.0.0.1", "port": 15020},
            "address": {"unit_id": 1},
            "points": [
                {
                    "id": "MB-S057-1/1",
                    "address": {"register": "p_kw"},
                    "element_kind": "branch",
                    "element_id": "L056",
                    "quantity": "p_mw",
                    "end": "to",
                    "unit": "kW",
                    "scale_to_device": 1000.0,
                },
                {
                    "id": "MB-S057-1/4",
                    "address": {"register": "import_energy_kwh"},
                    "element_kind": "branch",
                    "element_id": "L056",
                    "quantity": "export_energy_kwh",
                    "end": "to",
                    "unit": "kWh",
                    "scale_to_device": 1.0,
                },
            ],
        },
        {
            "id": "EM-U01",
            "kind": "energy_meter",
            "protocol": "dlt645",
            "model": "cf-meter-645",
            "bus": "U01",
            "region": "AH",
            "endpoint": {"host": "127.0.0.1", "port": 26451},
            "address": {"address": "110100000002"},
            "points": [
                {
                    "id": "EM-U01/1",
                    "address": {"di": "00010000"},
                    "element_kind": "load",
                    "element_id": "U01",
                    "quantity": "import_energy_kwh",
                    "end": "-",
                    "unit": "kWh",
                    "scale_to_device": 1.0,
                }
            ],
        },
        {
            "id": "ECM-U01",
            "kind": "carbon_meter",
            "protocol": "dlt698",
            "model": "cf-carbon-meter-698",
            "bus": "U01",
            "region": "AH",
            "endpoint": {"host": "127.0.0.1", "port": 26991},
            "address": {"sa": "220100000012"},
            "points": [
                {
                    "id": "ECM-U01/3",
                    "address": {"oad": "20800200"},
                    "element_kind": "load",
                    "element_id": "U01",
                    "quantity": "carbon_kg",
                    "end": "-",
                    "unit": "kg",
                    "scale_to_device": 1.0,
                }
            ],
        },
    ],
}


def test_generated_configuration_keeps_the_device_map_point_ids(tmp_path):
    (tmp_path / "collector.secret").write_text("a-long-enough-secret\n")
    document = config_from_device_map(DEVICE_MAP, collector_id="c-9", center_url="mqtt://127.0.0.1:1883")
    config = load_config(write(tmp_path, to_toml(document)))
    assert config.id == "c-9" and config.center.transport == "mqtt"
    point_ids = {f"{d.id}/{p.name}" for d in config.devices for p in d.points}
    assert point_ids == {p["id"] for d in DEVICE_MAP["devices"] for p in d["points"]}
    rtu, modbus, meter645, meter698 = config.devices
    assert rtu.common_address == 1 and [p.kind for p in rtu.points] == ["instant", "instant", "counter"]
    assert rtu.points[1].max == Decimal(2000) and rtu.points[2].rollover == Decimal(2**32)
    assert modbus.unit_id == 1 and modbus.points[1].rollover == Decimal("42949672.96")  # uint32 x 0.01
    assert meter645.address == "110100000002" and meter645.points[0].rollover == Decimal(1000000)
    assert meter698.address == "220100000012" and meter698.points[0].oad == "20800200"


def test_cli_writes_a_configuration_that_loads(tmp_path, capsys):
    map_path = tmp_path / "map.json"
    map_path.write_text(json.dumps(DEVICE_MAP))
    out = tmp_path / "c.toml"
    parser = argparse.ArgumentParser()
    collector_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "collector",
            "config",
            "--from-device-map",
            str(map_path),
            "--out",
            str(out),
            "--device",
            "EM-U01",
            "--period",
            "15",
        ]
    )
    assert args.run(args) == 0
    assert "1 devices, 1 points" in capsys.readouterr().err
    (tmp_path / "collector.secret").write_text("a-long-enough-secret")
    config = load_config(out)
    assert [d.id for d in config.devices] == ["EM-U01"] and config.defaults.period_s == 15

    map_path.write_text("{not json")
    args = parser.parse_args(["collector", "config", "--from-device-map", str(map_path), "--out", str(out)])
    with pytest.raises(CommandInputError, match="not JSON"):
        args.run(args)
    bad = json.loads(json.dumps(DEVICE_MAP))
    bad["devices"][2]["points"][0]["address"] = {"oad": "00100200"}
    map_path.write_text(json.dumps(bad))
    with pytest.raises(CommandInputError, match=r"EM-U01.*has no 'di'"):
        args.run(args)
