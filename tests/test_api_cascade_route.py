"""The cascade's message route at the HTTP edge: a peer's signed envelope needs no user (the policy's
``collector`` rule, the signature checked by the node), and still gets every guard of the edge — the
security headers, the body-size and nesting limits, the JSON errors — and no audit entry of a user."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from carbonflow.center.api import CenterSettings, create_app
from carbonflow.center.api.policy import rule_for
from carbonflow.center.cascade.node import Refused
from carbonflow.center.store import Store
from carbonflow.center.store.audit import list_audit

URL = "/api/v1/cascade/messages"


class Node:
    """Stands for ``CascadeNode``: records the bodies it was handed, answers or refuses as told."""

    id = "ah"

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.refusal: Refused | None = None

    def receive(self, body: bytes) -> dict:
        self.bodies.append(body)
        if self.refusal is not None:
            raise self.refusal
        return {"status": "accepted", "message_id": json.loads(body)["message_id"], "version": 1}


class Service:
    def __init__(self) -> None:
        self.node = Node()


@pytest.fixture
def center(tmp_path):
    url = f"sqlite:///{tmp_path / 'center.db'}"
    store = Store.open(url)
    app = create_app(CenterSettings(database_url=url, max_body_bytes=4096), store=store)
    with TestClient(app) as client:
        yield client, app, store
    store.close()


def _headers_are_hardened(response) -> None:
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_route_is_in_the_policy_as_a_signed_route():
    rule = rule_for("POST", URL)
    assert rule is not None and rule.permission == "collector"


def test_a_message_reaches_the_node_as_sent_and_its_answer_comes_back_as_json(center):
    client, app, store = center
    app.state.cascade = Service()
    body = json.dumps({"message_id": "m1", "payload": {"rows": [[1, 2], [3, 4]]}}, indent=1).encode()
    response = client.post(URL, content=body)  # no user, no Origin: a peer center, not a browser
    assert response.status_code == 200
    assert response.content == b'{"status":"accepted","message_id":"m1","version":1}'
    assert response.headers["content-type"] == "application/json"
    _headers_are_hardened(response)
    assert app.state.cascade.node.bodies == [body]  # the bytes the signature covers, untouched
    assert list_audit(store, action="http.") == []


def test_a_refused_message_is_the_nodes_status_and_one_line_json(center):
    client, app, _store = center
    app.state.cascade = Service()
    app.state.cascade.node.refusal = Refused(403, "bad signature", "signature of ah-hf does not verify")
    response = client.post(URL, content=b'{"message_id": "m2"}')
    assert response.status_code == 403
    assert response.json() == {"error": "bad signature", "detail": "signature of ah-hf does not verify"}
    _headers_are_hardened(response)


def test_a_center_without_a_cascade_answers_404(center):
    client, _app, _store = center
    response = client.post(URL, content=b'{"message_id": "m3"}')
    assert response.status_code == 404 and response.json()["error"] == "no cascade configured"
    _headers_are_hardened(response)


def test_oversized_and_deeply_nested_bodies_never_reach_the_node(center):
    client, app, _store = center
    app.state.cascade = Service()
    big = client.post(URL, content=json.dumps({"message_id": "x" * 5000}))
    assert big.status_code == 413 and set(big.json()) == {"error", "detail"}
    deep = client.post(URL, content='{"a":' * 50 + "1" + "}" * 50)
    assert deep.status_code == 400 and "nested deeper" in deep.json()["error"]
    _headers_are_hardened(deep)
    assert app.state.cascade.node.bodies == []


def test_other_methods_on_the_message_path_are_refused(center):
    client, app, _store = center
    app.state.cascade = Service()
    assert client.get(URL).status_code == 405
    assert app.state.cascade.node.bodies == []
