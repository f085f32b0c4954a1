//! ARI events over a real events WebSocket: order and shape of what clients
//! track state with (Stasis entry and exit, bridges, hangups, Local pairs,
//! moves, subscriptions, filters), REST over the WebSocket, variables, the
//! BRIDGEPEER event volume, and operations that race a timer or a client's
//! disconnect.

mod common;

use common::{is_ari_timestamp, types, Server, ENTITY_ID};
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Asserts the fields every event carries.
#[track_caller]
fn assert_envelope(e: &Value, app: &str) {
    assert!(
        is_ari_timestamp(e["timestamp"].as_str().unwrap_or("")),
        "timestamp of {e}"
    );
    assert_eq!(e["asterisk_id"], ENTITY_ID, "{e}");
    assert_eq!(e["application"], app, "{e}");
}

#[test]
fn external_media_gives_stasis_start_with_data_args_and_channel_up() {
    let s = Server::start();
    let mut ws = s.ws("A");
    let ch = s.external_media("A", "&data=one,two&channelId=em1");
    assert_eq!(ch["id"], "em1");
    assert!(
        ch["name"]
            .as_str()
            .unwrap()
            .starts_with("UnicastRTP/127.0.0.1:40000-"),
        "{ch}"
    );
    let events = ws.sync(&s);
    // no ChannelCreated for an app without subscribeAll
    assert_eq!(types(&events), ["StasisStart"]);
    let e = &events[0];
    assert_eq!(
        keys(e),
        [
            "type",
            "timestamp",
            "args",
            "channel",
            "asterisk_id",
            "application"
        ]
    );
    assert_envelope(e, "A");
    assert_eq!(e["args"], json!(["one", "two"]));
    assert_eq!(e["channel"]["id"], "em1");
    assert_eq!(e["channel"]["state"], "Up");
    assert_eq!(e["channel"]["name"], ch["name"]);
    assert_eq!(e["channel"]["dialplan"]["app_name"], "Stasis");
    assert_eq!(e["channel"]["dialplan"]["app_data"], "A,one,two");
    assert!(is_ari_timestamp(
        e["channel"]["creationtime"].as_str().unwrap()
    ));
    assert_eq!(
        keys(&e["channel"])[..10],
        [
            "id",
            "name",
            "state",
            "protocol_id",
            "caller",
            "connected",
            "accountcode",
            "dialplan",
            "creationtime",
            "language"
        ]
    );
}

#[test]
fn join_gives_channel_entered_bridge_with_bridge_snapshot() {
    let s = Server::start();
    let mut ws = s.ws("A");
    let c = id(&s.external_media("A", ""));
    let b = s.bridge("?bridgeId=br1&name=room");
    ws.sync(&s);
    s.add(&b, &c);
    let events = ws.sync(&s);
    assert_eq!(types(&events), ["ChannelEnteredBridge"]);
    let e = &events[0];
    assert_envelope(e, "A");
    assert_eq!(e["channel"]["id"], c.as_str());
    let bridge = &e["bridge"];
    assert_eq!(bridge["id"], "br1");
    assert_eq!(bridge["name"], "room");
    assert_eq!(bridge["channels"], json!([c]));
    assert_eq!(bridge["technology"], "simple_bridge");
    assert_eq!(bridge["bridge_type"], "mixing");
    assert_eq!(bridge["bridge_class"], "stasis");
    assert_eq!(bridge["creator"], "Stasis");
    assert_eq!(bridge["video_mode"], "talker");
    let now = s.get("/ari/bridges/br1");
    assert_eq!(now.ok()["technology"], bridge["technology"]);
    assert_eq!(now.ok()["channels"], json!([c]));

    // a second member: the snapshot lists both, in join order
    let c2 = id(&s.external_media("A", ""));
    ws.sync(&s);
    s.add(&b, &c2);
    let events = ws.sync(&s);
    assert_eq!(types(&events), ["ChannelEnteredBridge"]);
    assert_eq!(events[0]["bridge"]["channels"], json!([c, c2]));
    assert_eq!(
        events[0]["bridge"]["technology"],
        s.get("/ari/bridges/br1").ok()["technology"]
    );
}

#[test]
fn delete_of_bridged_channel_orders_hangup_events() {
    let s = Server::start();
    let mut ws = s.ws("A");
    let c = id(&s.external_media("A", ""));
    let b = s.bridge("");
    s.add(&b, &c);
    ws.sync(&s);
    s.delete(&format!("/ari/channels/{c}")).no_content();
    let events = ws.sync(&s);
    assert_eq!(
        types(&events),
        [
            "ChannelHangupRequest",
            "ChannelLeftBridge",
            "StasisEnd",
            "ChannelDestroyed"
        ]
    );
    for e in &events {
        assert_envelope(e, "A");
        assert_eq!(e["channel"]["id"], c.as_str());
    }
    assert_eq!(events[0]["cause"], 32);
    assert_eq!(events[0]["soft"], true);
    assert_eq!(events[1]["bridge"]["id"], b.as_str());
    assert_eq!(events[1]["bridge"]["channels"], json!([]));
    assert_eq!(events[3]["cause"], 16);
    assert_eq!(events[3]["cause_txt"], "Normal Clearing");
    s.get(&format!("/ari/channels/{c}"))
        .assert_error(404, "Channel not found");
    assert_eq!(
        s.get(&format!("/ari/bridges/{b}")).ok()["channels"],
        json!([])
    );
}

#[test]
fn delete_with_reason_busy_gives_cause_17() {
    let s = Server::start();
    let mut ws = s.ws("A");
    let c = id(&s.external_media("A", ""));
    ws.sync(&s);
    s.delete(&format!("/ari/channels/{c}?reason=busy"))
        .no_content();
    let events = ws.sync(&s);
    assert_eq!(
        types(&events),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    assert_eq!(events[2]["cause"], 17);
    assert_eq!(events[2]["cause_txt"], "User busy");
    // reason_code works too, and both at once is refused
    let c = id(&s.external_media("A", ""));
    s.delete(&format!("/ari/channels/{c}?reason=busy&reason_code=17"))
        .assert_error(400, "The reason and reason_code can't both be specified");
    ws.sync(&s);
    s.delete(&format!("/ari/channels/{c}?reason_code=21"))
        .no_content();
    let events = ws.sync(&s);
    assert_eq!(events[2]["cause"], 21);
    assert_eq!(events[2]["cause_txt"], "Call Rejected");
}

#[test]
fn bridge_destroy_with_members_keeps_them_in_the_app() {
    let s = Server::start();
    let mut ws = s.ws("A");
    let c1 = id(&s.external_media("A", ""));
    let c2 = id(&s.external_media("A", ""));
    let b = s.bridge("");
    s.add(&b, &c1);
    s.add(&b, &c2);
    ws.sync(&s);
    s.delete(&format!("/ari/bridges/{b}")).no_content();
    let events = ws.sync(&s);
    assert_eq!(
        types(&events),
        ["ChannelLeftBridge", "ChannelLeftBridge", "BridgeDestroyed"]
    );
    assert_eq!(events[0]["channel"]["id"], c1.as_str());
    assert_eq!(events[0]["bridge"]["channels"], json!([c2]));
    assert_eq!(events[1]["channel"]["id"], c2.as_str());
    assert_eq!(events[1]["bridge"]["channels"], json!([]));
    assert_eq!(events[2]["bridge"]["id"], b.as_str());
    s.get(&format!("/ari/bridges/{b}"))
        .assert_error(404, "Bridge not found");
    let app = s.get("/ari/applications/A");
    assert_eq!(app.ok()["channel_ids"], json!([c1, c2]));
    assert_eq!(app.ok()["bridge_ids"], json!([]));
    // still controllable: they can join a new bridge
    let b2 = s.bridge("");
    s.add(&b2, &c1);
}

#[test]
fn local_originate_enters_b_then_a_on_answer_and_hangs_up_both() {
    let s = Server::start();
    let mut a = s.ws("A");
    let mut bws = s.ws("B");
    let r = s.post("/ari/channels?endpoint=Local/x@B&app=A&appArgs=p,q&otherChannelId=two");
    let one = r.ok().clone();
    assert!(one["name"].as_str().unwrap().ends_with(";1"), "{one}");
    let one_id = id(&one);

    // ;2 enters B at once
    let events = bws.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    let two = &events[0]["channel"];
    assert_eq!(two["id"], "two");
    assert!(two["name"].as_str().unwrap().ends_with(";2"), "{two}");
    assert_eq!(
        two["name"].as_str().unwrap().trim_end_matches(";2"),
        one["name"].as_str().unwrap().trim_end_matches(";1")
    );
    assert_eq!(two["dialplan"]["exten"], "x");
    assert_eq!(events[0]["args"], json!([]));
    // ;1 is not in A until answered
    assert_eq!(a.sync(&s), Vec::<Value>::new());

    s.post("/ari/channels/two/answer").no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    assert_eq!(events[0]["channel"]["id"], one_id.as_str());
    assert_eq!(events[0]["args"], json!(["p", "q"]));
    assert_eq!(events[0]["channel"]["state"], "Up");
    let events = bws.sync(&s);
    assert_eq!(types(&events), ["ChannelStateChange"]);
    assert_eq!(events[0]["channel"]["state"], "Up");

    // hanging up ;2 ends ;1 too
    s.delete("/ari/channels/two").no_content();
    let b_events = bws.sync(&s);
    assert_eq!(
        types(&b_events),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    let a_events = a.sync(&s);
    assert_eq!(
        types(&a_events),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    assert_eq!(a_events[2]["channel"]["id"], one_id.as_str());
    s.get(&format!("/ari/channels/{one_id}"))
        .assert_error(404, "Channel not found");
    s.get("/ari/channels/two")
        .assert_error(404, "Channel not found");
}

#[test]
fn channels_create_then_dial() {
    let s = Server::start();
    let mut a = s.ws("A");
    let mut bws = s.ws("B");
    let r = s.post("/ari/channels/create?endpoint=Local/y@B&app=A&appArgs=k&channelId=one");
    let one = r.ok().clone();
    assert_eq!(one["id"], "one");
    let events = a.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    assert_eq!(events[0]["args"], json!(["k"]));
    assert_eq!(events[0]["channel"]["id"], "one");
    // nothing in B before the dial
    assert_eq!(bws.sync(&s), Vec::<Value>::new());

    s.post("/ari/channels/one/dial").no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["Dial"]);
    assert_eq!(events[0]["dialstatus"], "");
    // Asterisk's dial string: the endpoint without its technology.
    assert_eq!(events[0]["dialstring"], "y@B");
    let events = bws.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    let two = id(&events[0]["channel"]);
    // Given channelId alone, `;2` is `<channelId>;2`, as in Asterisk.
    assert_eq!(two, "one;2");
    assert!(events[0]["channel"]["name"]
        .as_str()
        .unwrap()
        .ends_with(";2"));
    assert_eq!(events[0]["channel"]["dialplan"]["exten"], "y");

    // a second dial is refused
    s.post("/ari/channels/one/dial")
        .assert_error(409, "Channel cannot be dialed.");

    // answer in B: A learns the dial was answered
    s.post(&format!("/ari/channels/{two}/answer")).no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["ChannelStateChange", "Dial"]);
    assert_eq!(events[0]["channel"]["state"], "Up");
    assert_eq!(events[1]["dialstatus"], "ANSWER");
}

/// `Local/EXTEN@CONTEXT` where no application CONTEXT runs is created as
/// Asterisk creates it (`;1` in the creating application); dialing it fails
/// as local_call() fails on a missing extension: the dial is 204, no `Dial`
/// event, `;1` leaves its application and both halves end with cause 0
/// ("Unknown"), `;2` first.
#[test]
fn dialing_a_local_channel_into_a_context_nobody_runs_ends_the_pair() {
    let s = Server::start();
    let mut a = s.ws("A");
    let mut all = s.ws_all("W");
    let one = s
        .post(
            "/ari/channels/create?endpoint=Local/y@nowhere&app=A&channelId=one&otherChannelId=two",
        )
        .ok()
        .clone();
    assert_eq!(
        one["name"].as_str().unwrap().split('-').next(),
        Some("Local/y@nowhere")
    );
    let events = a.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    all.sync(&s);

    s.post("/ari/channels/one/dial").no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["StasisEnd", "ChannelDestroyed"]);
    assert_eq!(events[1]["channel"]["id"], "one");
    assert_eq!(events[1]["cause"], 0);
    assert_eq!(events[1]["cause_txt"], "Unknown");
    let destroyed: Vec<(String, u64)> = all
        .sync(&s)
        .iter()
        .filter(|e| e["type"] == "ChannelDestroyed")
        .map(|e| (id(&e["channel"]), e["cause"].as_u64().unwrap()))
        .collect();
    assert_eq!(destroyed, [("two".to_string(), 0), ("one".to_string(), 0)]);
    s.get("/ari/channels/one")
        .assert_error(404, "Channel not found");
    s.get("/ari/channels/two")
        .assert_error(404, "Channel not found");

    // Originated, the pair is answered 200 and ends at once: the
    // originating application sees both halves destroyed.
    let r = s.post("/ari/channels?endpoint=Local/y@nowhere&app=A&channelId=o1&otherChannelId=o2");
    assert_eq!(r.ok()["id"], "o1");
    let events = a.sync(&s);
    assert_eq!(types(&events), ["ChannelDestroyed", "ChannelDestroyed"]);
    assert_eq!(events[0]["channel"]["id"], "o2");
    assert_eq!(events[1]["channel"]["id"], "o1");
    assert_eq!(events[1]["cause"], 0);
    assert_eq!(s.get("/ari/channels").ok(), &json!([]));
}

/// `dial?timeout=N`: a dialed channel not answered within N seconds is hung
/// up as Asterisk's dial timeout does (res/stasis/control.c: cause 19, then
/// a soft hangup — `ChannelHangupRequest` cause 32 soft), and its `;2` half
/// with it (cause 19). An answered one is left alone.
#[test]
fn dial_timeout_hangs_up_an_unanswered_channel() {
    let s = Server::start();
    let mut a = s.ws("A");
    let mut bws = s.ws("B");
    s.post("/ari/channels/create?endpoint=Local/t@B&app=A&channelId=late&otherChannelId=late2")
        .ok();
    s.post("/ari/channels/create?endpoint=Local/t@B&app=A&channelId=quick&otherChannelId=quick2")
        .ok();
    a.sync(&s);
    let started = std::time::Instant::now();
    s.post("/ari/channels/late/dial?timeout=1").no_content();
    s.post("/ari/channels/quick/dial?timeout=1").no_content();
    assert_eq!(types(&bws.sync(&s)), ["StasisStart", "StasisStart"]);
    s.post("/ari/channels/quick2/answer").no_content();
    bws.sync(&s);
    a.sync(&s);

    let events = a.events_until("ChannelDestroyed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "timeout took {:?}",
        started.elapsed()
    );
    assert_eq!(
        types(&events),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    assert_eq!(events[0]["channel"]["id"], "late");
    assert_eq!(events[0]["cause"], 32);
    assert_eq!(events[0]["soft"], true);
    assert_eq!(events[2]["cause"], 19);
    assert_eq!(events[2]["cause_txt"], "User alerting, no answer");
    let events = bws.events_until("ChannelDestroyed");
    assert_eq!(
        types(&events),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    assert_eq!(events[0]["channel"]["id"], "late2");
    assert_eq!(events[0]["cause"], 19);
    assert!(events[0].get("soft").is_none(), "{}", events[0]);
    assert_eq!(events[2]["cause"], 19);

    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(s.get("/ari/channels/quick").ok()["state"], "Up");
    assert_eq!(s.get("/ari/channels/quick2").ok()["state"], "Up");
}

/// The colleague's report: `channelId` = the id the node would generate next,
/// without `otherChannelId`, once gave `;2` that same id, overwriting `;1`.
#[test]
fn a_local_pair_given_the_next_generated_id_keeps_both_halves() {
    let s = Server::start();
    let _a = s.ws("A");
    let _b = s.ws("B");
    let first = id(&s.external_media("A", ""));
    let (epoch, n) = first.rsplit_once('.').expect("<epoch>.<n>");
    let next = format!("{epoch}.{}", n.parse::<u64>().unwrap() + 1);
    let one = s
        .post(&format!(
            "/ari/channels/create?endpoint=Local/x@B&app=A&channelId={next}"
        ))
        .ok()
        .clone();
    assert_eq!(one["id"], next.as_str());
    let listed = s.get("/ari/channels").ok().clone();
    let mut ids: Vec<String> = listed.as_array().unwrap().iter().map(id).collect();
    ids.sort();
    let mut want = vec![first.clone(), next.clone(), format!("{next};2")];
    want.sort();
    assert_eq!(ids, want);
    assert!(s.get(&format!("/ari/channels/{next}")).ok()["name"]
        .as_str()
        .unwrap()
        .ends_with(";1"));
    // Hanging up `;1` ends both halves and leaves the first channel.
    s.delete(&format!("/ari/channels/{next}")).no_content();
    let left: Vec<String> = s
        .get("/ari/channels")
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(id)
        .collect();
    assert_eq!(left, [first]);
}

#[test]
fn move_success_ends_in_a_and_starts_in_b() {
    let s = Server::start();
    let mut a = s.ws("A");
    let mut bws = s.ws("B");
    let c = id(&s.external_media("A", ""));
    a.sync(&s);
    s.post(&format!("/ari/channels/{c}/move?app=B&appArgs=z"))
        .no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["StasisEnd"]);
    assert_eq!(events[0]["channel"]["id"], c.as_str());
    let events = bws.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    assert_envelope(&events[0], "B");
    assert_eq!(events[0]["args"], json!(["z"]));
    assert_eq!(events[0]["channel"]["id"], c.as_str());
    assert!(events[0].get("replace_channel").is_none(), "{}", events[0]);
    assert_eq!(s.get("/ari/applications/B").ok()["channel_ids"], json!([c]));
    assert_eq!(s.get("/ari/applications/A").ok()["channel_ids"], json!([]));
}

#[test]
fn continue_ends_stasis_then_destroys() {
    let s = Server::start();
    let mut a = s.ws("A");
    let c = id(&s.external_media("A", ""));
    a.sync(&s);
    s.post(&format!("/ari/channels/{c}/continue")).no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["StasisEnd", "ChannelDestroyed"]);
    assert_eq!(events[1]["cause"], 16);
    assert_eq!(events[1]["cause_txt"], "Normal Clearing");
    s.get(&format!("/ari/channels/{c}"))
        .assert_error(404, "Channel not found");
}

#[test]
fn subscribe_all_gets_channel_and_bridge_created() {
    let s = Server::start();
    let mut all = s.ws_all("Spy");
    let mut a = s.ws("A");
    let b = s.bridge("");
    let c = id(&s.external_media("A", ""));
    let events = all.sync(&s);
    assert_eq!(types(&events), ["BridgeCreated", "ChannelCreated"]);
    assert_envelope(&events[0], "Spy");
    assert_eq!(events[0]["bridge"]["id"], b.as_str());
    assert_eq!(events[1]["channel"]["id"], c.as_str());
    // the app that owns the channel gets StasisStart only
    assert_eq!(types(&a.sync(&s)), ["StasisStart"]);
}

#[test]
fn explicit_bridge_subscription_gets_bridge_destroyed() {
    let s = Server::start();
    let mut w = s.ws("Watcher");
    let b = s.bridge("?bridgeId=watched");
    let r = s.post("/ari/applications/Watcher/subscription?eventSource=bridge:watched");
    assert_eq!(r.ok()["bridge_ids"], json!(["watched"]));
    assert_eq!(w.sync(&s), Vec::<Value>::new());
    s.delete(&format!("/ari/bridges/{b}")).no_content();
    let events = w.sync(&s);
    assert_eq!(types(&events), ["BridgeDestroyed"]);
    assert_envelope(&events[0], "Watcher");
    assert_eq!(events[0]["bridge"]["id"], "watched");
    // the subscription went with the bridge
    assert_eq!(
        s.get("/ari/applications/Watcher").ok()["bridge_ids"],
        json!([])
    );
}

#[test]
fn unsubscribe_when_not_subscribed_is_409() {
    let s = Server::start();
    let _w = s.ws("W");
    s.bridge("?bridgeId=bx");
    s.request(
        "DELETE",
        "/ari/applications/W/subscription?eventSource=bridge:bx",
        None,
        common::Auth::Basic(common::USER, common::PASS),
    )
    .assert_error_prefix(409, "Application not subscribed to event source");
    s.request(
        "DELETE",
        "/ari/applications/W/subscription?eventSource=bridge:nope",
        None,
        common::Auth::Basic(common::USER, common::PASS),
    )
    .assert_error_prefix(422, "Event source does not exist");
    s.post("/ari/applications/Nope/subscription?eventSource=bridge:bx")
        .assert_error(404, "Application does not exist.");
}

#[test]
fn event_filter_limits_event_types() {
    let s = Server::start();
    let mut a = s.ws("A");
    let r = s.put_json(
        "/ari/applications/A/eventFilter",
        r#"{"allowed":[{"type":"StasisStart"},{"type":"ChannelDestroyed"},{"type":"ChannelUserevent"}]}"#,
    );
    assert_eq!(
        r.ok()["events_allowed"],
        json!([{"type":"StasisStart"},{"type":"ChannelDestroyed"},{"type":"ChannelUserevent"}])
    );
    let c = id(&s.external_media("A", ""));
    s.delete(&format!("/ari/channels/{c}")).no_content();
    assert_eq!(types(&a.sync(&s)), ["StasisStart", "ChannelDestroyed"]);

    // disallowed instead
    s.put_json(
        "/ari/applications/A/eventFilter",
        r#"{"disallowed":[{"type":"ChannelHangupRequest"},{"type":"StasisEnd"}]}"#,
    )
    .ok();
    let c = id(&s.external_media("A", ""));
    s.delete(&format!("/ari/channels/{c}")).no_content();
    assert_eq!(types(&a.sync(&s)), ["StasisStart", "ChannelDestroyed"]);

    // an empty filter lets everything through again
    s.put_json("/ari/applications/A/eventFilter", "{}").ok();
    let c = id(&s.external_media("A", ""));
    s.delete(&format!("/ari/channels/{c}")).no_content();
    assert_eq!(
        types(&a.sync(&s)),
        [
            "StasisStart",
            "ChannelHangupRequest",
            "StasisEnd",
            "ChannelDestroyed"
        ]
    );
}

#[test]
fn second_websocket_for_an_app_replaces_the_first() {
    let s = Server::start();
    let mut first = s.ws("A");
    let mut second = s.ws("A");
    let e = first.next();
    assert_eq!(e["type"], "ApplicationReplaced");
    assert_envelope(&e, "A");
    let c = s.external_media("A", "");
    let events = second.sync(&s);
    assert_eq!(types(&events), ["StasisStart"]);
    assert_eq!(events[0]["channel"]["id"], c["id"]);
    // the replaced socket stays open (as in Asterisk), gets no more events,
    // and still answers REST requests
    first.assert_quiet(std::time::Duration::from_millis(300));
    first.send_text(
        r#"{"type":"RESTRequest","transaction_id":"t","request_id":"r","method":"GET","uri":"asterisk/ping"}"#,
    );
    assert_eq!(first.next()["status_code"], 200);
    // the app survives the first socket closing
    drop(first);
    std::thread::sleep(std::time::Duration::from_millis(100));
    s.get("/ari/applications/A").ok();
    assert_eq!(second.sync(&s), Vec::<Value>::new());
}

#[test]
fn rest_over_websocket() {
    let s = Server::start();
    let mut a = s.ws("A");
    a.send_text(
        r#"{"type":"RESTRequest","transaction_id":"t1","request_id":"r1","method":"GET","uri":"asterisk/ping"}"#,
    );
    let r = a.next_event("RESTResponse");
    assert_eq!(r["transaction_id"], "t1");
    assert_eq!(r["request_id"], "r1");
    assert_eq!(r["status_code"], 200);
    assert_eq!(r["reason_phrase"], "OK");
    assert_eq!(r["uri"], "asterisk/ping");
    assert_eq!(r["content_type"], "application/json");
    let body: Value = serde_json::from_str(r["message_body"].as_str().unwrap()).unwrap();
    assert_eq!(body["ping"], "pong");

    // a 404
    a.send_text(
        r#"{"type":"RESTRequest","transaction_id":"t2","request_id":"r2","method":"GET","uri":"channels/nope"}"#,
    );
    let r = a.next_event("RESTResponse");
    assert_eq!(r["request_id"], "r2");
    assert_eq!(r["status_code"], 404);
    assert_eq!(r["reason_phrase"], "Not Found");
    assert_eq!(r["uri"], "channels/nope");
    let body: Value = serde_json::from_str(r["message_body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"message": "Channel not found"}));

    // a POST with the query in the uri (stripped in the reply) and a JSON body
    a.send_text(
        r#"{"type":"RESTRequest","transaction_id":"t3","request_id":"r3","method":"POST","uri":"bridges?bridgeId=wsb","content_type":"application/json","message_body":"{\"name\":\"viaws\"}"}"#,
    );
    let r = a.next_event("RESTResponse");
    assert_eq!(r["status_code"], 200);
    assert_eq!(r["uri"], "bridges");
    let body: Value = serde_json::from_str(r["message_body"].as_str().unwrap()).unwrap();
    assert_eq!(body["id"], "wsb");
    assert_eq!(body["name"], "viaws");
    assert_eq!(s.get("/ari/bridges/wsb").ok()["name"], "viaws");

    // a 204 has no body
    a.send_text(
        r#"{"type":"RESTRequest","transaction_id":"t4","request_id":"r4","method":"DELETE","uri":"bridges/wsb"}"#,
    );
    let r = a.next_event("RESTResponse");
    assert_eq!(r["status_code"], 204);
    assert_eq!(r["reason_phrase"], "No Content");
    assert!(r.get("message_body").is_none(), "{r}");

    // malformed JSON
    a.send_text("{not json");
    let r = a.next_event("RESTResponse");
    assert_eq!(r["status_code"], 400);
    assert_eq!(r["reason_phrase"], "Failed to parse request message JSON");
    // the socket still works
    assert_eq!(a.sync(&s), Vec::<Value>::new());
}

#[test]
fn channel_variables_and_varset() {
    let s = Server::start();
    let mut a = s.ws("A");
    let c = id(&s.external_media("A", ""));
    a.sync(&s);
    s.post(&format!(
        "/ari/channels/{c}/variable?variable=FOO&value=bar"
    ))
    .no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["ChannelVarset"]);
    assert_eq!(events[0]["variable"], "FOO");
    assert_eq!(events[0]["value"], "bar");
    assert_eq!(events[0]["channel"]["id"], c.as_str());
    assert_envelope(&events[0], "A");
    assert_eq!(
        s.get(&format!("/ari/channels/{c}/variable?variable=FOO"))
            .ok(),
        &json!({"value": "bar"})
    );
    s.get(&format!("/ari/channels/{c}/variable?variable=NOPE"))
        .assert_error(404, "Provided variable was not found");
    s.get(&format!("/ari/channels/{c}/variable"))
        .assert_error(400, "Variable name is required");
    s.get("/ari/channels/nope/variable?variable=FOO")
        .assert_error(404, "Channel not found");
}

#[test]
fn several_channel_variables_at_once() {
    let s = Server::start();
    let mut a = s.ws("A");
    let c = id(&s.external_media("A", ""));
    a.sync(&s);
    s.post_json(
        &format!("/ari/channels/{c}/variables"),
        r#"{"variables": {"X": "1", "Y": {"value": "2"}}}"#,
    )
    .no_content();
    let events = a.sync(&s);
    assert_eq!(types(&events), ["ChannelVarset", "ChannelVarset"]);
    assert_eq!(
        (&events[0]["variable"], &events[0]["value"]),
        (&json!("X"), &json!("1"))
    );
    assert_eq!(
        (&events[1]["variable"], &events[1]["value"]),
        (&json!("Y"), &json!("2"))
    );
    assert_eq!(
        s.get(&format!(
            "/ari/channels/{c}/variables?variables=X,Y,UNICASTRTP_LOCAL_PORT"
        ))
        .ok()["variables"]["Y"],
        "2"
    );
    s.get(&format!("/ari/channels/{c}/variables?variables=X,NOPE"))
        .assert_error(404, "Provided variable was not found");
    s.get(&format!("/ari/channels/{c}/variables"))
        .assert_error(400, "At least one variable name is required");
    s.post_json(
        &format!("/ari/channels/{c}/variables"),
        r#"{"variables": {"X": 5}}"#,
    )
    .assert_error_prefix(400, "Each value in 'variables' must be");
    s.post(&format!("/ari/channels/{c}/variables"))
        .assert_error(400, "The 'variables' field is required");
}

/// Builds a bridge of `n` externalMedia members in `app`, one join at a time;
/// returns (bridge id, channel ids, channel names).
fn build_bridge(s: &Server, app: &str, n: usize) -> (String, Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut names = Vec::new();
    for _ in 0..n {
        let ch = s.external_media(app, "");
        ids.push(id(&ch));
        names.push(ch["name"].as_str().unwrap().to_string());
    }
    (s.bridge(""), ids, names)
}

#[test]
fn bridgepeer_default_mode_has_no_varset_but_get_variable_works() {
    let s = Server::start();
    let mut a = s.ws("A");
    let (b, ids, names) = build_bridge(&s, "A", 3);
    a.sync(&s);
    for c in &ids {
        s.add(&b, c);
    }
    let events = a.sync(&s);
    assert_eq!(types(&events), ["ChannelEnteredBridge"; 3]);
    let peer = |c: &str| {
        s.get(&format!("/ari/channels/{c}/variable?variable=BRIDGEPEER"))
            .ok()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(peer(&ids[0]), format!("{},{}", names[1], names[2]));
    assert_eq!(peer(&ids[2]), format!("{},{}", names[0], names[1]));
    s.post(&format!(
        "/ari/bridges/{b}/removeChannel?channel={}",
        ids[2]
    ))
    .no_content();
    assert_eq!(types(&a.sync(&s)), ["ChannelLeftBridge"]);
    assert_eq!(peer(&ids[0]), names[1]);
    assert_eq!(peer(&ids[1]), names[0]);
    // not bridged: no BRIDGEPEER
    s.get(&format!(
        "/ari/channels/{}/variable?variable=BRIDGEPEER",
        ids[2]
    ))
    .assert_error(404, "Provided variable was not found");
}

#[test]
fn bridgepeer_asterisk_mode_announces_every_member_on_each_join() {
    let s = Server::start_with(&[("CROSSBAR_ARI_BRIDGEPEER", "asterisk")]);
    let mut a = s.ws("A");
    let (b, ids, names) = build_bridge(&s, "A", 3);
    a.sync(&s);
    for (k, c) in ids.iter().enumerate() {
        s.add(&b, c);
        let events = a.sync(&s);
        let entered: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "ChannelEnteredBridge")
            .collect();
        assert_eq!(entered.len(), 1, "join {k}: {:?}", types(&events));
        assert_eq!(entered[0]["channel"]["id"], c.as_str());
        let mut varsets: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "ChannelVarset")
            .map(|e| {
                assert_eq!(e["variable"], "BRIDGEPEER", "{e}");
                (
                    e["channel"]["id"].as_str().unwrap().to_string(),
                    e["value"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            events.len(),
            1 + varsets.len(),
            "join {k}: {:?}",
            types(&events)
        );
        varsets.sort();
        let members = k + 1;
        let mut want: Vec<(String, String)> = if members < 2 {
            Vec::new()
        } else {
            (0..members)
                .map(|m| {
                    let others: Vec<&str> = (0..members)
                        .filter(|o| *o != m)
                        .map(|o| names[o].as_str())
                        .collect();
                    (ids[m].clone(), others.join(","))
                })
                .collect()
        };
        want.sort();
        assert_eq!(varsets, want, "join {k}");
    }
}

#[test]
fn bridge_of_20_in_default_mode_costs_o_n_events() {
    let s = Server::start();
    let mut a = s.ws("A");
    let n = 20;
    let (b, ids, _) = build_bridge(&s, "A", n);
    let events = a.sync(&s);
    assert_eq!(events.len(), n);
    assert!(events.iter().all(|e| e["type"] == "StasisStart"));
    for c in &ids {
        s.add(&b, c);
    }
    let events = a.sync(&s);
    assert_eq!(events.len(), n, "{:?}", types(&events));
    assert!(events.iter().all(|e| e["type"] == "ChannelEnteredBridge"));
    assert_eq!(events[n - 1]["bridge"]["channels"], json!(ids));
    s.delete(&format!("/ari/bridges/{b}")).no_content();
    let events = a.sync(&s);
    assert_eq!(events.len(), n + 1, "{:?}", types(&events));
    assert_eq!(types(&events)[n], "BridgeDestroyed");
}

#[test]
fn bridge_of_20_in_asterisk_mode_costs_o_n_squared_events() {
    let s = Server::start_with(&[("CROSSBAR_ARI_BRIDGEPEER", "asterisk")]);
    let mut a = s.ws("A");
    let n = 20;
    let (b, ids, _) = build_bridge(&s, "A", n);
    a.sync(&s);
    for c in &ids {
        s.add(&b, c);
    }
    let events = a.sync(&s);
    let varsets = events
        .iter()
        .filter(|e| e["type"] == "ChannelVarset")
        .count();
    // joins 2..=n each re-announce every member: 2 + 3 + ... + n
    assert_eq!(varsets, (2..=n).sum::<usize>());
    assert_eq!(events.len(), n + varsets);
}

#[test]
fn originate_timeout_hangs_up_the_unanswered_pair() {
    let s = Server::start();
    let _a = s.ws("A");
    let mut bws = s.ws("B");
    let one = id(s
        .post("/ari/channels?endpoint=Local/t@B&app=A&timeout=1&otherChannelId=two")
        .ok());
    assert_eq!(types(&bws.sync(&s)), ["StasisStart"]);
    let started = std::time::Instant::now();
    let destroyed = bws.next_event("ChannelDestroyed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "timeout took {:?}",
        started.elapsed()
    );
    assert_eq!(destroyed["channel"]["id"], "two");
    assert_eq!(destroyed["cause"], 19);
    assert_eq!(destroyed["cause_txt"], "User alerting, no answer");
    s.get(&format!("/ari/channels/{one}"))
        .assert_error(404, "Channel not found");
}

#[test]
fn a_stale_originate_timeout_spares_a_new_channel_with_the_same_id() {
    let s = Server::start();
    let _a = s.ws("A");
    let _b = s.ws("B");
    s.post("/ari/channels?endpoint=Local/t@B&app=A&timeout=1&channelId=one&otherChannelId=two")
        .ok();
    s.delete("/ari/channels/one").no_content();
    // The same ids again, waiting forever: the first pair's timer must not
    // hang this one up.
    s.post("/ari/channels?endpoint=Local/t@B&app=A&timeout=-1&channelId=one&otherChannelId=two")
        .ok();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(s.get("/ari/channels/one").ok()["state"], "Down");
    assert_eq!(s.get("/ari/channels/two").ok()["state"], "Ring");
}

#[test]
fn an_operation_completes_when_its_client_disconnects() {
    use std::io::Write;
    let s = Server::start();
    let _a = s.ws("A");
    let _b = s.ws("B");
    let n = 150;
    let ids: Vec<String> = (0..n)
        .map(|i| {
            let one = format!("c{i}");
            s.post(&format!(
                "/ari/channels/create?endpoint=Local/x@B&app=A&channelId={one}&otherChannelId=d{i}"
            ))
            .ok();
            one
        })
        .collect();
    let b = s.bridge("");
    // One addChannel of every channel (many shard round trips), and the
    // client closes its connection while it runs.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(
        conn,
        "POST /ari/bridges/{b}/addChannel?channel={} HTTP/1.1\r\nHost: x\r\n\
         Authorization: {}\r\nContent-Length: 0\r\n\r\n",
        ids.join(","),
        common::basic(common::USER, common::PASS)
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    drop(conn);
    // All of it or (if the request was never read) none of it; never a part.
    let deadline = std::time::Instant::now() + common::WAIT;
    let members = loop {
        let members = s.get(&format!("/ari/bridges/{b}")).ok()["channels"]
            .as_array()
            .unwrap()
            .len();
        if members == n || std::time::Instant::now() > deadline {
            break members;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(members == n || members == 0, "{members} of {n} joined");
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
}

#[test]
fn one_socket_for_two_apps_and_app_released_on_close() {
    let s = Server::start();
    let mut ws = s.ws("A,B");
    s.external_media("A", "&channelId=ca");
    s.external_media("B", "&channelId=cb");
    let e1 = ws.next_event("StasisStart");
    let e2 = ws.next_event("StasisStart");
    assert_eq!(
        (&e1["application"], &e1["channel"]["id"]),
        (&json!("A"), &json!("ca"))
    );
    assert_eq!(
        (&e2["application"], &e2["channel"]["id"]),
        (&json!("B"), &json!("cb"))
    );
    let apps = s.get("/ari/applications");
    let names: Vec<&str> = apps
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A", "B"]);
    assert_eq!(
        keys(&apps.ok()[0]),
        [
            "name",
            "channel_ids",
            "bridge_ids",
            "endpoint_ids",
            "device_names",
            "events_allowed",
            "events_disallowed"
        ]
    );
    drop(ws);
    let deadline = std::time::Instant::now() + common::WAIT;
    while s.get("/ari/applications/A").status != 404 {
        assert!(std::time::Instant::now() < deadline, "A never released");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    s.get("/ari/applications/B")
        .assert_error(404, "Application does not exist.");
}

#[test]
fn bridge_model_fields_in_asterisk_order() {
    let s = Server::start();
    let r = s.post("/ari/bridges?bridgeId=ord&type=holding&name=n");
    let b = r.ok();
    assert_eq!(
        keys(b),
        [
            "id",
            "technology",
            "bridge_type",
            "bridge_class",
            "creator",
            "name",
            "channels",
            "creationtime",
            "video_mode"
        ]
    );
    assert_eq!(b["bridge_type"], "holding");
    assert_eq!(b["technology"], "holding_bridge");
    assert!(is_ari_timestamp(b["creationtime"].as_str().unwrap()));
    // a generated id is a UUIDv4
    let g = s.bridge("");
    assert_eq!(g.len(), 36);
    assert_eq!(&g[14..15], "4", "{g}");
}
