"""Raw checks of the wire details asyncari (asyncswagger11 + httpx + wsproto)
depends on, each next to the asyncari call that needs it."""

import json
import urllib.parse

import anyio
import pytest
from asyncari.model import OperationError

from conftest import PASS, PORT, USER, ari_app, media_sink, raw

RESOURCES = ["asterisk", "channels", "bridges", "events", "applications"]


@pytest.mark.parametrize("host", [f"localhost:{PORT}", f"127.0.0.1:{PORT}"])
def test_base_path_follows_host_header(crossbar, host):
    # asyncswagger11 only sends api_key to the host named in basePath, and builds
    # the events WebSocket URL from it: every doc must echo the Host header.
    status, headers, text = raw("GET", "/ari/api-docs/resources.json", headers={"Host": host})
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    doc = json.loads(text)
    assert doc["swaggerVersion"] == "1.1", "asyncswagger11 accepts only 1.1 here"
    assert doc["basePath"] == f"http://{host}/ari"
    names = [a["path"] for a in doc["apis"]]
    for name in RESOURCES:
        assert f"/api-docs/{name}.{{format}}" in names
    for api in doc["apis"]:
        assert api["description"]
        status, _, text = raw("GET", "/ari" + api["path"].replace("{format}", "json"), headers={"Host": host})
        assert status == 200, api["path"]
        res = json.loads(text)
        assert res["basePath"] == f"http://{host}/ari", api["path"]
        assert "models" in res and "resourcePath" in res
        for model_id, model in res["models"].items():
            assert model["id"] == model_id
            assert all("type" in p for p in model["properties"].values()), model_id
        for a in res["apis"]:
            for op in a["operations"]:
                for p in op["parameters"]:
                    assert "required" in p, (op["nickname"], p["name"])
                    if p["paramType"] == "path":
                        assert p["required"] is True
                    else:
                        assert "dataType" in p
                    assert "allowedValues" not in p


def test_api_key_query_auth(crossbar):
    # httpx form-encodes api_key=user:pass as user%3Apass; Asterisk splits at the first ':'.
    key = urllib.parse.urlencode({"api_key": f"{USER}:{PASS}"})
    assert "%3A" in key
    assert raw("GET", f"/ari/asterisk/ping?{key}", auth=False)[0] == 200
    status, headers, text = raw("GET", "/ari/asterisk/ping?api_key=asterisk%3Awrong", auth=False)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="Asterisk REST Interface"'
    assert json.loads(text) == {"message": "Authentication required"}
    status, _, _ = raw("GET", "/ari/api-docs/resources.json", auth=False)
    assert status == 401, "api-docs need auth, as in Asterisk"


def test_hangup_unknown_channel_is_404(crossbar):
    # asyncari's mayNotExist (safe_hangup, handle_exit) swallows exactly 404.
    status, headers, text = raw("DELETE", "/ari/channels/no-such-channel", headers={"Content-Type": "application/json"})
    assert status == 404
    assert json.loads(text) == {"message": "Channel not found"}


def test_events_without_app_is_400(crossbar):
    status, _, text = raw(
        "GET",
        "/ari/events",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert status == 400
    assert "HTTP request is missing param: [app]" in text


@pytest.mark.anyio
async def test_error_bodies_and_plus_in_path(crossbar):
    with anyio.fail_after(15), media_sink() as host:
        async with ari_app(crossbar, "py-wire") as (client, rec):
            # A 400 body {"message": ...} becomes asyncari's OperationError(message).
            with pytest.raises(OperationError, match=r"Provided format \(nope\) was not found"):
                await client.channels.externalMedia(app="py-wire", external_host=host, format="nope")
            # asyncari quote_plus()es path params: a space goes out as '+', which
            # Asterisk decodes back to a space (ast_uri_http_legacy).
            ch = await client.channels.externalMedia(
                app="py-wire", external_host=host, format="ulaw", channelId="py wire 1"
            )
            assert ch.id == "py wire 1"
            await rec.wait_type("StasisStart", "py wire 1")
            got = await ch.getChannelVar(variable="UNICASTRTP_LOCAL_PORT")
            assert int(got["value"]) > 0
            assert raw("GET", "/ari/channels/py+wire+1")[0] == 200
            assert raw("GET", "/ari/channels/py%20wire%201")[0] == 200
            await ch.hangup()
            destroyed = await rec.wait_type("ChannelDestroyed", "py wire 1")
            assert destroyed.cause == 16
