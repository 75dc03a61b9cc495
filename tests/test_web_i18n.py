"""The whole UI in the user's language, in real headless Chromium: regions shown by their names (not
``AH/HF/FX``); every enumeration value of the shipped data (fuels, industries, device kinds, bus kinds)
has a label in both languages; no page shows an untranslated key or raw enumeration value
(``mixed_urban``, ``substation_meter``, ``set_carbon_factor``: anything spelled with an underscore)."""

from __future__ import annotations

import re

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import logged_in, served_center

from carbonflow.sim.device_map import build_device_map, grid_document
from carbonflow.sim.reference_grid import reference_grid

PAGES = (
    "overview", "generation", "grid", "consumption", "history", "devices", "cameras", "analysis", "cascade",
    "maintenance",
)  # fmt: skip
RAW = re.compile(r"\b[a-z]+_[a-z0-9_]+\b")  # snake_case: a key or an enumeration value as stored


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("i18n-ui")) as (base, _store):
        yield base


def shipped_values() -> dict[str, set[str]]:
    net = reference_grid()
    grid, devices = grid_document(net), build_device_map(net)["devices"]
    return {
        "fuel": {str(g["fuel"]) for g in grid["generators"] if g.get("fuel")},
        "industry": {str(x["industry"]) for x in grid["loads"] if x.get("industry")},
        "device_kind": {str(d["kind"]) for d in devices},
        "bus_kind": {str(b["kind"]) for b in grid["buses"]},
    }


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_page_shows_a_raw_key_or_enumeration_value(server, browser, lang):  # noqa: F811
    context, page, errors = logged_in(browser, server, "overview", lang)

    labels = page.evaluate(f"window.CF_ENUMS['{lang}']")
    for kind, values in shipped_values().items():
        missing = sorted(values - set(labels[kind]))
        assert not missing, f"{lang}: no label for {kind} {missing}"

    for name in PAGES:
        page.evaluate("document.body.dataset.ready = ''")
        page.click(f'#nav button[data-page="{name}"]')
        page.wait_for_function(f"document.body.dataset.ready === '{name}'")
        shown = page.inner_text(f"#page-{name}") + "\n" + page.inner_text("header")
        raw = sorted(set(RAW.findall(shown)))
        assert not raw, f"{lang} {name}: {raw}"
    page.click('#nav button[data-page="generation"]')
    page.wait_for_function("document.body.dataset.ready === 'generation'")
    fuels = page.locator("#gen-plants tbody tr td:nth-child(2)").all_inner_texts()
    expected = {labels["fuel"][f] for f in shipped_values()["fuel"]}
    assert fuels and set(fuels) <= expected, fuels  # "water" reads 水电 / hydro
    names = {r[f"name_{lang}"] for r in grid_document(reference_grid())["regions"]}
    plant_regions = page.locator("#gen-plants tbody tr td:nth-child(3)").all_inner_texts()
    assert plant_regions and set(plant_regions) <= names, plant_regions  # names, not AH/HF/FX
    page.click('#nav button[data-page="consumption"]')
    page.wait_for_function("document.body.dataset.ready === 'consumption'")
    user_regions = page.locator("#con-users tbody tr td:nth-child(2)").all_inner_texts()
    assert user_regions and set(user_regions) <= names, user_regions
    assert errors == []
    context.close()
