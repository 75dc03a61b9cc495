"""The standard uncertainty of every snapshot input, from what the assembly found, as engine arrays."""

from __future__ import annotations

import numpy as np

from carbonflow.center.metering.assemble import Assembled
from carbonflow.engine.snapshot import Snapshot
from carbonflow.engine.uncertainty import InputUncertainty


def input_uncertainty(snapshot: Snapshot, assembled: Assembled) -> InputUncertainty:
    u = assembled.uncertainty

    def aligned(section: str, ids: tuple[str, ...]) -> np.ndarray:
        values = u.get(section, {})
        return np.array([values.get(element, 0.0) for element in ids], dtype=float)

    return InputUncertainty(
        gen_p_mw=aligned("generators", snapshot.gen_ids),
        gen_intensity_g_per_kwh=aligned("generator_intensity", snapshot.gen_ids),
        load_p_mw=aligned("loads", snapshot.load_ids),
        branch_p_from_mw=aligned("branches_from", snapshot.branch_ids),
        branch_p_to_mw=aligned("branches_to", snapshot.branch_ids),
        storage_p_mw=aligned("storage", snapshot.storage_ids),
    )
