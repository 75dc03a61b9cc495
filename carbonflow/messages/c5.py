"""Contract C5: the cascade exchange between a lower and an upper center (DESIGN §5).

Per interval (``ts`` = interval end, ``interval_s`` explicit):

* lower -> upper, :class:`IntervalReport`: the lower region's totals (generation, load and loss carbon
  and energy), the flow on every tie (boundary) branch with the lower side's intensity there, aggregated
  meter sums and the hash of the lower's interval result;
* lower -> upper, :class:`RegionData`: the lower region's metered part of the snapshot, which the upper
  merges with its other lower regions' parts to recompute its whole region;
* upper -> lower, :class:`BoundaryIntensities`: the upper's nodal intensity at each boundary bus (the
  import intensity the lower must use), and :class:`Verification`: the upper's verdicts on a report.

Every message travels in an :class:`Envelope` signed with the sender center's Ed25519 key over
:meth:`Envelope.canonical` (the envelope without ``signature``, keys sorted, no spaces), so a message
cannot be forged or altered on its way or while it waits in a store-and-forward queue.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AfterValidator, Field

from carbonflow.messages.base import ID_PATTERN, Contract, Document

SCHEMA_VERSION = 1
VerdictStatus = Literal["ok", "mismatch", "pending"]
CenterId = Annotated[str, Field(min_length=1, max_length=100, pattern=ID_PATTERN)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone (UTC)")
    return value.astimezone(UTC)


UtcTime = Annotated[datetime, AfterValidator(_utc)]


class RegionTotals(Contract):
    """What the reported region generated, consumed and lost over the interval."""

    region: str = Field(min_length=1)  # path, e.g. "AH/HF"
    generation_carbon_t: float
    load_carbon_t: float
    loss_carbon_t: float
    generation_energy_kwh: float
    load_energy_kwh: float
    loss_energy_kwh: float
    import_energy_kwh: float = 0.0  # over tie branches, into the region
    export_energy_kwh: float = 0.0
    # 1σ of (generation + imports - load - loss - exports) from the metered uncertainties of the region's
    # elements, branch ends and ties (None: exact data): metered values close a balance only within it
    u_balance_kwh: float | None = Field(default=None, ge=0)


class TieFlow(Contract):
    """One boundary branch as the lower center metered it; positive flow goes into the lower region."""

    branch_id: str = Field(min_length=1)
    lower_bus: str = Field(min_length=1)
    upper_bus: str = Field(min_length=1)
    p_into_lower_mw: float  # mean over the interval
    energy_into_lower_kwh: float
    lower_intensity_g_per_kwh: float | None = Field(default=None, ge=0)  # None: the bus had no flux
    # the import intensity the lower center used for this tie (imports only): what the upper handed down
    import_intensity_g_per_kwh: float | None = Field(default=None, ge=0)


class MeterSum(Contract):
    """Σ of one metered quantity over the region's points of one element kind (exact decimals)."""

    element_kind: Literal["bus", "generator", "branch", "load", "storage"]
    quantity: str = Field(min_length=1)  # e.g. export_energy_kwh, carbon_kg
    total: Decimal
    points: int = Field(ge=0)  # how many points were summed
    estimated: int = Field(default=0, ge=0)  # of which estimated (not read)


class IntervalReport(Contract):
    kind: Literal["interval_report"] = "interval_report"
    totals: RegionTotals
    ties: list[TieFlow] = Field(default_factory=list)
    meter_sums: list[MeterSum] = Field(default_factory=list)
    result_hash: Sha256Hex  # of the lower's stored interval result


class RegionData(Contract):
    """What the lower center metered over the interval, for the upper to recompute its whole region: the
    lower region's part of the snapshot (C1 records of its buses, generators, loads, storage and inner
    branches) and its ties, each with the power injected into the branch at the lower's own end."""

    kind: Literal["region_data"] = "region_data"
    region: str = Field(min_length=1)
    part: dict[str, Any]


class BoundaryIntensity(Contract):
    bus: str = Field(min_length=1)  # the upper-side boundary bus
    branch_id: str | None = None
    intensity_g_per_kwh: float | None = Field(ge=0)  # None: the bus had no flux


class BoundaryIntensities(Contract):
    kind: Literal["boundary_intensities"] = "boundary_intensities"
    boundaries: list[BoundaryIntensity]


class Verdict(Contract):
    check: Literal["balance", "tie_flow", "tie_intensity", "hierarchical", "clock", "data"]
    status: VerdictStatus
    subject: str | None = None  # e.g. the tie branch id
    expected: float | None = None
    found: float | None = None
    tolerance: float | None = None
    detail: str = ""


class Verification(Contract):
    kind: Literal["verification"] = "verification"
    report_hash: Sha256Hex  # the result hash of the report judged
    status: VerdictStatus  # mismatch if any verdict is
    verdicts: list[Verdict] = Field(default_factory=list)


Payload = Annotated[
    RegionData | IntervalReport | BoundaryIntensities | Verification, Field(discriminator="kind")
]


class SignedDocument(Document):
    """A document signed with its sender's Ed25519 key over its canonical JSON (sorted keys, no
    signature): cascade envelopes and cross-region tie intensities."""

    signature_alg: Literal["ed25519"] = "ed25519"
    key_id: str | None = None  # which of the sender's keys (rotation)
    signature: str | None = None  # base64 of the 64-byte Ed25519 signature

    def canonical(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"signature"})
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def signed(self, key: Ed25519PrivateKey) -> Self:
        signature = base64.b64encode(key.sign(self.canonical())).decode("ascii")
        return self.model_copy(update={"signature": signature})

    def verify(self, key: Ed25519PublicKey) -> bool:
        if self.signature is None:
            return False
        try:
            key.verify(base64.b64decode(self.signature, validate=True), self.canonical())
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


class Envelope(SignedDocument):
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    TITLE: ClassVar[str] = "cascade message"

    schema_version: int = SCHEMA_VERSION
    message_id: str = Field(min_length=8, max_length=64)  # idempotency key (a UUID)
    sender: CenterId
    recipient: CenterId
    ts: UtcTime  # interval end
    interval_s: int = Field(gt=0)
    created_at: UtcTime
    payload: Payload
