"""A cascade of centers laid out from a grid document's regions: one center per region (province,
cities, counties), one Ed25519 key pair each, each center trusting exactly its upper and lower peers.
What the demo and the tests start; a real deployment writes the same TOML by hand (docs/cascade.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from carbonflow.center.cascade.config import (
    CascadeConfig,
    PeerConfig,
    new_key,
    private_key_text,
    public_key_text,
)

LEVELS = ("province", "city", "county")


def center_id(region: str) -> str:
    return region.lower().replace("/", "-")


def regions_of(grid: Mapping[str, Any], max_level: str = "county") -> list[dict[str, str]]:
    """The regions of a grid document down to ``max_level``, parents first."""
    depth = LEVELS.index(max_level) + 1
    found = [dict(r) for r in grid.get("regions", []) if len(str(r["path"]).split("/")) <= depth]
    return sorted(found, key=lambda r: (len(r["path"].split("/")), r["path"]))


def cascade_configs(
    regions: list[dict[str, str]],
    url_of: Callable[[str], str],
    directory: str | Path,
    *,
    interval_s: int = 900,
    losses: str = "receiving",
    **extra: Any,
) -> dict[str, CascadeConfig]:
    """center id -> its configuration; outboxes under ``directory``."""
    directory = Path(directory)
    keys = {r["path"]: new_key() for r in regions}
    paths = {r["path"] for r in regions}
    level = {r["path"]: str(r.get("level") or LEVELS[len(r["path"].split("/")) - 1]) for r in regions}

    def peer(path: str, direction: str) -> PeerConfig:
        return PeerConfig(
            id=center_id(path),
            region=path,
            level=level[path],
            direction=direction,
            url=url_of(center_id(path)),
            public_key=public_key_text(keys[path]),
        )

    configs = {}
    for region in regions:
        path = region["path"]
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        peers = [peer(parent, "upper")] if parent in paths else []
        peers += [peer(p, "lower") for p in sorted(paths) if p.rsplit("/", 1)[0] == path and "/" in p]
        configs[center_id(path)] = CascadeConfig(
            center_id=center_id(path),
            region=path,
            level=level[path],
            private_key=private_key_text(keys[path]),
            interval_s=interval_s,
            losses=losses,
            outbox_path=str(directory / f"{center_id(path)}-cascade-outbox.db"),
            peers=peers,
            **extra,
        )
    return configs


def leaf_regions(configs: Mapping[str, CascadeConfig]) -> dict[str, str]:
    """center id -> region of the centers that meter buses (no lower centers)."""
    return {cid: c.region for cid, c in configs.items() if not c.lowers}
