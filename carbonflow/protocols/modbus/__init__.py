"""Modbus TCP: frame codec (MBAP + PDU) and register maps as data."""

from carbonflow.protocols.modbus.frame import ENCODE_FUNCTIONS, Adu, build_request, describe, split_adu
from carbonflow.protocols.modbus.registers import (
    DataType,
    RegisterMap,
    RegisterPoint,
    Table,
    builtin_map,
    builtin_models,
    register_map_from_dict,
)

__all__ = [
    "ENCODE_FUNCTIONS",
    "Adu",
    "DataType",
    "RegisterMap",
    "RegisterPoint",
    "Table",
    "build_request",
    "builtin_map",
    "builtin_models",
    "describe",
    "register_map_from_dict",
    "split_adu",
]
