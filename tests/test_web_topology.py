"""The topology page in real headless Chromium: a legend names the node shapes and what arrows and
line widths mean, and an operator finds a bus by its id or name (its values shown, the node
highlighted); a name that matches nothing is marked.  Both languages, no script errors."""

from __future__ import annotations

import pytest
from test_web_ui import browser  # noqa: F401 - the module's Chromium
from webdata import PASSWORD, USER, populate, served

from carbonflow.center.api import CenterSettings, create_app


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("topology-ui") / "center.db"
    store, _last = populate(f"sqlite:///{path}", hours=1)
    app = create_app(CenterSettings(database_url=f"sqlite:///{path}", maintenance_period_s=0), store=store)
    with served(app) as base:
        yield base
    store.close()


SHAPES = {"en": ["plant", "substation", "user"], "zh": ["电厂", "变电站", "用户"]}


@pytest.mark.parametrize(("lang", "shapes"), SHAPES.items())
def test_the_legend_names_the_shapes_and_a_bus_is_found_by_name(server, browser, lang, shapes):  # noqa: F811
    context = browser.new_context(viewport={"width": 1440, "height": 900}, bypass_csp=True)
    context.add_init_script(f"localStorage.setItem('cf-lang', '{lang}')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/#topology")
    page.fill("#login-user", USER)
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_function("document.body.dataset.ready === 'topology'")
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
