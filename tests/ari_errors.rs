//! ARI error replies over real HTTP: one test per row of ARI.md's status-code
//! table (crossbar column), then authentication, argument checking and the
//! events endpoint's refusals, a burst of bad requests and an oversized
//! WebSocket message the node survives.

mod common;

use common::{Auth, Server, PASS, USER};

// ---- the status-code table ----------------------------------------------------

#[test]
fn unknown_channel_is_404_channel_not_found() {
    let s = Server::start();
    s.get("/ari/channels/nope")
        .assert_error(404, "Channel not found");
    s.delete("/ari/channels/nope")
        .assert_error(404, "Channel not found");
    s.post("/ari/channels/nope/answer")
        .assert_error(404, "Channel not found");
}

#[test]
fn unknown_bridge_is_404_bridge_not_found() {
    let s = Server::start();
    s.get("/ari/bridges/nope")
        .assert_error(404, "Bridge not found");
    s.delete("/ari/bridges/nope")
        .assert_error(404, "Bridge not found");
    s.post("/ari/bridges/nope/addChannel?channel=x")
        .assert_error(404, "Bridge not found");
}

#[test]
fn unknown_playback_and_recording_are_404() {
    let s = Server::start();
    s.get("/ari/playbacks/x")
        .assert_error(404, "Playback not found");
    s.delete("/ari/playbacks/x")
        .assert_error(404, "Playback not found");
    s.get("/ari/recordings/live/x")
        .assert_error(404, "Recording not found");
    s.get("/ari/recordings/stored/x")
        .assert_error(404, "Recording not found");
}

#[test]
fn unknown_path_is_404_resource_not_found() {
    let s = Server::start();
    s.get("/ari/nothing")
        .assert_error(404, "Resource not found");
    s.get("/ari/channels/a/b/c/d")
        .assert_error(404, "Resource not found");
    s.get("/elsewhere").assert_error(404, "Resource not found");
    s.get("/ari/api-docs/nothing.json")
        .assert_error(404, "Resource not found");
}

#[test]
fn wrong_method_is_405_invalid_method() {
    let s = Server::start();
    s.delete("/ari/channels")
        .assert_error(405, "Invalid method");
    s.request("PUT", "/ari/asterisk/ping", None, Auth::Basic(USER, PASS))
        .assert_error(405, "Invalid method");
    s.get("/ari/bridges/b/addChannel")
        .assert_error(405, "Invalid method");
}

#[test]
fn add_channel_with_unknown_channel_is_400_channel_not_found() {
    let s = Server::start();
    let b = s.bridge("");
    s.post(&format!("/ari/bridges/{b}/addChannel?channel=nope"))
        .assert_error(400, "Channel not found");
}

#[test]
fn add_channel_without_channel_is_400_missing_parameter() {
    let s = Server::start();
    let b = s.bridge("");
    s.post(&format!("/ari/bridges/{b}/addChannel"))
        .assert_error(400, "Missing parameter channel");
    s.post(&format!("/ari/bridges/{b}/addChannel?channel="))
        .assert_error(400, "Missing parameter channel");
}

#[test]
fn remove_channel_not_in_bridge_is_422() {
    let s = Server::start();
    let _ws = s.ws("A");
    let ch = s.external_media("A", "");
    let id = ch["id"].as_str().unwrap();
    let b = s.bridge("");
    s.post(&format!("/ari/bridges/{b}/removeChannel?channel={id}"))
        .assert_error(422, "Channel not in this bridge");
    // and in another bridge is still "not in this bridge"
    let other = s.bridge("");
    s.add(&other, id);
    s.post(&format!("/ari/bridges/{b}/removeChannel?channel={id}"))
        .assert_error(422, "Channel not in this bridge");
}

#[test]
fn duplicate_bridge_id_is_409() {
    let s = Server::start();
    let r = s.post("/ari/bridges?bridgeId=b1");
    assert_eq!(r.ok()["id"], "b1");
    s.post("/ari/bridges?bridgeId=b1")
        .assert_error(409, "Bridge with id 'b1' already exists");
    s.post("/ari/bridges/b1")
        .assert_error(409, "Bridge with id 'b1' already exists");
}

#[test]
fn bogus_bridge_type_is_400_not_500() {
    let s = Server::start();
    s.post("/ari/bridges?type=bogus").assert_error(
        400,
        "Invalid bridge type 'bogus': expected a comma-separated list of mixing, holding, dtmf_events, proxy_media, video_single",
    );
    s.post("/ari/bridges/b2?type=mixing,bogus")
        .assert_error_prefix(400, "Invalid bridge type 'bogus'");
    // nothing was created by the refused requests
    s.get("/ari/bridges/b2")
        .assert_error(404, "Bridge not found");
    assert_eq!(s.get("/ari/bridges").ok(), &serde_json::json!([]));
}

/// Asterisk's video bridge types that crossbar cannot honour are refused by
/// name, and so is a list with neither mixing nor holding (Asterisk creates
/// no bridge for it: res_stasis.c bridge_create_common); video_single only
/// sets the video mode, as for Asterisk's audio-only members.
#[test]
fn bridge_types_crossbar_cannot_honour_are_400() {
    let s = Server::start();
    s.post("/ari/bridges?type=mixing,video_sfu")
        .assert_error_prefix(
            400,
            "Bridge type 'video_sfu' is not supported: crossbar carries no video",
        );
    s.post("/ari/bridges/b3?type=mixing,sdp_label")
        .assert_error_prefix(400, "Bridge type 'sdp_label' is not supported: ");
    s.post("/ari/bridges?type=dtmf_events")
        .assert_error(400, "Bridge type 'dtmf_events' needs 'mixing' or 'holding'");
    assert_eq!(s.get("/ari/bridges").ok(), &serde_json::json!([]));
    let single = s.post("/ari/bridges?type=mixing,video_single");
    assert_eq!(single.ok()["video_mode"], "single");
    assert_eq!(single.ok()["bridge_type"], "mixing");
    let plain = s.post("/ari/bridges?type=holding");
    assert_eq!(plain.ok()["video_mode"], "talker");
    // The api-docs offer only what is served.
    let docs = s.get("/ari/api-docs/bridges.json");
    let text = docs.ok().to_string();
    assert!(text.contains("absorbDTMF"), "absorbDTMF is served");
    assert!(!text.contains("inhibitConnectedLineUpdates"));
    assert!(text.contains("video_single"));
}

/// addChannel's inhibitConnectedLineUpdates cannot act in crossbar: refused
/// with the reason, whatever its value, and nothing joins.
#[test]
fn add_channel_parameters_crossbar_cannot_honour_are_400() {
    let s = Server::start();
    let _ws = s.ws("A");
    let ch = s.external_media("A", "");
    let id = ch["id"].as_str().unwrap();
    let b = s.bridge("");
    s.post_json(
        &format!("/ari/bridges/{b}/addChannel?channel={id}"),
        r#"{"inhibitConnectedLineUpdates": false}"#,
    )
    .assert_error_prefix(
        400,
        "Parameter 'inhibitConnectedLineUpdates' of addChannel is not supported by crossbar: ",
    );
    assert_eq!(
        s.get(&format!("/ari/bridges/{b}")).ok()["channels"],
        serde_json::json!([])
    );
    s.add(&b, id);
}

/// dial: a negative timeout is outside the documented range, and an unknown
/// caller is named; neither dials.
#[test]
fn dial_with_a_bad_timeout_or_caller_is_400() {
    let s = Server::start();
    let _a = s.ws("A");
    let _b = s.ws("B");
    s.post("/ari/channels/create?endpoint=Local/x@B&app=A&channelId=one")
        .ok();
    s.post("/ari/channels/one/dial?timeout=-1").assert_error(
        400,
        "Invalid value '-1' for parameter timeout: expected at least 0",
    );
    s.post("/ari/channels/one/dial?caller=ghost")
        .assert_error(400, "Provided caller channel 'ghost' was not found");
    // Still dialable.
    s.post("/ari/channels/one/dial").no_content();
    let docs = s.get("/ari/api-docs/channels.json");
    let dial = docs.ok()["apis"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "/channels/{channelId}/dial")
        .unwrap()
        .clone();
    let timeout = dial["operations"][0]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "timeout")
        .unwrap()
        .clone();
    assert_eq!(
        timeout["allowableValues"],
        serde_json::json!({"valueType": "RANGE", "min": 0})
    );
}

#[test]
fn external_media_without_format_app_or_host_is_400() {
    let s = Server::start();
    s.post("/ari/channels/externalMedia?app=A&external_host=127.0.0.1:4000")
        .assert_error(400, "format cannot be empty");
    s.post("/ari/channels/externalMedia?format=ulaw&external_host=127.0.0.1:4000")
        .assert_error(400, "app cannot be empty");
    s.post("/ari/channels/externalMedia?app=A&format=ulaw")
        .assert_error(
            400,
            "external_host is required for all but websocket server connections",
        );
}

#[test]
fn external_media_host_without_port_is_400() {
    let s = Server::start();
    s.post("/ari/channels/externalMedia?app=A&format=ulaw&external_host=127.0.0.1")
        .assert_error(
            400,
            "external_host must be <host>:<port> for all transports other than websocket",
        );
}

#[test]
fn external_media_unknown_format_is_400_not_500() {
    let s = Server::start();
    s.post("/ari/channels/externalMedia?app=A&format=bogus&external_host=127.0.0.1:4000")
        .assert_error_prefix(400, "Provided format (bogus) was not found");
}

#[test]
fn external_media_hostname_is_400_not_500() {
    let s = Server::start();
    let _ws = s.ws("A");
    s.post("/ari/channels/externalMedia?app=A&format=ulaw&external_host=media.example:4000")
        .assert_error(
            400,
            "external_host 'media.example:4000' must be an IP address and port (hostnames are not resolved)",
        );
}

#[test]
fn external_media_aimed_at_the_nodes_own_rtp_ports_is_400() {
    let s = Server::start();
    let _ws = s.ws("A");
    let (lo, hi) = s.rtp;
    for port in [lo, lo + 1, hi] {
        s.post(&format!(
            "/ari/channels/externalMedia?app=A&format=ulaw&external_host=127.0.0.1:{port}"
        ))
        .assert_error(
            400,
            &format!(
                "external_host '127.0.0.1:{port}' is one of this node's RTP addresses (127.0.0.1:{lo}-{hi}): media would loop"
            ),
        );
    }
    // Another address, or a port outside the range, is fine.
    s.external_media("A", "");
    assert!(s
        .get("/ari/channels")
        .ok()
        .as_array()
        .is_some_and(|a| a.len() == 1));
}

#[test]
fn external_media_duplicate_channel_id_is_409_not_500() {
    let s = Server::start();
    let _ws = s.ws("A");
    let ch = s.external_media("A", "&channelId=c1");
    assert_eq!(ch["id"], "c1");
    s.post(
        "/ari/channels/externalMedia?app=A&format=ulaw&external_host=127.0.0.1:4000&channelId=c1",
    )
    .assert_error(409, "Channel with id 'c1' already exists");
    assert_eq!(s.get("/ari/channels").ok().as_array().unwrap().len(), 1);
}

#[test]
fn originate_without_endpoint_is_400() {
    let s = Server::start();
    s.post("/ari/channels?app=A")
        .assert_error(400, "Endpoint must be specified");
    s.post("/ari/channels/c9?app=A")
        .assert_error(400, "Endpoint must be specified");
}

#[test]
fn move_to_an_app_nobody_runs_is_204_then_application_move_failed() {
    let s = Server::start();
    let mut ws = s.ws("A");
    let ch = s.external_media("A", "");
    let id = ch["id"].as_str().unwrap();
    ws.next_event("StasisStart");
    s.post(&format!("/ari/channels/{id}/move?app=Nobody&appArgs=x,y"))
        .no_content();
    let events = ws.sync(&s);
    assert_eq!(common::types(&events), ["ApplicationMoveFailed"]);
    let e = &events[0];
    assert_eq!(e["application"], "A");
    assert_eq!(e["destination"], "Nobody");
    assert_eq!(e["args"], serde_json::json!(["x", "y"]));
    assert_eq!(e["channel"]["id"], id);
    // the channel stays where it was
    let app = s.get("/ari/applications/A");
    assert_eq!(app.ok()["channel_ids"], serde_json::json!([id]));
}

// ---- authentication -----------------------------------------------------------

#[test]
fn no_credentials_is_401_with_basic_challenge() {
    let s = Server::start();
    let r = s.request("GET", "/ari/asterisk/ping", None, Auth::None);
    r.assert_error(401, "Authentication required");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"Asterisk REST Interface\"")
    );
    // also on unknown paths: nothing is revealed before authentication
    let r = s.request("GET", "/ari/nothing", None, Auth::None);
    assert_eq!(r.status, 401);
}

#[test]
fn wrong_password_is_401() {
    let s = Server::start();
    for auth in [
        Auth::Basic(USER, "wrong"),
        Auth::Basic("someone", PASS),
        Auth::ApiKey("asterisk:wrong"),
        Auth::ApiKey("asterisk"),
    ] {
        let r = s.request("GET", "/ari/asterisk/ping", None, auth);
        r.assert_error(401, "Authentication required");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"Asterisk REST Interface\""),
            "{auth:?}"
        );
    }
}

#[test]
fn basic_and_api_key_are_both_accepted() {
    let s = Server::start();
    let key = format!("{USER}:{PASS}");
    for auth in [Auth::Basic(USER, PASS), Auth::ApiKey(&key)] {
        let r = s.request("GET", "/ari/asterisk/ping", None, auth);
        let body = r.ok();
        assert_eq!(body["ping"], "pong", "{auth:?}");
        assert_eq!(body["asterisk_id"], common::ENTITY_ID);
    }
    // api_key is not mistaken for an operation parameter
    let r = s.request("GET", "/ari/channels", None, Auth::ApiKey(&key));
    assert_eq!(r.ok(), &serde_json::json!([]));
}

// ---- arguments ----------------------------------------------------------------

#[test]
fn malformed_json_body_is_400() {
    let s = Server::start();
    s.post_json("/ari/bridges", "{not json")
        .assert_error_prefix(400, "Malformed JSON body");
    s.post_json("/ari/bridges", "[1,2]")
        .assert_error(400, "The request body must be a JSON object");
    s.post_json("/ari/bridges", r#"{"nope":1}"#)
        .assert_error(400, "Unknown field 'nope' in the request body for create");
}

#[test]
fn wrong_query_parameter_types_are_400() {
    let s = Server::start();
    s.post("/ari/channels?endpoint=Local/x@A&app=A&timeout=abc")
        .assert_error(
            400,
            "Invalid value 'abc' for parameter timeout: expected an integer",
        );
    let b = s.bridge("");
    s.post(&format!("/ari/bridges/{b}/addChannel?channel=c&mute=maybe"))
        .assert_error(
            400,
            "Invalid value 'maybe' for parameter mute: expected true or false",
        );
}

#[test]
fn unknown_query_parameter_is_400() {
    let s = Server::start();
    s.get("/ari/channels?bogus=1")
        .assert_error(400, "Unknown parameter 'bogus' for list (see api-docs)");
    s.post("/ari/bridges?bridgeid=x").assert_error(
        400,
        "Unknown parameter 'bridgeid' for create (see api-docs)",
    );
}

#[test]
fn events_without_app_is_400() {
    let s = Server::start();
    s.get("/ari/events")
        .assert_error(400, "HTTP request is missing param: [app]");
}

#[test]
fn events_without_upgrade_is_426() {
    let s = Server::start();
    s.get("/ari/events?app=A")
        .assert_error(426, "Upgrade Required");
    // and no application was registered by the refused request
    s.get("/ari/applications/A")
        .assert_error(404, "Application does not exist.");
}

// ---- resilience ---------------------------------------------------------------

#[test]
fn node_still_serves_after_a_burst_of_bad_requests() {
    let s = Server::start();
    let before = s.metric("crossbar_http_client_errors_total");
    assert_eq!(before, 0);
    let key_bad = "asterisk:wrong";
    let mut sent = 0u64;
    for round in 0..5 {
        let replies = [
            s.get("/ari/channels/nope"),
            s.get("/ari/bridges/nope"),
            s.get("/ari/playbacks/x"),
            s.get("/ari/nothing"),
            s.delete("/ari/channels"),
            s.post("/ari/bridges/nope/addChannel?channel=x"),
            s.post("/ari/bridges?type=bogus"),
            s.post("/ari/channels/externalMedia?app=A"),
            s.post("/ari/channels/externalMedia?app=A&format=ulaw&external_host=127.0.0.1"),
            s.post("/ari/channels?app=A"),
            s.post_json("/ari/bridges", "{not json"),
            s.post_json("/ari/bridges", &"[".repeat(10_000)),
            s.get("/ari/channels?bogus=1"),
            s.get("/ari/events"),
            s.get("/ari/events?app=A"),
            s.request("GET", "/ari/asterisk/ping", None, Auth::None),
            s.request("GET", "/ari/asterisk/ping", None, Auth::ApiKey(key_bad)),
            s.get(&format!("/ari/channels/{}", "x".repeat(2000))),
            s.get("/ari/channels/%ff%fe"),
        ];
        for r in &replies {
            assert!(
                (400..500).contains(&r.status),
                "round {round}: expected a 4xx: {r:?}"
            );
        }
        sent += replies.len() as u64;
    }
    let ping = s.get("/ari/asterisk/ping");
    assert_eq!(ping.ok()["ping"], "pong");
    assert_eq!(s.metric("crossbar_http_client_errors_total"), sent);
    assert_eq!(s.metric("crossbar_http_server_errors_total"), 0);
    assert_eq!(s.metric("crossbar_auth_failures_total"), 2 * 5);
    // and real work still works
    let mut ws = s.ws("A");
    let ch = s.external_media("A", "");
    assert_eq!(ws.next_event("StasisStart")["channel"]["id"], ch["id"]);
}

#[test]
fn oversized_websocket_message_ends_the_session_not_the_node() {
    let s = Server::start();
    let mut ws = s.ws("A");
    // 3 MiB: beyond what a RESTRequest needs (a 1 MiB body, escaped).
    let big = format!("[{}0]", "0,".repeat(3 << 19));
    // The server may close while the message is still being written.
    let _ = ws.socket.send(tungstenite::Message::Text(big.into()));
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        match ws.socket.read() {
            Ok(tungstenite::Message::Close(_)) => break,
            Ok(other) => panic!("expected the session to end, got {other:?}"),
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                assert!(std::time::Instant::now() < deadline, "session not ended");
            }
            Err(_) => break,
        }
    }
    assert_eq!(s.get("/ari/asterisk/ping").ok()["ping"], "pong");
    // A normal message on a new session is still answered.
    let mut ws = s.ws("A");
    ws.send_text(r#"{"type":"RESTRequest","request_id":"1","method":"GET","uri":"asterisk/ping"}"#);
    assert_eq!(ws.next_event("RESTResponse")["status_code"], 200);
}

#[test]
fn websocket_without_credentials_is_refused_with_401() {
    let s = Server::start();
    let stream = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let url = format!("ws://127.0.0.1:{}/ari/events?app=A", s.port);
    match tungstenite::client(url.as_str(), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            assert_eq!(resp.status().as_u16(), 401);
            assert_eq!(
                resp.headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok()),
                Some("Basic realm=\"Asterisk REST Interface\"")
            );
        }
        Err(e) => panic!("expected an HTTP 401 refusal, got {e}"),
        Ok(_) => panic!("the WebSocket was accepted without credentials"),
    }
    s.get("/ari/applications/A")
        .assert_error(404, "Application does not exist.");
}

#[test]
fn replies_are_compact_json_with_content_length() {
    let s = Server::start();
    let r = s.get("/ari/asterisk/ping");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("content-length"),
        Some(r.text.len().to_string().as_str())
    );
    assert!(
        !r.text.contains(": ") && !r.text.contains('\n'),
        "{}",
        r.text
    );
    let body = r.ok();
    assert!(common::is_ari_timestamp(
        body["timestamp"].as_str().unwrap()
    ));
    let b = s.bridge("");
    let r = s.delete(&format!("/ari/bridges/{b}"));
    r.no_content();
    assert_eq!(r.header("content-type"), None);
    let r = s.get("/ari/channels/nope");
    assert_eq!(
        r.header("content-length"),
        Some(r.text.len().to_string().as_str())
    );
    assert_eq!(r.text, r#"{"message":"Channel not found"}"#);
}

/// A client that holds an events WebSocket open but stops reading is closed
/// (1008) once `ari.ws_queue_events` events are waiting for it, the loss is
/// counted, and the node goes on serving.
#[test]
fn a_websocket_that_stops_reading_is_closed_not_the_node() {
    let mut s = Server::start_with(&[("CROSSBAR_ARI_WS_QUEUE_EVENTS", "16")]);
    let mut lazy = s.ws_raw("/ari/events?app=A&api_key=asterisk:asterisk");
    s.wait_app("A");
    let channel = s.external_media("A", "");
    let c = channel["id"].as_str().expect("channel id").to_string();
    let body = serde_json::json!({"variable": "BIG", "value": "x".repeat(60_000)}).to_string();
    // 400 events of 60 kB (24 MB) outgrow the queue and the kernel's socket buffers.
    for _ in 0..400 {
        s.post_json(&format!("/ari/channels/{c}/variable"), &body)
            .no_content();
        if s.metric("crossbar_events_dropped_total") > 0 {
            break;
        }
    }
    assert!(s.metric("crossbar_events_dropped_total") > 0, "no overflow");
    // The application went with its only socket; the node still answers.
    s.get("/ari/applications/A")
        .assert_error(404, "Application does not exist.");
    assert!(s.alive());
    // What the lazy client finds at the end of its stream: a policy close, or
    // the connection dropped when even the close frame could not be written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut code = None;
    while std::time::Instant::now() < deadline {
        match lazy.read() {
            Ok(tungstenite::Message::Close(frame)) => {
                code = frame.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                code = Some(0);
                break;
            }
        }
    }
    assert!(matches!(code, Some(1008) | Some(0)), "{code:?}");
}

/// Dialplan parameters (crossbar has no dialplan) and externalMedia's
/// transport_data (RTP over UDP takes none) cannot act: refused with the
/// reason, nothing created, and absent from the api-docs; every format
/// named in `formats` must be known.
#[test]
fn parameters_that_cannot_act_are_400_and_not_documented() {
    let s = Server::start();
    let _ws = s.ws("A");
    for (query, param, op) in [
        (
            "/ari/channels?endpoint=Local/x@A&app=A&extension=100",
            "extension",
            "originate",
        ),
        (
            "/ari/channels/o1?endpoint=Local/x@A&app=A&context=default",
            "context",
            "originateWithId",
        ),
    ] {
        s.post(query).assert_error(
            400,
            &format!(
                "Parameter '{param}' of {op} is not supported by crossbar: crossbar has no dialplan (name the Stasis application with app)"
            ),
        );
    }
    s.post("/ari/channels/externalMedia?app=A&external_host=127.0.0.1:40000&format=ulaw&transport_data=x")
        .assert_error_prefix(400, "Parameter 'transport_data' of externalMedia is not supported by crossbar: ");
    s.post("/ari/channels?endpoint=Local/x@A&app=A&formats=ulaw,nonsense")
        .assert_error_prefix(400, "");
    assert_eq!(s.get("/ari/channels").ok(), &serde_json::json!([]));
    let ch = s.external_media("A", "");
    let id = ch["id"].as_str().unwrap();
    s.post(&format!("/ari/channels/{id}/continue?priority=1"))
        .assert_error_prefix(
            400,
            "Parameter 'priority' of continueInDialplan is not supported by crossbar: ",
        );
    let docs = s.get("/ari/api-docs/channels.json").ok().to_string();
    for name in [
        "extension",
        "context",
        "priority",
        "label",
        "transport_data",
    ] {
        let param = format!("\"name\":\"{name}\"");
        assert!(!docs.contains(&param), "{name} still documented");
    }
    assert!(
        docs.contains("\"name\":\"endpoint\""),
        "the check sees parameters"
    );
}
