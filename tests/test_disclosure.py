"""Public disclosure: no aggregate behind fewer users than the threshold (nor one derivable as a parent
minus its published children), no user without consent; no login needed to read; releases immutable and
versioned, published by an analyst only; and the public page in real Chromium (text nodes only)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from test_web_ui import _require_browser
from webdata import PASSWORD, populate, served

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.reports.disclosure import disclosure
from carbonflow.center.store import create_user, load_directory

CONSENT = ["U01", "U03"]


@pytest.fixture(scope="module")
def center(tmp_path_factory):
    path = tmp_path_factory.mktemp("public") / "center.db"
    store, _last = populate(f"sqlite:///{path}", hours=2)
    create_user(store, "ana", PASSWORD, "analyst")
    create_user(store, "vic", PASSWORD, "viewer")
    settings = CenterSettings(
        database_url=f"sqlite:///{path}", maintenance_period_s=0, disclosure_consent=CONSENT
    )
    app = create_app(settings, store=store)
    yield app, store
    store.close()


def _check_no_leak(content: dict, min_users: int) -> None:
    published = {r["region"] for r in content["regions"] if not r["suppressed"]}
    for item in content["regions"] + content["industries"]:
        if item["suppressed"]:
            assert set(item) <= {"region", "parent", "depth", "industry", "suppressed"}  # no figure at all
        else:
            assert item["users"] >= min_users
    children: dict = {}
    for item in content["regions"]:
        children.setdefault(item["parent"], []).append(item)
    for parent, kids in children.items():
        if parent in published or (parent is None and not content["total"]["suppressed"]):
            assert sum(k["suppressed"] for k in kids) != 1  # parent minus siblings would reveal it
    if not content["total"]["suppressed"]:
        assert sum(i["suppressed"] for i in content["industries"]) != 1


@pytest.mark.parametrize("min_users", [1, 3, 8, 12, 40, 100])
def test_no_aggregate_under_the_threshold(center, min_users):
    _app, store = center
    content = disclosure(store, "day", "2025-06-02", min_users=min_users, consent=CONSENT)
    _check_no_leak(content, min_users)
    if min_users == 3:  # the reference grid has single-user industries: they are withheld
        assert any(i["suppressed"] for i in content["industries"])
        assert any(not r["suppressed"] for r in content["regions"])
    if min_users == 100:
        assert content["total"] == {"suppressed": True}


def test_key_users_only_with_consent(center):
    _app, store = center
    content = disclosure(store, "day", "2025-06-02", consent=["U01", "NOT-A-USER"])
    assert [u["id"] for u in content["key_users"]] == ["U01"]
    assert content["key_users"][0]["carbon_t"] > 0
    assert disclosure(store, "day", "2025-06-02")["key_users"] == []
    names = {u["user_name"] for u in load_directory(store) if u["id"] != "U01"}
    assert not names & {str(v) for item in content["regions"] + content["industries"] for v in item.values()}


def test_public_api_without_login(center):
    app, _store = center
    anonymous = TestClient(app)
    for part in ("regions", "industries", "key-users"):
        answer = anonymous.get(f"/api/v1/public/{part}", params={"period": "day", "start": "2025-06-02"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["min_users"] == 3
    assert [u["id"] for u in anonymous.get("/api/v1/public/key-users").json()["items"]] == CONSENT
    bad = anonymous.get("/api/v1/public/regions", params={"period": "week", "start": "2025"})
    assert bad.status_code == 400 and "period" in bad.json()["error"]
    assert anonymous.get("/api/v1/public/regions", params={"period": "day"}).status_code == 400
    assert anonymous.get("/public").status_code == 200


def test_releases_are_immutable_versions(center):
    app, _store = center
    anonymous = TestClient(app)
    assert anonymous.post("/api/v1/releases", json={}).status_code == 401
    vic = anonymous.post("/api/v1/login", json={"name": "vic", "password": PASSWORD}).json()["token"]
    assert (
        anonymous.post("/api/v1/releases", json={}, headers={"Authorization": f"Bearer {vic}"}).status_code
        == 403
    )
    token = anonymous.post("/api/v1/login", json={"name": "ana", "password": PASSWORD}).json()["token"]
    analyst = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    first = analyst.post("/api/v1/releases", json={"period": "day", "start": "2025-06-02", "note": "June 2"})
    second = analyst.post("/api/v1/releases", json={"period": "day", "start": "2025-06-02"})
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"] + 1
    assert first.json()["sha256"] == second.json()["sha256"]  # the same data, the same content
    listed = anonymous.get("/api/v1/public/releases").json()["items"]
    assert [r["id"] for r in listed][:2] == [second.json()["id"], first.json()["id"]]
    release = anonymous.get(f"/api/v1/public/releases/{first.json()['id']}").json()
    _check_no_leak(release["content"], release["min_users"])
    download = anonymous.get(f"/api/v1/public/releases/{first.json()['id']}", params={"download": "true"})
    assert "attachment" in download.headers["content-disposition"]
    assert anonymous.get("/api/v1/public/releases/999999").status_code == 404
    bad = analyst.post("/api/v1/releases", json={"period": "month", "start": "June"})
    assert bad.status_code == 400 and "start" in bad.json()["error"]


def test_public_page_in_chromium(center, tmp_path):
    sync_playwright = _require_browser()
    from test_web_ui import CHROMIUM

    app, _store = center
    with served(app) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{base}/public")
            page.wait_for_selector("#regions .region")
            assert page.locator("#regions .region[data-region='AH']").count() == 1
            nested = page.locator("#regions li li li .region").count()  # province > city > county
            assert nested > 0
            assert page.locator("#industries tbody tr", has_text="withheld").count() > 0
            assert page.locator("#key-users tbody tr").count() == len(CONSENT)
            page.fill("#start", "2025-06-02")
            page.select_option("#period", "day")
            page.click("button[type=submit]")
            page.locator("#meta", has_text="day 2025-06-02").wait_for()
            page.fill("#start", "bad")
            page.click("button[type=submit]")
            page.locator("#error", has_text="start").wait_for()
            page.screenshot(path=str(tmp_path / "public.png"))
            assert not [e for e in errors if "Content Security Policy" in e]
        finally:
            browser.close()
