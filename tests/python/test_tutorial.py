"""The classic ARI tutorial apps (channel-dump, bridge-dial, a single-slide
conference, moving between applications), adapted to crossbar's externalMedia
and Local channels, driven through the unmodified asyncari==0.20.6.

asyncari caches objects per class and id across clients in one process, so a
channel may only ever be seen by one client here: the move test therefore uses
one client holding both applications (one WebSocket, `app=move-a,move-b`)."""

import anyio
import pytest
from asyncari.model import Bridge, Channel, OperationError
from httpx import HTTPStatusError

from conftest import RTP_MAX, RTP_MIN, ari_app, body, media_phone, media_sink, rtp_packet

pytestmark = pytest.mark.anyio

TEST_TIMEOUT = 20


async def test_asterisk_info_and_ping(crossbar):
    with anyio.fail_after(TEST_TIMEOUT):
        async with ari_app(crossbar, "py-info") as (client, _rec):
            info = await client.asterisk.getInfo()
            assert set(info) == {"build", "system", "config", "status"}
            assert info["system"]["entity_id"] == "02:fc:00:00:00:01"
            only = await client.asterisk.getInfo(only="status")
            assert set(only) == {"status"}
            pong = await client.asterisk.ping()
            assert pong["ping"] == "pong"
            assert pong["asterisk_id"] == "02:fc:00:00:00:01"


async def test_channel_dump(crossbar):
    with anyio.fail_after(TEST_TIMEOUT), media_sink() as host:
        async with ari_app(crossbar, "py-channel-dump") as (client, rec):
            out = []
            before = await client.channels.list()
            assert isinstance(before, list)
            if not before:
                out.append("No channels currently :-(")
            for c in before:
                out.append(c.json["name"])

            entered = anyio.Event()
            dumped = {}

            async def dump():
                async with client.on_channel_event("StasisStart") as listener:
                    async for objs, ev in listener:
                        channel = objs["channel"]
                        out.append(f"Channel {channel.json['name']} has entered the application")
                        for key, value in ev["channel"].items():
                            out.append(f"{key}: {value!r}")
                        dumped.update(channel=channel, event=ev, objs=objs)
                        entered.set()
                        return

            client.taskgroup.start_soon(dump)
            await anyio.sleep(0)  # let the listener register before the channel appears
            created = await client.channels.externalMedia(
                app="py-channel-dump",
                external_host=host,
                format="ulaw",
                data="dump,me",
                variables={"GREETING": "hello"},
            )
            assert isinstance(created, Channel)
            await entered.wait()
            channel, ev = dumped["channel"], dumped["event"]
            assert set(dumped["objs"]) == {"channel"}, "replace_channel omitted, not null"
            assert channel is created, "asyncari maps the event to the same Channel object"
            assert ev.args == ["dump", "me"]
            assert ev.application == "py-channel-dump"
            assert channel.json["name"].startswith(f"UnicastRTP/{host}-")
            assert channel.json["state"] == "Up"
            port = int(channel.json["channelvars"]["UNICASTRTP_LOCAL_PORT"])
            assert RTP_MIN <= port <= RTP_MAX
            assert f"Channel {channel.json['name']} has entered the application" in out
            assert f"id: {channel.id!r}" in out

            listed = await client.channels.list()
            assert channel.id in [c.id for c in listed]
            var = await channel.getChannelVar(variable="GREETING")
            assert var == {"value": "hello"}
            var = await channel.getChannelVar(variable="UNICASTRTP_LOCAL_PORT")
            assert int(var["value"]) == port

            await channel.hangup()
            end = await rec.wait_type("StasisEnd", channel.id)
            assert end.channel is channel
            destroyed = await rec.wait_type("ChannelDestroyed", channel.id)
            assert (destroyed.cause, destroyed.cause_txt) == (16, "Normal Clearing")
            assert rec.types(channel.id) == ["StasisStart", "ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
            assert channel.id not in [c.id for c in await client.channels.list()]


async def test_bridge_dial(crossbar):
    """bridge-dial.py from the tutorial: an externalMedia channel enters the app,
    the app originates Local/callee@py-callee, a second app answers the ;2
    half, the ;1 half comes back with args ['dialed'] and both are bridged."""
    with anyio.fail_after(TEST_TIMEOUT), media_sink() as host:
        async with ari_app(crossbar, "py-bridge-dial") as (client, rec), ari_app(crossbar, "py-callee") as (
            callee,
            callee_rec,
        ):
            ignored = []
            state = {}
            bridged = anyio.Event()

            async def safe_hangup(channel, who):
                try:
                    await channel.hangup()
                except HTTPStatusError as e:
                    if e.response.status_code != 404:
                        raise
                    ignored.append((who, 404, body(e)))

            async def safe_bridge_destroy(bridge, who):
                try:
                    await bridge.destroy()
                except HTTPStatusError as e:
                    if e.response.status_code != 404:
                        raise
                    ignored.append((who, 404, body(e)))

            def later(fn, *a):
                # Never block asyncari's event dispatch with REST round trips.
                return lambda *_: client.taskgroup.start_soon(fn, *a)

            async def outgoing_start(channel, outgoing):
                await channel.answer()
                bridge = await client.bridges.create(type="mixing")
                channel.on_event("StasisEnd", later(safe_bridge_destroy, bridge, "bridge/channel"))
                outgoing.on_event("StasisEnd", later(safe_bridge_destroy, bridge, "bridge/outgoing"))
                await bridge.addChannel(channel=[channel.id, outgoing.id])
                state.update(bridge=bridge, outgoing=outgoing)
                bridged.set()

            async def inbound(channel, ev):
                args = ev.args
                assert args[0] == "inbound" and len(args) == 2, args
                await channel.ring()
                outgoing = await client.channels.originate(endpoint=args[1], app="py-bridge-dial", appArgs="dialed")
                state["originated"] = outgoing
                channel.on_event("StasisEnd", later(safe_hangup, outgoing, "outgoing"))
                outgoing.on_event("StasisEnd", later(safe_hangup, channel, "channel"))
                outgoing.on_event("StasisStart", later(outgoing_start, channel, outgoing))

            async def app():
                async with client.on_channel_event("StasisStart") as listener:
                    async for objs, ev in listener:
                        if ev.args and ev.args[0] == "inbound":
                            client.taskgroup.start_soon(inbound, objs["channel"], ev)

            async def callee_app():
                async with callee.on_channel_event("StasisStart") as listener:
                    async for objs, ev in listener:
                        state["half2"] = (objs["channel"], ev, objs["channel"].json["state"])
                        callee.taskgroup.start_soon(objs["channel"].answer)

            client.taskgroup.start_soon(app)
            callee.taskgroup.start_soon(callee_app)
            await anyio.sleep(0)

            incoming = await client.channels.externalMedia(
                app="py-bridge-dial", external_host=host, format="ulaw", data="inbound,Local/callee@py-callee"
            )
            await bridged.wait()
            bridge, outgoing = state["bridge"], state["outgoing"]
            assert isinstance(bridge, Bridge)
            assert outgoing is state["originated"]
            half2, half2_ev, half2_state = state["half2"]
            assert half2.json["name"] == outgoing.json["name"][:-1] + "2"
            assert half2_state == "Ring"
            assert half2.json["dialplan"]["exten"] == "callee"
            assert half2_ev.args == []
            start = await rec.wait_type("StasisStart", outgoing.id)
            assert start.args == ["dialed"]

            for ch in (incoming, outgoing):
                entered = await rec.wait_type("ChannelEnteredBridge", ch.id)
                assert entered.bridge is bridge
                assert entered.channel is ch
            assert bridge.channels == {incoming, outgoing}, "asyncari's own view of the bridge"
            assert incoming.bridge is bridge and outgoing.bridge is bridge
            got = await client.bridges.get(bridgeId=bridge.id)
            assert sorted(got.json["channels"]) == sorted([incoming.id, outgoing.id])

            # The caller hangs up; the app hangs up the dialed side and tears down the bridge.
            await incoming.hangup()
            destroyed = await rec.wait_type("ChannelDestroyed", incoming.id)
            assert (destroyed.cause, destroyed.cause_txt) == (16, "Normal Clearing")
            assert rec.types(incoming.id)[-4:] == [
                "ChannelHangupRequest",
                "ChannelLeftBridge",
                "StasisEnd",
                "ChannelDestroyed",
            ]
            destroyed = await rec.wait_type("ChannelDestroyed", outgoing.id)
            assert (destroyed.cause, destroyed.cause_txt) == (16, "Normal Clearing")
            await callee_rec.wait_type("StasisEnd", half2.id)
            await callee_rec.wait_type("ChannelDestroyed", half2.id)
            # No BridgeDestroyed here: as in Asterisk, the app's implicit bridge subscription
            # ended when its last channel left, before the app destroyed the empty bridge.
            with anyio.fail_after(5):
                while len(ignored) < 2:
                    await anyio.sleep(0.02)
            # Hanging up the already-gone caller, and destroying the bridge a second time: 404s, ignored.
            assert ("channel", 404, {"message": "Channel not found"}) in ignored
            assert ("bridge/outgoing", 404, {"message": "Bridge not found"}) in ignored
            # asyncari's own helpers swallow the 404 as well.
            await incoming.safe_hangup()
            with pytest.raises(OperationError):
                await client.bridges.get(bridgeId=bridge.id)
            with pytest.raises(OperationError, match="Channel not found|None"):
                await client.channels.get(channelId=incoming.id)
            remaining = [c.id for c in await client.channels.list()]
            assert not {incoming.id, outgoing.id, half2.id} & set(remaining)


async def test_single_slide_conference(crossbar):
    with anyio.fail_after(TEST_TIMEOUT), media_sink() as host:
        async with ari_app(crossbar, "py-slide-conf") as (client, rec):
            members = []
            for i in range(3):
                ch = await client.channels.externalMedia(
                    app="py-slide-conf", external_host=host, format="slin16", data=f"member,{i}"
                )
                await rec.wait_type("StasisStart", ch.id)
                members.append(ch)

            conf = await client.bridges.create(type="mixing,dtmf_events", bridgeId="py-slide-conf-1", name="slide")
            assert isinstance(conf, Bridge)
            assert conf.id == "py-slide-conf-1"
            assert conf.json["bridge_type"] == "mixing"
            with pytest.raises(HTTPStatusError) as err:
                await conf.createWithId(type="mixing")
            assert err.value.response.status_code == 409

            for ch in members:
                await conf.addChannel(channel=ch.id)
                await rec.wait_type("ChannelEnteredBridge", ch.id)
            assert conf.channels == set(members)
            got = await client.bridges.get(bridgeId=conf.id)
            assert sorted(got.json["channels"]) == sorted(c.id for c in members)

            # The seed's conference beeps the whole bridge.
            beep = await conf.play(media="sound:beep")
            assert beep.json["target_uri"] == f"bridge:{conf.id}"
            done = await rec.wait(
                lambda m: m.type == "PlaybackFinished" and m._orig_msg["playback"]["id"] == beep.id,
                "PlaybackFinished",
            )
            assert done._orig_msg["playback"]["state"] == "done"

            leaver, *stay = members
            await conf.removeChannel(channel=leaver.id)
            left = await rec.wait_type("ChannelLeftBridge", leaver.id)
            assert left.bridge is conf
            assert sorted(left._orig_msg["bridge"]["channels"]) == sorted(c.id for c in stay)
            assert conf.channels == set(stay)
            assert leaver.bridge is None

            await conf.destroy()
            for ch in stay:
                await rec.wait_type("ChannelLeftBridge", ch.id)
            await rec.wait(lambda m: m.type == "BridgeDestroyed" and m.bridge is conf, "BridgeDestroyed")
            assert conf.channels == set()
            with pytest.raises(OperationError):
                await client.bridges.get(bridgeId=conf.id)
            for ch in members:
                again = await client.channels.get(channelId=ch.id)
                assert again.json["state"] == "Up"
            app = await client.applications.get(applicationName="py-slide-conf")
            assert set(c.id for c in members) <= set(app["channel_ids"])
            assert "StasisEnd" not in rec.types()
            for ch in members:
                await ch.hangup()
                await rec.wait_type("ChannelDestroyed", ch.id)


async def test_move_between_apps(crossbar):
    with anyio.fail_after(TEST_TIMEOUT), media_sink() as host:
        async with ari_app(crossbar, "py-move-a,py-move-b") as (client, rec):
            ch = await client.channels.externalMedia(app="py-move-a", external_host=host, format="ulaw", data="first")
            start = await rec.wait_type("StasisStart", ch.id)
            assert (start.application, start.args) == ("py-move-a", ["first"])

            await ch.move(app="py-move-b", appArgs="moved,2")
            end = await rec.wait_type("StasisEnd", ch.id)
            assert end.application == "py-move-a"
            start = await rec.wait_type("StasisStart", ch.id)
            assert (start.application, start.args) == ("py-move-b", ["moved", "2"])
            assert "replace_channel" not in start._orig_msg
            app = await client.applications.get(applicationName="py-move-b")
            assert ch.id in app["channel_ids"]

            await ch.move(app="py-nobody-runs-this", appArgs="x")
            failed = await rec.wait_type("ApplicationMoveFailed", ch.id)
            assert failed.application == "py-move-b"
            assert failed.destination == "py-nobody-runs-this"
            assert failed.args == ["x"]
            assert failed.channel is ch
            await ch.setChannelVar(variable="STAYED", value="yes")
            assert await ch.getChannelVar(variable="STAYED") == {"value": "yes"}
            await anyio.sleep(0.1)
            assert rec.types(ch.id) == ["StasisStart", "StasisEnd", "StasisStart", "ApplicationMoveFailed", "ChannelVarset"]

            await ch.hangup()
            destroyed = await rec.wait_type("ChannelDestroyed", ch.id)
            assert destroyed.application == "py-move-b"
            assert destroyed.cause == 16


async def test_ivr(crossbar):
    """Answer, a prompt, digits collected up to '#', a message recorded while
    the phone talks, then bridged to an agent."""
    with anyio.fail_after(TEST_TIMEOUT), media_phone() as (phone, host), media_sink() as agent_host:
        async with ari_app(crossbar, "py-ivr") as (client, rec):
            caller = await client.channels.externalMedia(app="py-ivr", external_host=host, format="ulaw")
            await rec.wait_type("StasisStart", caller.id)
            rtp = ("127.0.0.1", int(caller.json["channelvars"]["UNICASTRTP_LOCAL_PORT"]))
            seq, ts = 1, 8000

            await caller.answer()
            greeting = await caller.play(media="sound:hello-world")
            assert greeting.json["target_uri"] == f"channel:{caller.id}"
            done = await rec.wait(
                lambda m: m.type == "PlaybackFinished" and m._orig_msg["playback"]["id"] == greeting.id,
                "greeting finished",
            )
            assert done._orig_msg["playback"]["state"] == "done"

            for digit in "42#":
                for k in range(1, 4):
                    phone.sendto(rtp_packet(seq, ts, digit, duration=160 * k), rtp)
                    seq += 1
                for _ in range(3):
                    phone.sendto(rtp_packet(seq, ts, digit, end=True, duration=480), rtp)
                    seq += 1
                ts += 800
                await anyio.sleep(0.03)
            digits = []
            while True:
                m = await rec.wait_type("ChannelDtmfReceived", caller.id)
                if m._orig_msg["digit"] == "#":
                    break
                digits.append(m._orig_msg["digit"])
            assert digits == ["4", "2"]

            live = await caller.record(
                name="py-ivr-message", format="wav", maxDurationSeconds=1, ifExists="overwrite"
            )
            assert live.json["target_uri"] == f"channel:{caller.id}"
            finished = None
            for _ in range(150):
                phone.sendto(rtp_packet(seq, ts), rtp)
                seq += 1
                ts += 160
                await anyio.sleep(0.02)
                if any(e.type == "RecordingFinished" for e in rec.events):
                    break
            finished = await rec.wait(
                lambda m: m.type == "RecordingFinished" and m._orig_msg["recording"]["name"] == "py-ivr-message",
                "RecordingFinished",
            )
            assert finished._orig_msg["recording"]["duration"] >= 1
            stored = await client.recordings.getStored(recordingName="py-ivr-message")
            assert stored.json["format"] == "wav"

            agent = await client.channels.externalMedia(app="py-ivr", external_host=agent_host, format="ulaw")
            await rec.wait_type("StasisStart", agent.id)
            bridge = await client.bridges.create(type="mixing")
            await bridge.addChannel(channel=f"{caller.id},{agent.id}")
            await rec.wait_type("ChannelEnteredBridge", caller.id)
            await rec.wait_type("ChannelEnteredBridge", agent.id)

            await client.recordings.deleteStored(recordingName="py-ivr-message")
            for ch in (caller, agent):
                await ch.hangup()
                await rec.wait_type("ChannelDestroyed", ch.id)
            await bridge.destroy()
