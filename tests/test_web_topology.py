"""The topology page in real headless Chromium: a legend names the node shapes and what arrows and
line widths mean, and an operator finds a bus by its id or name (its values shown, the node
highlighted); a name that matches nothing is marked; no two visible labels overlap at any zoom (their
drawn boxes) and the graph is not empty; the first render is interactive within 1.5 s (performance marks
in the page); buses coloured by region with the regions' names in the legend.  Both languages, no
script errors."""

from __future__ import annotations

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import chart_ink, empty_twin_ink, logged_in, served_center

from carbonflow.sim.device_map import grid_document
from carbonflow.sim.reference_grid import reference_grid


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


# the visible labels of the topology's nodes as drawn: boxes in canvas pixels (ECharts' own text elements)
LABEL_BOXES = """() => { const c = window.cf.charts['topo-chart'];
  const data = c.getModel().getSeriesByIndex(0).getData(); const boxes = [];
  for (let i = 0; i < data.count(); i += 1) {
    const el = data.getItemGraphicEl(i); let text = el && el.getTextContent && el.getTextContent();
    if (el && !text) el.traverse((child) => { text = text || (child.getTextContent?.() ?? null); });
    if (!text || text.ignore || text.invisible || !text.style.text) continue;
    const r = text.getBoundingRect().clone(); const m = text.getComputedTransform();
    if (m) r.applyTransform(m);
    boxes.push([data.getName(i), r.x, r.y, r.width, r.height]);
  }
  return boxes; }"""


def overlapping(boxes) -> list[tuple[str, str]]:
    """Pairs of labels whose boxes overlap (by more than half a pixel each way)."""
    pairs = []
    for k, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[k + 1 :]:
            if min(ax + aw, bx + bw) - max(ax, bx) > 0.5 and min(ay + ah, by + bh) - max(ay, by) > 0.5:
                pairs.append((a, b))
    return pairs


def _zoom(page, zoom: float, hide: bool = True) -> None:
    page.evaluate(
        f"window.cf.charts['topo-chart'].setOption({{ series: [{{ zoom: {zoom},"
        f" labelLayout: {{ hideOverlap: {'true' if hide else 'false'} }} }}] }})"
    )
    page.wait_for_timeout(200)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_no_two_visible_labels_overlap_at_any_zoom_and_the_graph_is_drawn(server, browser, lang):  # noqa: F811
    context, page, errors = logged_in(browser, server, "topology", lang)
    for zoom in (1, 0.5, 2, 4):
        _zoom(page, zoom)
        boxes = page.evaluate(LABEL_BOXES)
        assert len(boxes) >= 5, (zoom, boxes)  # labels are shown, not all hidden
        assert overlapping(boxes) == [], (zoom, overlapping(boxes))
    # the check sees overlaps when labels are not laid out (a zoomed-out graph without collision handling)
    _zoom(page, 0.5, hide=False)
    assert overlapping(page.evaluate(LABEL_BOXES)), "the geometry check would not see an overlap"
    page.evaluate("drawTopology()")
    # the graph is drawn: far more ink on its canvas than the same chart without nodes and branches
    drawn, empty = chart_ink(page, "topo-chart"), empty_twin_ink(page, "topo-chart")
    assert drawn["share"] > 2 * empty["share"] + 0.005 and drawn["colours"] > 30, (drawn, empty)
    assert errors == []
    context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_first_render_of_the_reference_grid_is_interactive_within_1_5_s(server, browser, lang):  # noqa: F811
    """The issue asks for this timing (time to interactive < 1.5 s), measured in the page with
    performance marks: from the page's start to the first frame with the click handler set."""
    context, page, errors = logged_in(browser, server, "overview", lang)
    page.evaluate("document.body.dataset.ready = ''")
    page.click('#nav button[data-page="topology"]')
    page.wait_for_function("document.body.dataset.ready === 'topology'")
    page.wait_for_function("performance.getEntriesByName('cf-topology-tti').length === 1")
    tti_ms = page.evaluate("performance.getEntriesByName('cf-topology-tti')[0].duration")
    assert page.evaluate("window.cf.topo.buses.length") == 104  # the reference grid
    print(f"topology time to interactive ({lang}): {tti_ms:.0f} ms")  # docs/web.md quotes it (-s)
    assert 0 < tti_ms < 1500, f"time to interactive {tti_ms:.0f} ms"
    x, y = page.evaluate("window.cf.busPixel('U01')")  # and it is interactive: a click shows the bus
    box = page.locator("#topo-chart").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function("document.getElementById('info-id')?.textContent === 'U01'")
    assert errors == []
    context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_buses_are_coloured_by_region_with_the_regions_named_in_the_legend(server, browser, lang):  # noqa: F811
    context, page, errors = logged_in(browser, server, "topology", lang)
    grid = grid_document(reference_grid())
    names = {r["path"]: r[f"name_{lang}"] for r in grid["regions"]}
    counties = sorted({b["region"] for b in grid["buses"]})
    before = page.evaluate("window.cf.charts['topo-chart'].getOption().series[0]")
    assert not before.get("categories")
    page.check("#topo-regions")
    page.wait_for_timeout(200)
    option = page.evaluate("window.cf.charts['topo-chart'].getOption()")
    series = option["series"][0]
    assert [c["name"] for c in series["categories"]] == [names[path] for path in counties]
    assert option["legend"][0]["data"] == [names[path] for path in counties]  # the names, not AH/HF/FX
    colour = {}
    for node in series["data"]:
        colour.setdefault(node["bus"]["region"], set()).add(node["itemStyle"]["color"])
    assert all(len(c) == 1 for c in colour.values())  # one colour per region, a colour each
    assert len({c.pop() for c in colour.values()}) == len(counties)
    assert "dimmed" in page.get_attribute("#topo-intensity-legend", "class")
    page.uncheck("#topo-regions")  # back to intensity colours
    page.wait_for_timeout(200)
    after = page.evaluate("window.cf.charts['topo-chart'].getOption()")
    assert not after["series"][0].get("categories") and not after.get("legend")
    assert errors == []
    context.close()
