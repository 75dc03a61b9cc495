"""The topology page in real headless Chromium: a legend names the node shapes and what arrows and
line widths mean, and an operator finds a bus by its id or name (its values shown, the node
highlighted); a name that matches nothing is marked.  Both languages, no script errors."""

from __future__ import annotations

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import logged_in, served_center


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served_center(tmp_path_factory.mktemp("topology-ui")) as (base, _store):
        yield base


SHAPES = {"en": ["plant", "substation", "user"], "zh": ["电厂", "变电站", "用户"]}


@pytest.mark.parametrize(("lang", "shapes"), SHAPES.items())
def test_the_legend_names_the_shapes_and_a_bus_is_found_by_name(server, browser, lang, shapes):  # noqa: F811
    context, page, errors = logged_in(browser, server, "topology", lang)
    legend = page.inner_text(".legend.shapes")
    assert all(shape in legend for shape in shapes), legend
    page.fill("#topo-search", "U04")
    page.dispatch_event("#topo-search", "change")
    page.wait_for_function("document.getElementById('info-id')?.textContent === 'U04'")
    name = page.evaluate("window.cf.topo.buses.find((b) => b.id === 'U07').name")
    page.fill("#topo-search", name)  # by its name
    page.dispatch_event("#topo-search", "change")
    page.wait_for_function("document.getElementById('info-id')?.textContent === 'U07'")
    page.fill("#topo-search", "no such bus")
    page.dispatch_event("#topo-search", "change")
    assert "not-found" in (page.get_attribute("#topo-search", "class") or "")
    assert errors == []
    context.close()
