"""CIM/XML (IEC 61970-552) plumbing shared by the CGMES writer and reader: namespaces, profile headers,
deterministic mRIDs, and a reader that merges the profiles of a set into one object store.

CGMES 2.4.15 (CIM16) is the target: every value is in the unit the profile fixes (kV, MW, MVAr, ohm,
siemens, degrees), so no unit multiplier appears in the files.  carbonflow's own data that CIM has no
attribute for (a unit's carbon intensity, a load's industry, a bus's kind) travels in a separate
namespace (``cf:``), as 61970-552 allows for extensions; other tools ignore it, and the reader falls
back to CIM-only information when it is absent.
"""

from __future__ import annotations

import math
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from carbonflow.sim.errors import GridImportError

CIM = "http://iec.ch/TC57/2013/CIM-schema-cim16#"
MD = "http://iec.ch/TC57/61970-552/ModelDescription/1#"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
ENTSOE = "http://entsoe.eu/CIM/SchemaExtension/3/1#"
CF = "http://carbonflow.dev/cgmes/1#"
NSMAP = {"cim": CIM, "md": MD, "rdf": RDF, "entsoe": ENTSOE, "cf": CF}

# pandapower (and its MATPOWER converter) writes 99999 kA for a line without a rating: no limit at all
NO_LIMIT_KA = 99999.0
# Profile URIs of CGMES 2.4.15 (what md:Model.profile says), by the short name used in file names.
PROFILES: dict[str, tuple[str, ...]] = {
    "EQ": ("http://entsoe.eu/CIM/EquipmentCore/3/1", "http://entsoe.eu/CIM/EquipmentOperation/3/1"),
    "TP": ("http://entsoe.eu/CIM/Topology/4/1",),
    "SSH": ("http://entsoe.eu/CIM/SteadyStateHypothesis/1/1",),
    "SV": ("http://entsoe.eu/CIM/StateVariables/4/1",),
}
# Words of the profile URIs that identify a profile when the set uses another version of the same one.
_PROFILE_WORDS = {
    "EquipmentCore": "EQ",
    "Topology": "TP",
    "SteadyStateHypothesis": "SSH",
    "StateVariables": "SV",
}
# Fixed so that the same grid always gets the same mRIDs (a re-export diffs cleanly, references hold).
MRID_NAMESPACE = uuid.UUID("8d0b6f7e-58a4-5a5e-9a8c-2f1f0c6b1c05")
_RDF_ID = f"{{{RDF}}}ID"
_RDF_ABOUT = f"{{{RDF}}}about"
_RDF_RESOURCE = f"{{{RDF}}}resource"


def mrid(*parts: object) -> str:
    """A deterministic mRID (UUID version 5) for an element named by ``parts``."""
    return str(uuid.uuid5(MRID_NAMESPACE, "/".join(str(part) for part in parts)))


def groups(members: Iterable[Any], pairs: Iterable[tuple[Any, Any]]) -> dict[Any, Any]:
    """Union-find: each member -> the lowest member of its group, the two of every pair being together
    (buses of a substation, of a TopologicalNode, of an island)."""
    parent = {member: member for member in members}

    def root(member: Any) -> Any:
        while parent[member] != member:
            parent[member] = parent[parent[member]]
            member = parent[member]
        return member

    for a, b in pairs:
        first, second = root(a), root(b)
        if first != second:
            parent[max(first, second)] = min(first, second)
    return {member: root(member) for member in parent}


def finite(value: Any, default: float) -> float:
    """``value`` as a float, or ``default`` when it is missing, not a number or infinite."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        return default
    return result if math.isfinite(result) else default


def number(value: float) -> str:
    """``repr`` of a float keeps every bit, so a round trip through the files is exact."""
    return repr(float(value))


class Document:
    """One profile file being written: a header (md:FullModel) and CIM objects in order."""

    def __init__(self, profile: str, model_id: str, scenario_time: str, depends_on: Iterable[str] = ()):
        self.profile = profile
        self.root = etree.Element(f"{{{RDF}}}RDF", nsmap=NSMAP)
        header = etree.SubElement(self.root, f"{{{MD}}}FullModel", {_RDF_ABOUT: f"urn:uuid:{model_id}"})
        for name, text in (
            ("Model.scenarioTime", scenario_time),
            ("Model.created", scenario_time),
            ("Model.description", f"carbonflow CGMES export ({profile})"),
            ("Model.version", "1"),
        ):
            etree.SubElement(header, f"{{{MD}}}{name}").text = text
        for dependency in depends_on:
            etree.SubElement(header, f"{{{MD}}}Model.DependentOn", {_RDF_RESOURCE: f"urn:uuid:{dependency}"})
        for uri in PROFILES[profile]:
            etree.SubElement(header, f"{{{MD}}}Model.profile").text = uri
        etree.SubElement(header, f"{{{MD}}}Model.modelingAuthoritySet").text = "http://carbonflow.dev/"

    def new(self, cim_class: str, object_id: str, name: str | None = None) -> etree._Element:
        """An object defined in this profile, with its name when it is an IdentifiedObject.  CGMES 2.4.15
        carries the mRID as ``rdf:ID`` = ``_`` + mRID only (an ``IdentifiedObject.mRID`` element is
        CGMES 3)."""
        element = etree.SubElement(self.root, f"{{{CIM}}}{cim_class}", {_RDF_ID: f"_{object_id}"})
        if name is not None:
            self.text(element, "IdentifiedObject.name", name)
        return element

    def about(self, cim_class: str, object_id: str) -> etree._Element:
        """More attributes of an object defined in another profile (``rdf:about``)."""
        return etree.SubElement(self.root, f"{{{CIM}}}{cim_class}", {_RDF_ABOUT: f"#_{object_id}"})

    @staticmethod
    def text(element: etree._Element, prop: str, value: object, namespace: str = CIM) -> None:
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, float):
            value = number(value)
        etree.SubElement(element, f"{{{namespace}}}{prop}").text = str(value)

    @staticmethod
    def ref(element: etree._Element, prop: str, object_id: str) -> None:
        etree.SubElement(element, f"{{{CIM}}}{prop}", {_RDF_RESOURCE: f"#_{object_id}"})

    @staticmethod
    def enum(element: etree._Element, prop: str, value: str, namespace: str = CIM) -> None:
        etree.SubElement(element, f"{{{namespace}}}{prop}", {_RDF_RESOURCE: f"{namespace}{value}"})

    def to_bytes(self) -> bytes:
        return etree.tostring(self.root, xml_declaration=True, encoding="utf-8", pretty_print=True)


@dataclass
class CimObject:
    """One CIM object with what every profile of the set says about it."""

    object_id: str
    cim_class: str = ""
    values: dict[str, str] = field(default_factory=dict)  # "ACLineSegment.r" -> "1.25"; enums: "X.y"
    refs: dict[str, str] = field(default_factory=dict)  # "Terminal.ConductingEquipment" -> object id

    @property
    def label(self) -> str:
        """How an error message names the object: class, mRID and name."""
        name = self.values.get("IdentifiedObject.name")
        return f"{self.cim_class or 'object'} {self.object_id}" + (f' "{name}"' if name else "")

    def float(self, prop: str, default: float | None = None) -> float:
        text = self.values.get(prop)
        if text is None:
            if default is None:
                raise GridImportError(f"{self.label}: {prop} is missing")
            return default
        try:
            value = float(text)
        except ValueError:
            raise GridImportError(f"{self.label}: {prop} is not a number ({text!r})") from None
        if math.isnan(value):  # "NaN" parses, but no CIM attribute means it; infinite limits are fine
            raise GridImportError(f"{self.label}: {prop} is not a number ({text!r})")
        return value

    def integer(self, prop: str, default: int) -> int:
        """A count or priority: a finite whole number (CIM Integer)."""
        value = self.float(prop, float(default))
        if not math.isfinite(value) or value != round(value):
            raise GridImportError(f"{self.label}: {prop} is not a whole number ({self.values.get(prop)!r})")
        return int(value)

    def flag(self, prop: str, default: bool) -> bool:
        text = self.values.get(prop)
        return default if text is None else text.strip().lower() == "true"


def _bare_id(text: str) -> str:
    """The id an ``rdf:ID``/``rdf:about``/``rdf:resource`` names: ``#_x``, ``_x`` and ``urn:uuid:x`` are x."""
    text = text.strip()
    if text.startswith("urn:uuid:"):
        return text[9:]
    text = text.lstrip("#")
    return text[1:] if text.startswith("_") else text


@dataclass
class CimSet:
    """Every object of a CGMES set, profiles merged, and the profiles found."""

    objects: dict[str, CimObject]
    profiles: set[str]
    by_class: dict[str, list[CimObject]]

    def check_defined(self) -> None:
        """Every object a profile adds to is defined (``rdf:ID``) somewhere in the set."""
        for obj in self.by_class.get("", []):
            raise GridImportError(
                f"{obj.object_id}: described with rdf:about but defined in no file of the set "
                "(a missing profile?)"
            )

    def of(self, *classes: str) -> list[CimObject]:
        return [obj for cim_class in classes for obj in self.by_class.get(cim_class, [])]

    def target(self, obj: CimObject, prop: str, *, required: bool = True) -> CimObject | None:
        """The object ``obj.prop`` points at; a reference to nothing is an error naming both ends."""
        target_id = obj.refs.get(prop)
        if target_id is None:
            if required:
                raise GridImportError(f"{obj.label}: {prop} is missing")
            return None
        target = self.objects.get(target_id)
        if target is None or not target.cim_class:
            raise GridImportError(f"{obj.label}: {prop} refers to {target_id}, which is not in the set")
        return target


def _profiles_of(header: etree._Element | None, name: str) -> set[str]:
    found: set[str] = set()
    if header is not None:
        for profile in header.iter(f"{{{MD}}}Model.profile"):
            for word, short in _PROFILE_WORDS.items():
                if word in (profile.text or ""):
                    found.add(short)
    if not found:  # no header: the CGMES file-naming convention (..._EQ_001.xml) says which profile
        tokens = set(Path(name).stem.upper().replace("-", "_").split("_"))
        found = {short for short in PROFILES if short in tokens}
    return found


def _xml_sources(path: Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".xml", ".rdf"))
        for file in files:
            yield file.name, file.read_bytes()
        for file in sorted(p for p in path.iterdir() if p.suffix.lower() == ".zip"):
            yield from _xml_sources(file)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in sorted(archive.namelist()):
                if member.lower().endswith((".xml", ".rdf")):
                    yield member, archive.read(member)
    elif path.is_file():
        yield path.name, path.read_bytes()
    else:
        raise GridImportError(f"{path}: no such file or directory")


def read_cim(path: str | Path) -> CimSet:
    """Parse every XML file of a directory or zip into one :class:`CimSet` (profiles merged by mRID)."""
    path = Path(path)
    objects: dict[str, CimObject] = {}
    profiles: set[str] = set()
    # entities off and no network: a grid file must never make the parser fetch or expand anything
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True)
    files = 0
    for name, data in _xml_sources(path):
        files += 1
        try:
            root = etree.fromstring(data, parser)
        except etree.XMLSyntaxError as error:
            raise GridImportError(f"{name}: not well-formed XML ({error})") from None
        if root.tag != f"{{{RDF}}}RDF":
            raise GridImportError(f"{name}: not a CIM/XML file (root element is not rdf:RDF)")
        profiles |= _profiles_of(root.find(f"{{{MD}}}FullModel"), name)
        for element in root:
            if not isinstance(element.tag, str) or not element.tag.startswith(f"{{{CIM}}}"):
                continue
            cim_class = element.tag[len(CIM) + 2 :]
            raw_id = element.get(_RDF_ID) or element.get(_RDF_ABOUT)
            if raw_id is None:
                raise GridImportError(f"{name}: a cim:{cim_class} has neither rdf:ID nor rdf:about")
            obj = objects.setdefault(_bare_id(raw_id), CimObject(_bare_id(raw_id)))
            if element.get(_RDF_ID) is not None:
                obj.cim_class = cim_class
            for child in element:
                if not isinstance(child.tag, str):
                    continue
                prop = child.tag.rpartition("}")[2]
                resource = child.get(_RDF_RESOURCE)
                if resource is None:
                    obj.values[prop] = (child.text or "").strip()
                elif resource.startswith(("#", "_", "urn:uuid:")):
                    obj.refs[prop] = _bare_id(resource)
                else:  # an enumeration value: keep "Kind.value"
                    obj.values[prop] = resource.rpartition("#")[2]
    if files == 0:
        raise GridImportError(f"{path}: no CIM/XML files (*.xml) found")
    by_class: dict[str, list[CimObject]] = {}
    for obj in objects.values():
        by_class.setdefault(obj.cim_class, []).append(obj)
    return CimSet(objects, profiles, by_class)


# carbonflow fuel -> (CIM generating-unit class, FossilFuel.fossilFuelType or None).  carbonflow calls
# hydro "water" (the reference grid's fuel names); both spellings are accepted on the way out.
FUEL_UNIT_CLASS: dict[str, tuple[str, str | None]] = {
    "coal": ("ThermalGeneratingUnit", "coal"),
    "lignite": ("ThermalGeneratingUnit", "lignite"),
    "gas": ("ThermalGeneratingUnit", "gas"),
    "oil": ("ThermalGeneratingUnit", "oil"),
    "water": ("HydroGeneratingUnit", None),
    "hydro": ("HydroGeneratingUnit", None),
    "wind": ("WindGeneratingUnit", None),
    "solar": ("SolarGeneratingUnit", None),
    "nuclear": ("NuclearGeneratingUnit", None),
}
# What a unit class (and fossil fuel) means on the way in: carbonflow fuel and simulator profile.
UNIT_CLASS_FUEL: dict[str, tuple[str, str]] = {
    "HydroGeneratingUnit": ("water", "hydro"),
    "WindGeneratingUnit": ("wind", "wind"),
    "SolarGeneratingUnit": ("solar", "solar"),
    "NuclearGeneratingUnit": ("nuclear", "thermal"),
}
FOSSIL_FUEL: dict[str, str] = {
    "coal": "coal",
    "hardCoal": "coal",
    "lignite": "lignite",
    "brownCoalLignite": "lignite",
    "oilShale": "oil",
    "oil": "oil",
    "gas": "gas",
}
