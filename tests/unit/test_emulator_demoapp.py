"""The emulated kuma-counter-demo answers like the real app, and the convergence of the data plane view."""

from __future__ import annotations

import json
import re

from sandbox.emulator.config import ConfigSource, EmulatorConfig
from sandbox.emulator.demoapp import App, KvUnreachable, Request
from sandbox.emulator.policy import Mode, Proxy
from sandbox.emulator.world import Converger, View


def kv_backed(allowed: bool = True) -> tuple[App, App]:
    kv = App("", None)

    def client(method: str, key: str, body: dict | None):
        if not allowed:
            return 403, None
        resp = kv.handle(Request(method, f"/api/key-value/{key}", {}, json.dumps(body).encode() if body else b""))
        return resp.status, json.loads(resp.body)

    return App("v1", client), kv


def call(app: App, method: str = "POST", headers: dict | None = None) -> tuple[int, dict]:
    resp = app.handle(Request(method, "/api/counter", headers or {}))
    return resp.status, json.loads(resp.body)


def test_counter_counts_reads_and_resets():
    demo, _ = kv_backed()
    assert call(demo) == (200, {"counter": 1, "zone": ""})
    assert call(demo) == (200, {"counter": 2, "zone": ""})
    assert call(demo, "GET") == (200, {"counter": 2, "zone": ""})
    assert call(demo, "DELETE") == (200, {"counter": 0, "zone": ""})
    assert call(demo, "DELETE")[0] == 404  # "Key not found"
    assert call(demo) == (200, {"counter": 1, "zone": ""})


def test_denied_kv_gives_the_real_500_body_in_go_field_order():
    demo, _ = kv_backed(allowed=False)
    resp = demo.handle(Request("POST", "/api/counter"))
    assert resp.status == 500 and resp.headers["Content-Type"] == "application/json; charset=utf-8"
    assert re.fullmatch(rb'\{"instance":"[0-9a-f]{32}","status":500,"title":"failed to retrieve zone",'
                        rb'"type":"https://github.com/kumahq/kuma-counter-demo/blob/main/ERRORS.md#INTERNAL-ERROR"\}\n',
                        resp.body)
    assert call(demo, "GET")[1]["title"] == call(demo, "DELETE")[1]["title"] == "failed to retrieve zone"


def test_unreachable_kv_is_the_same_500():
    def unreachable(*_):
        raise KvUnreachable("no healthy upstream")

    assert call(App("v1", unreachable))[1]["title"] == "failed to retrieve zone"


def test_fault_headers():
    demo, _ = kv_backed()
    status, body = call(demo, headers={"x-set-response-status-code": "418"})
    assert status == 418 and body["counter"] == 1
    status, body = call(demo, headers={"x-failure-percentage": "100"})
    assert status == 500 and body == {"counter": 2, "zone": ""}  # the real app keeps the body
    denied, _ = kv_backed(allowed=False)
    assert call(denied, headers={"x-set-response-status-code": "200"})[0] == 500  # 5xx are not overridden


def test_roles_guard_their_apis():
    demo, kv = kv_backed()
    assert call(kv)[1]["title"] == "kv api url is not set"
    assert demo.handle(Request("GET", "/api/key-value/zone")).status == 400
    assert demo.handle(Request("GET", "/nope")).status == 404


def test_converger_publishes_views_after_the_delay_in_order():
    first = View({"a": Proxy("a", "ns", Mode.LEGACY)})
    second = View({"a": Proxy("a", "ns", Mode.IDENTITY)})
    conv = Converger()
    conv.offer(first, now=0.0, delay_s=2.0)
    conv.offer(second, now=1.0, delay_s=2.0)
    assert conv.published == View()
    conv.offer(None, now=2.0, delay_s=2.0)
    assert conv.published == first
    conv.offer(None, now=3.5, delay_s=2.0)
    assert conv.published == second
    conv.offer(first, now=4.0, delay_s=0.0)
    assert conv.published == first


def test_config_source_rereads_the_file_and_keeps_the_last_good_one(tmp_path):
    path = tmp_path / "emulator.json"
    source = ConfigSource(path)
    assert source.current == EmulatorConfig()
    path.write_text('{"tick_s": 0.5, "transient_503_share": 0.25}')
    assert source.current.transient_503_share == 0.25
    path.write_text('{"tick_s": "broken", "extra": 1}')
    assert source.current.tick_s == 0.5
