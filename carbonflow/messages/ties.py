"""Cross-region tie intensities: what a center publishes, per interval, to the center of a neighbouring
region it shares tie lines with (docs/interop.md, "Cross-region intensities").

One :class:`TieIntensities` document per interval (``ts`` = interval end) and neighbour: for every tie
line between the two regions, the nodal carbon intensity of the publisher's bus at the tie and the power
the publisher metered into the tie at its own end.  The neighbour uses the intensity for the power it
imports over the tie (instead of a default import intensity) and the metered power as the far end of
the tie line (so the line's loss is the difference of the two centers' meters, as in one computation
of both regions).

The document is signed with the publisher's Ed25519 key over :meth:`TieIntensities.canonical` (the
document without ``signature``, keys sorted, no spaces) — the same scheme as the cascade's C5 envelope.
``version`` is the publisher's version of the interval: a center that meters an interval again (late
readings, a neighbour's late intensities) publishes it again with a higher version.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from carbonflow.messages.base import Contract
from carbonflow.messages.c5 import CenterId, SignedDocument, UtcTime

SCHEMA_VERSION = 1


class TiePoint(Contract):
    """One tie line as the publisher metered it over the interval."""

    tie_id: str = Field(min_length=1, max_length=200)  # the branch id both centers configure
    bus: str = Field(min_length=1)  # the publisher's bus at the tie
    neighbour_bus: str = Field(min_length=1)  # the recipient's bus at the tie
    intensity_g_per_kwh: float | None = Field(ge=0)  # nodal intensity of ``bus``; None: no flux there
    # mean power injected into the tie at the publisher's end (MATPOWER sign: > 0 flows towards the
    # recipient); None: not metered
    p_into_tie_mw: float | None = None
    u_p_into_tie_mw: float | None = Field(default=None, ge=0)  # its standard uncertainty (1σ)
    estimated: bool = False  # the publisher's own result of the interval used estimates


class TieIntensities(SignedDocument):
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    TITLE: ClassVar[str] = "tie intensities"

    schema_version: int = SCHEMA_VERSION
    kind: Literal["tie_intensities"] = "tie_intensities"
    document_id: str = Field(min_length=8, max_length=64)  # idempotency key (a UUID)
    sender: CenterId
    recipient: CenterId
    ts: UtcTime  # interval end
    interval_s: int = Field(gt=0)
    version: int = Field(default=1, ge=1)
    losses: Literal["receiving", "consumer"] = "receiving"
    created_at: UtcTime
    ties: list[TiePoint] = Field(min_length=1)
