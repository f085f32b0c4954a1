//! ARI operation sequences run through the node as its transports run them
//! (route table, argument checking, handler, control lock, event flush), on
//! the in-memory [`FakePlane`] with deterministic ids: no shard thread, no
//! socket. Each test checks the events an application receives and the
//! data-plane calls the operations made, in order.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::http::{invoke, parse_query, route, Outcome};
use super::{EventSink, Node};
use crate::ari::spec::Method;
use crate::clock::Timestamp;
use crate::config::Config;
use crate::control::fake::{Call, FakePlane, Op};
use crate::control::ids::SequentialIds;
use crate::media::Format;
use crate::shard::{BridgeSpec, DataplaneError, LegId, MemberSpec, Technology};

const EPOCH: u64 = 1_795_358_696;

/// A node on a fake data plane, and the events of the applications a test
/// WebSocket holds.
struct Harness {
    node: Arc<Node>,
    fake: FakePlane,
    events: mpsc::Receiver<String>,
}

impl Harness {
    /// A node whose events for `apps` the harness receives.
    async fn new(apps: &[&str]) -> Harness {
        let fake = FakePlane::new();
        let node = Node::with_ids(
            Config::defaults(),
            Box::new(fake.clone()),
            Timestamp(EPOCH * 1000),
            Box::new(SequentialIds::new(EPOCH)),
        );
        let (sink, events) = EventSink::new(10_000);
        let apps: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
        node.lock().await.attach(node.now(), &apps, false, sink);
        Harness { node, fake, events }
    }

    /// Runs `METHOD /ari<target>` (`target` may carry a query) with a JSON
    /// `body` (or none when empty).
    async fn call(&self, method: Method, target: &str, body: &str) -> Outcome {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let op = route(method, path).unwrap_or_else(|e| panic!("{target}: {e}"));
        invoke(&self.node, op, parse_query(query), body.as_bytes()).await
    }

    /// Like [`Harness::call`], expecting `status`; the JSON reply, if any.
    async fn expect(&self, method: Method, target: &str, status: u16) -> Value {
        let out = self.call(method, target, "").await;
        assert_eq!(out.status, status, "{target}: {:?}", out.body);
        out.body
            .map(|b| serde_json::from_str(&b).expect("a JSON reply"))
            .unwrap_or(Value::Null)
    }

    /// An externalMedia channel in application `app`; its snapshot.
    async fn external_media(&self, app: &str, port: u16, id: Option<&str>) -> Value {
        let mut target =
            format!("/channels/externalMedia?app={app}&external_host=127.0.0.1:{port}&format=ulaw");
        if let Some(id) = id {
            target.push_str(&format!("&channelId={id}"));
        }
        self.expect(Method::Post, &target, 200).await
    }

    /// The events received since the last call.
    fn events(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(text) = self.events.try_recv() {
            out.push(serde_json::from_str(&text).expect("an event is JSON"));
        }
        out
    }

    /// The type and channel id of each event received since the last call.
    fn channel_events(&mut self) -> Vec<(String, String)> {
        self.events()
            .iter()
            .map(|e| {
                let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
                (text(&e["type"]), text(&e["channel"]["id"]))
            })
            .collect()
    }

    /// The types of the events received since the last call.
    fn event_types(&mut self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

fn owned((a, b): (&str, &str)) -> (String, String) {
    (a.to_string(), b.to_string())
}

fn member(leg: LegId) -> MemberSpec {
    MemberSpec {
        leg,
        mute: false,
        announcer: false,
        absorb_dtmf: false,
    }
}

#[tokio::test]
async fn hangup_of_a_bridged_channel_leaves_the_bridge_then_destroys_the_leg() {
    let mut h = Harness::new(&["A"]).await;
    h.external_media("A", 4000, Some("c1")).await;
    h.external_media("A", 4002, Some("c2")).await;
    h.expect(Method::Post, "/bridges?bridgeId=b1", 200).await;
    h.expect(Method::Post, "/bridges/b1/addChannel?channel=c1,c2", 204)
        .await;
    h.events();
    let (leg1, leg2, bridge) = match h.fake.take_calls()[..] {
        [Call::CreateRtpLeg { leg: l1, .. }, Call::CreateRtpLeg { leg: l2, .. }, Call::SetBridge { bridge, .. }, ..] => {
            (l1, l2, bridge)
        }
        ref other => panic!("unexpected calls: {other:?}"),
    };

    h.expect(Method::Delete, "/channels/c1", 204).await;

    let events = h.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "ChannelHangupRequest",
            "ChannelLeftBridge",
            "StasisEnd",
            "ChannelDestroyed"
        ]
    );
    assert!(events.iter().all(|e| e["channel"]["id"] == "c1"));
    assert_eq!(
        (&events[0]["cause"], &events[0]["soft"]),
        (&json!(32), &json!(true))
    );
    assert_eq!(events[1]["bridge"]["channels"], json!(["c2"]));
    assert_eq!(events[3]["cause"], 16);
    // The bridge is first set without the channel, then its leg goes.
    assert_eq!(
        h.fake.take_calls(),
        [
            Call::SetBridge {
                bridge,
                spec: BridgeSpec {
                    members: vec![member(leg2)],
                    ..BridgeSpec::default()
                },
            },
            Call::DestroyLeg { leg: leg1 },
        ]
    );
    assert_eq!(h.fake.legs(), [leg2]);
    h.expect(Method::Get, "/channels/c1", 404).await;
}

#[tokio::test]
async fn join_and_leave_report_the_technology_the_data_plane_answered() {
    let mut h = Harness::new(&["A"]).await;
    h.external_media("A", 4000, Some("c1")).await;
    let created = h.expect(Method::Post, "/bridges?bridgeId=b1", 200).await;
    assert_eq!(created["technology"], "simple_bridge");
    h.events();

    // Answers no table would give for one member: the events must show the
    // data plane's answer, not a guess of the control plane.
    h.fake.report_technology(Technology::Softmix);
    h.expect(Method::Post, "/bridges/b1/addChannel?channel=c1", 204)
        .await;
    let entered = h.events();
    assert_eq!(entered.len(), 1);
    assert_eq!(entered[0]["type"], "ChannelEnteredBridge");
    assert_eq!(entered[0]["bridge"]["technology"], "softmix");
    assert_eq!(entered[0]["bridge"]["channels"], json!(["c1"]));
    let got = h.expect(Method::Get, "/bridges/b1", 200).await;
    assert_eq!(got["technology"], "softmix");

    h.fake.report_technology(Technology::HoldingBridge);
    h.expect(Method::Post, "/bridges/b1/removeChannel?channel=c1", 204)
        .await;
    let left = h.events();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["type"], "ChannelLeftBridge");
    assert_eq!(left[0]["bridge"]["technology"], "holding_bridge");
    assert_eq!(left[0]["bridge"]["channels"], json!([]));
    let got = h.expect(Method::Get, "/bridges/b1", 200).await;
    assert_eq!(got["technology"], "holding_bridge");
}

#[tokio::test]
async fn a_data_plane_refusal_on_create_is_503_and_leaves_nothing() {
    let mut h = Harness::new(&["A"]).await;
    for (error, message) in [
        (DataplaneError::NoPorts, "No free RTP port on this node"),
        (
            DataplaneError::Busy,
            "Data plane busy: a shard is not keeping up",
        ),
        (
            DataplaneError::Timeout,
            "Data plane timeout: a shard did not answer in time (it is given up)",
        ),
        (
            DataplaneError::ShardGone,
            "Data plane shard is down: this channel or bridge's media is gone",
        ),
    ] {
        h.fake.fail_next(Op::CreateRtpLeg, error);
        let out = h
            .call(
                Method::Post,
                "/channels/externalMedia?app=A&external_host=127.0.0.1:4000&format=ulaw&channelId=c1",
                "",
            )
            .await;
        assert_eq!(out.status, 503);
        let body: Value = serde_json::from_str(out.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({ "message": message }));
        assert_eq!(h.event_types(), Vec::<String>::new());
        assert_eq!(h.expect(Method::Get, "/channels", 200).await, json!([]));
        assert_eq!(h.fake.legs(), Vec::<LegId>::new());
    }
    // The id was not taken by the failed attempts.
    let ch = h.external_media("A", 4000, Some("c1")).await;
    assert_eq!(ch["id"], "c1");
    assert_eq!(h.event_types(), ["StasisStart"]);

    h.fake.fail_next(Op::SetBridge, DataplaneError::NoPorts);
    h.expect(Method::Post, "/bridges?bridgeId=b1", 503).await;
    assert_eq!(h.expect(Method::Get, "/bridges", 200).await, json!([]));
    h.expect(Method::Post, "/bridges?bridgeId=b1", 200).await;
}

#[tokio::test]
async fn a_refused_join_changes_neither_the_bridge_nor_the_channel() {
    let mut h = Harness::new(&["A"]).await;
    h.external_media("A", 4000, Some("c1")).await;
    h.expect(Method::Post, "/bridges?bridgeId=b1", 200).await;
    h.events();
    h.fake.fail_next(Op::SetBridge, DataplaneError::Busy);
    h.expect(Method::Post, "/bridges/b1/addChannel?channel=c1", 503)
        .await;
    assert_eq!(h.event_types(), Vec::<String>::new());
    let bridge = h.expect(Method::Get, "/bridges/b1", 200).await;
    assert_eq!(bridge["channels"], json!([]));
    // Not in a bridge: removing it is refused as for any non-member.
    h.expect(Method::Post, "/bridges/b1/removeChannel?channel=c1", 422)
        .await;
    // The next try goes through.
    h.expect(Method::Post, "/bridges/b1/addChannel?channel=c1", 204)
        .await;
    assert_eq!(h.event_types(), ["ChannelEnteredBridge"]);
}

#[tokio::test]
async fn generated_ids_and_names_come_from_the_generator() {
    let mut h = Harness::new(&["A"]).await;
    let c1 = h.external_media("A", 4000, None).await;
    let c2 = h.external_media("A", 4002, None).await;
    assert_eq!(c1["id"], format!("{EPOCH}.1"));
    assert_eq!(c2["id"], format!("{EPOCH}.2"));
    assert_eq!(c1["name"], "UnicastRTP/127.0.0.1:4000-00000000");
    assert_eq!(c2["name"], "UnicastRTP/127.0.0.1:4002-00000001");
    let starts = h.events();
    assert_eq!(starts[0]["type"], "StasisStart");
    assert_eq!(starts[0]["channel"]["id"], format!("{EPOCH}.1"));
    assert_eq!(starts[1]["channel"]["id"], format!("{EPOCH}.2"));

    let bridge = h.expect(Method::Post, "/bridges", 200).await;
    let id = "00000000-0000-4000-8000-000000000001";
    assert_eq!(bridge["id"], id);
    h.expect(
        Method::Post,
        &format!("/bridges/{id}/addChannel?channel={EPOCH}.1"),
        204,
    )
    .await;
    let entered = h.events();
    assert_eq!(entered[0]["type"], "ChannelEnteredBridge");
    assert_eq!(entered[0]["bridge"]["id"], id);
    assert_eq!(entered[0]["channel"]["id"], format!("{EPOCH}.1"));

    // A Local pair takes the next two ids and the next name counter.
    let one = h
        .expect(
            Method::Post,
            "/channels/create?endpoint=Local/bob@A&app=A",
            200,
        )
        .await;
    assert_eq!(one["id"], format!("{EPOCH}.3"));
    assert_eq!(one["name"], "Local/bob@A-00000002;1");
}

#[tokio::test]
async fn hanging_up_a_local_half_ends_both_and_destroys_both_legs() {
    let mut h = Harness::new(&["A", "B"]).await;
    let one = h
        .expect(
            Method::Post,
            "/channels?endpoint=Local/bob@B&app=A&channelId=l1&otherChannelId=l2&timeout=0",
            200,
        )
        .await;
    assert_eq!(one["id"], "l1");
    let (a, b) = match h.fake.take_calls()[..] {
        [Call::CreateLocalPair { a, b, format }] => {
            assert_eq!(format, Format::Ulaw);
            (a, b)
        }
        ref other => panic!("unexpected calls: {other:?}"),
    };
    // `;2` entered B; answering it puts `;1` in A.
    assert_eq!(h.event_types(), ["StasisStart"]);
    h.expect(Method::Post, "/channels/l2/answer", 204).await;
    // (`;1`, in no application yet, has nobody to tell of its own change.)
    assert_eq!(
        h.channel_events(),
        [("ChannelStateChange", "l2"), ("StasisStart", "l1")].map(owned)
    );

    h.expect(Method::Delete, "/channels/l1", 204).await;
    assert_eq!(
        h.channel_events(),
        [
            ("ChannelHangupRequest", "l1"),
            ("StasisEnd", "l1"),
            ("ChannelDestroyed", "l1"),
            ("ChannelHangupRequest", "l2"),
            ("StasisEnd", "l2"),
            ("ChannelDestroyed", "l2"),
        ]
        .map(owned)
    );
    assert_eq!(
        h.fake.take_calls(),
        [Call::DestroyLeg { leg: a }, Call::DestroyLeg { leg: b }]
    );
    assert_eq!(h.fake.legs(), Vec::<LegId>::new());
}

#[tokio::test]
async fn a_leg_the_data_plane_no_longer_knows_still_hangs_up() {
    let mut h = Harness::new(&["A"]).await;
    h.external_media("A", 4000, Some("c1")).await;
    h.events();
    h.fake.fail_next(Op::DestroyLeg, DataplaneError::Unknown);
    h.expect(Method::Delete, "/channels/c1", 204).await;
    assert_eq!(
        h.event_types(),
        ["ChannelHangupRequest", "StasisEnd", "ChannelDestroyed"]
    );
    h.expect(Method::Get, "/channels/c1", 404).await;
}

#[tokio::test]
async fn hold_and_mute_reach_the_data_plane_before_the_events() {
    let mut h = Harness::new(&["A"]).await;
    h.external_media("A", 4000, Some("c1")).await;
    h.events();
    let leg = h.fake.legs()[0];
    h.fake.take_calls();

    h.fake.fail_next(Op::SetHold, DataplaneError::Busy);
    h.expect(Method::Post, "/channels/c1/hold", 503).await;
    assert_eq!(h.event_types(), Vec::<String>::new());
    h.expect(Method::Post, "/channels/c1/hold", 204).await;
    assert_eq!(h.event_types(), ["ChannelHold"]);
    h.expect(Method::Post, "/channels/c1/mute?direction=in", 204)
        .await;
    assert_eq!(
        h.fake.take_calls(),
        [
            Call::SetHold { leg, on: true },
            Call::SetHold { leg, on: true },
            Call::SetMute {
                leg,
                direction: crate::shard::Direction::In,
                on: true
            },
        ]
    );
}

#[tokio::test]
async fn metrics_count_the_planes_shards() {
    let h = Harness::new(&[]).await;
    h.fake.set_shard_count(3);
    let text = super::http::render_metrics(&h.node).await;
    assert!(
        text.lines().any(|l| l == "crossbar_shards 3"),
        "no shard gauge in:\n{text}"
    );
}

/// A channel id given to `;1` alone never makes `;2` take the same id: `;2`
/// is `<id>;2` (Asterisk's default), and an id given to `;2` alone is skipped
/// by `;1`'s generated one. (Both once took the generator's next id.)
#[tokio::test]
async fn a_local_pair_never_gives_both_halves_one_id() {
    let mut h = Harness::new(&["A", "B"]).await;
    let next = format!("{EPOCH}.1");
    let one = h
        .expect(
            Method::Post,
            &format!("/channels/create?endpoint=Local/x@B&app=A&channelId={next}"),
            200,
        )
        .await;
    assert_eq!(one["id"], next.as_str());
    let two = format!("{next};2");
    let listed = h.expect(Method::Get, "/channels", 200).await;
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [next.as_str(), two.as_str()]);
    let got = h
        .expect(Method::Get, &format!("/channels/{two}"), 200)
        .await;
    assert!(got["name"].as_str().unwrap().ends_with(";2"), "{got}");

    // `;2` takes the id the generator would give `;1`: `;1` skips it.
    let taken = format!("{EPOCH}.2");
    let one = h
        .expect(
            Method::Post,
            &format!("/channels/create?endpoint=Local/x@B&app=A&otherChannelId={taken}"),
            200,
        )
        .await;
    assert_eq!(one["id"], format!("{EPOCH}.3"));
    let got = h
        .expect(Method::Get, &format!("/channels/{taken}"), 200)
        .await;
    assert!(got["name"].as_str().unwrap().ends_with(";2"), "{got}");
    h.events();

    // The same id for both halves, or an id in use, is a conflict.
    for query in [
        "channelId=same&otherChannelId=same".to_string(),
        format!("channelId={next}"),
        format!("channelId=fresh&otherChannelId={two}"),
    ] {
        let out = h
            .call(
                Method::Post,
                &format!("/channels/create?endpoint=Local/x@B&app=A&{query}"),
                "",
            )
            .await;
        assert_eq!(out.status, 409, "{query}: {:?}", out.body);
    }
    assert_eq!(h.events(), Vec::<Value>::new());
}

/// `Local/EXTEN@CONTEXT` with no application CONTEXT: created as Asterisk
/// creates it (`;1` enters the creating application); dialing it fails as
/// Asterisk's local_call() does on a missing extension: 204, no `Dial`, `;1`
/// leaves its application and both halves end with cause 0.
#[tokio::test]
async fn dialing_a_local_pair_whose_context_has_no_application_ends_it() {
    let mut h = Harness::new(&["A"]).await;
    let one = h
        .expect(
            Method::Post,
            "/channels/create?endpoint=Local/x@nowhere&app=A&channelId=l1&otherChannelId=l2",
            200,
        )
        .await;
    assert_eq!(one["id"], "l1");
    assert_eq!(one["name"], "Local/x@nowhere-00000000;1");
    assert_eq!(h.channel_events(), [("StasisStart", "l1")].map(owned));
    let (a, b) = match h.fake.take_calls()[..] {
        [Call::CreateLocalPair { a, b, .. }] => (a, b),
        ref other => panic!("unexpected calls: {other:?}"),
    };

    h.expect(Method::Post, "/channels/l1/dial", 204).await;
    let events = h.events();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["channel"]["id"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [("StasisEnd", "l1"), ("ChannelDestroyed", "l1")].map(owned)
    );
    assert_eq!(events[1]["cause"], 0);
    assert_eq!(events[1]["cause_txt"], "Unknown");
    assert_eq!(
        h.fake.take_calls(),
        [Call::DestroyLeg { leg: b }, Call::DestroyLeg { leg: a }]
    );
    assert_eq!(h.expect(Method::Get, "/channels", 200).await, json!([]));
}

/// Originated, the same pair is answered 200 and then ends at once; the
/// originating application, subscribed to both halves as in Asterisk, sees
/// `;2` then `;1` destroyed with cause 0.
#[tokio::test]
async fn originating_a_local_pair_whose_context_has_no_application_ends_it() {
    let mut h = Harness::new(&["A"]).await;
    let one = h
        .expect(
            Method::Post,
            "/channels?endpoint=Local/x@nowhere&app=A&channelId=l1&otherChannelId=l2",
            200,
        )
        .await;
    assert_eq!(one["id"], "l1");
    assert_eq!(one["state"], "Down");
    let events = h.events();
    let seen: Vec<(String, String, u64)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["channel"]["id"].as_str().unwrap().to_string(),
                e["cause"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ChannelDestroyed".to_string(), "l2".to_string(), 0),
            ("ChannelDestroyed".to_string(), "l1".to_string(), 0),
        ]
    );
    assert_eq!(h.fake.legs(), Vec::<LegId>::new());
    assert_eq!(h.expect(Method::Get, "/channels", 200).await, json!([]));
    // Nothing is left subscribed to the ids: a new pair with them is quiet.
    h.expect(
        Method::Post,
        "/channels/create?endpoint=Local/x@A&app=A&channelId=l1&otherChannelId=l2",
        200,
    )
    .await;
    assert_eq!(h.channel_events(), [("StasisStart", "l1")].map(owned));
}

/// `dial?caller=`: the dialed `;1` half inherits the caller's `_`/`__`
/// variables and gets the caller's caller id as its connected line; calling
/// it hands `;2` its variables and crosses caller id and connected line over
/// (Asterisk's ast_ari_channels_dial, then ast_unreal_call_setup).
#[tokio::test]
async fn dial_with_a_caller_sets_connected_line_and_inherits_variables() {
    let mut h = Harness::new(&["A", "B"]).await;
    h.expect(
        Method::Post,
        "/channels?endpoint=Local/alice@B&app=A&callerId=%22Alice%22%20%3C100%3E&channelId=c1&otherChannelId=c1b&timeout=-1",
        200,
    )
    .await;
    h.expect(Method::Post, "/channels/c1b/answer", 204).await;
    for (name, value) in [("_ONCE", "1"), ("__ALWAYS", "2"), ("MINE", "3")] {
        h.expect(
            Method::Post,
            &format!("/channels/c1/variable?variable={name}&value={value}"),
            204,
        )
        .await;
    }
    h.expect(
        Method::Post,
        "/channels/create?endpoint=Local/bob@B&app=A&channelId=d1&otherChannelId=d2",
        200,
    )
    .await;
    h.events();

    let out = h
        .call(Method::Post, "/channels/d1/dial?caller=nobody", "")
        .await;
    assert_eq!(out.status, 400);
    assert!(out.body.unwrap().contains("caller channel 'nobody'"));

    h.expect(Method::Post, "/channels/d1/dial?caller=c1", 204)
        .await;
    let events = h.events();
    let kinds: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["application"].as_str().unwrap(),
                e["type"].as_str().unwrap(),
                e["variable"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("A", "ChannelVarset", "ONCE"),
            ("A", "ChannelVarset", "__ALWAYS"),
            ("A", "ChannelConnectedLine", ""),
            ("A", "Dial", ""),
            ("B", "StasisStart", ""),
        ]
    );
    let connected = &events[2]["channel"];
    assert_eq!(connected["id"], "d1");
    assert_eq!(
        connected["connected"],
        json!({"name": "Alice", "number": "100"})
    );
    assert_eq!(events[3]["dialstring"], "bob@B");
    assert_eq!(events[3]["peer"]["id"], "d1");
    assert!(events[3].get("caller").is_none(), "{}", events[3]);
    let two = &events[4]["channel"];
    assert_eq!(two["id"], "d2");
    assert_eq!(two["caller"], json!({"name": "Alice", "number": "100"}));
    assert_eq!(two["connected"], json!({"name": "", "number": ""}));
    for (name, value) in [("ONCE", "1"), ("__ALWAYS", "2")] {
        for id in ["d1", "d2"] {
            let got = h
                .expect(
                    Method::Get,
                    &format!("/channels/{id}/variable?variable={name}"),
                    200,
                )
                .await;
            assert_eq!(got["value"], value, "{id} {name}");
        }
    }
    let out = h
        .call(Method::Get, "/channels/d1/variable?variable=MINE", "")
        .await;
    assert_eq!(out.status, 404);
}

/// An originate's callerId is `;1`'s caller id and connected line; `;2`
/// gets them crossed over, and the variables.
#[tokio::test]
async fn originate_hands_the_second_half_caller_id_and_variables() {
    let mut h = Harness::new(&["A", "B"]).await;
    let out = h
        .call(
            Method::Post,
            "/channels?endpoint=Local/x@B&app=A&callerId=200&channelId=o1&otherChannelId=o2",
            r#"{"variables": {"V": "w"}}"#,
        )
        .await;
    assert_eq!(out.status, 200, "{:?}", out.body);
    let one: Value = serde_json::from_str(&out.body.unwrap()).unwrap();
    assert_eq!(one["caller"]["number"], "200");
    assert_eq!(one["connected"]["number"], "200");
    let events = h.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "StasisStart");
    assert_eq!(events[0]["channel"]["caller"]["number"], "200");
    assert_eq!(events[0]["channel"]["connected"]["number"], "200");
    let got = h
        .expect(Method::Get, "/channels/o2/variable?variable=V", 200)
        .await;
    assert_eq!(got["value"], "w");
}

/// The RTPstat jitter of a leg is converted with the leg's RTP clock: G.722
/// keeps 8 kHz timestamps for its 16 kHz audio.
#[tokio::test]
async fn rtp_statistics_use_the_legs_clock_rate() {
    let h = Harness::new(&["A"]).await;
    h.fake.report_stats(crate::shard::RtpStats {
        rx_ssrc: Some(1),
        rx_jitter: 160,
        ..Default::default()
    });
    for (format, port, seconds) in [("g722", 4000, 0.02), ("slin16", 4002, 0.01)] {
        let c = h
            .expect(
                Method::Post,
                &format!(
                    "/channels/externalMedia?app=A&external_host=127.0.0.1:{port}&format={format}"
                ),
                200,
            )
            .await;
        let id = c["id"].as_str().unwrap();
        let stats = h
            .expect(Method::Get, &format!("/channels/{id}/rtp_statistics"), 200)
            .await;
        assert_eq!(stats["txjitter"], seconds, "{format}: {stats}");
        assert!(stats.get("rxjitter").is_none(), "{stats}");
    }
}

/// `originator`: the new pair takes the originator's format (Asterisk
/// requests the originator's native formats).
#[tokio::test]
async fn a_local_pair_takes_its_originators_format() {
    let h = Harness::new(&["A"]).await;
    h.expect(
        Method::Post,
        "/channels/externalMedia?app=A&external_host=127.0.0.1:4000&format=alaw&channelId=src",
        200,
    )
    .await;
    h.fake.take_calls();
    h.expect(
        Method::Post,
        "/channels/create?endpoint=Local/x@A&app=A&originator=src",
        200,
    )
    .await;
    match h.fake.take_calls()[..] {
        [Call::CreateLocalPair { format, .. }] => assert_eq!(format, Format::Alaw),
        ref other => panic!("unexpected calls: {other:?}"),
    }
    let out = h
        .call(
            Method::Post,
            "/channels/create?endpoint=Local/x@A&app=A&originator=ghost",
            "",
        )
        .await;
    assert_eq!(out.status, 400);
}

/// The watchdog ends the channels of a dead shard as hangups with cause 38,
/// each in a normal hangup's order; the bridge stays, set again (empty) on
/// a live shard, whose answer it shows once its last member has left; the
/// node reports itself unhealthy; the shard left goes on serving.
#[tokio::test]
async fn a_dead_shards_channels_are_hung_up_with_cause_38() {
    let mut h = Harness::new(&["A", "B"]).await;
    h.fake.set_shard_count(2);
    h.external_media("A", 4000, Some("c1")).await;
    h.external_media("A", 4002, Some("c2")).await;
    h.external_media("A", 4004, Some("c3")).await;
    h.expect(Method::Post, "/bridges?bridgeId=b1", 200).await;
    h.fake.report_technology(Technology::NativeRtp);
    h.expect(Method::Post, "/bridges/b1/addChannel?channel=c1,c2", 204)
        .await;
    h.expect(
        Method::Post,
        "/channels?endpoint=Local/bob@B&app=A&channelId=l1&otherChannelId=l2&timeout=0",
        200,
    )
    .await;
    h.expect(Method::Post, "/channels/l2/answer", 204).await;
    h.events();
    let calls = h.fake.take_calls();
    let bridge = calls
        .iter()
        .find_map(|c| match c {
            Call::SetBridge { bridge, .. } => Some(*bridge),
            _ => None,
        })
        .unwrap();
    let legs: Vec<LegId> = calls
        .iter()
        .flat_map(|c| match c {
            Call::CreateRtpLeg { leg, .. } => vec![*leg],
            Call::CreateLocalPair { a, b, .. } => vec![*a, *b],
            _ => vec![],
        })
        .collect();
    // The fake's empty bridge answer, distinct from the last confirmed one.
    h.fake.report_technology(Technology::SimpleBridge);

    h.fake.lose_shard(0, "a test killed it");
    // Before the watchdog looks, operations on the lost media get a 503.
    h.expect(Method::Post, "/channels/c3/mute", 503).await;
    assert_eq!(super::check_shards(&h.node).await, 5);
    let events = h.events();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
            (text(&e["type"]), text(&e["channel"]["id"]))
        })
        .collect();
    let mut want = Vec::new();
    for (id, bridged) in [
        ("c1", true),
        ("c2", true),
        ("c3", false),
        ("l1", false),
        ("l2", false),
    ] {
        want.push(("ChannelHangupRequest", id));
        if bridged {
            want.push(("ChannelLeftBridge", id));
        }
        want.push(("StasisEnd", id));
        want.push(("ChannelDestroyed", id));
    }
    assert_eq!(seen, want.into_iter().map(owned).collect::<Vec<_>>());
    for e in &events {
        match e["type"].as_str() {
            Some("ChannelHangupRequest") => {
                assert_eq!(e["cause"], 38, "{e}");
                assert!(e.get("soft").is_none(), "{e}");
            }
            Some("ChannelDestroyed") => {
                assert_eq!(
                    (&e["cause"], &e["cause_txt"]),
                    (&json!(38), &json!("Network out of order"))
                );
            }
            _ => {}
        }
    }
    let left: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["type"] == "ChannelLeftBridge")
        .map(|e| (&e["bridge"]["technology"], &e["bridge"]["channels"]))
        .collect();
    assert_eq!(
        left,
        [
            (&json!("native_rtp"), &json!(["c2"])),
            (&json!("simple_bridge"), &json!([])),
        ]
    );
    // The bridge was set again, empty, before any channel went; then the
    // legs were forgotten.
    let mut expected = vec![
        Call::SetMute {
            leg: legs[2],
            direction: crate::shard::Direction::Both,
            on: true,
        },
        Call::SetBridge {
            bridge,
            spec: BridgeSpec::default(),
        },
    ];
    expected.extend(legs.iter().map(|&leg| Call::DestroyLeg { leg }));
    assert_eq!(h.fake.take_calls(), expected);
    assert_eq!(super::check_shards(&h.node).await, 0, "reported once");

    let text = super::http::render_metrics(&h.node).await;
    for line in [
        "crossbar_shard_up{shard=\"0\"} 0",
        "crossbar_shard_up{shard=\"1\"} 1",
        "crossbar_healthy 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    let b1 = h.expect(Method::Get, "/bridges/b1", 200).await;
    assert_eq!(
        (&b1["technology"], &b1["channels"]),
        (&json!("simple_bridge"), &json!([]))
    );
    h.expect(Method::Get, "/channels", 200).await;
    h.external_media("A", 4006, Some("c4")).await;
    h.expect(Method::Post, "/bridges/b1/addChannel?channel=c4", 204)
        .await;
}

#[tokio::test]
async fn a_healthy_node_says_so_per_shard() {
    let h = Harness::new(&[]).await;
    h.fake.set_shard_count(2);
    let text = super::http::render_metrics(&h.node).await;
    for line in [
        "crossbar_shard_up{shard=\"0\"} 1",
        "crossbar_shard_up{shard=\"1\"} 1",
        "crossbar_healthy 1",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    assert_eq!(super::check_shards(&h.node).await, 0);
}

/// The same on real shard threads: a shard that panics is found by the
/// watchdog's check, its channels (and only they) end with cause 38, and
/// the node goes on with the other shard.
#[tokio::test]
async fn the_watchdog_ends_the_channels_of_a_panicked_shard() {
    // The driver `tests/run` asks for, as the integration tests do.
    let driver = std::env::vars()
        .filter(|(k, _)| k == "CROSSBAR_DATAPLANE_IO" || k == "CROSSBAR_DATAPLANE_URING_DISABLE");
    let mut config = Config::from_layers(None, driver).expect("driver variables are valid");
    config.rtp.port_min = 31_700;
    config.rtp.port_max = 31_719;
    config.dataplane.shards = 2;
    config.dataplane.pin = false;
    config.dataplane.shard_stall_ms = 1000;
    let plane = Arc::new(crate::shard::Dataplane::start(&config).expect("data plane starts"));
    let node = Node::with_ids(
        config,
        Box::new(plane.clone()),
        Timestamp(EPOCH * 1000),
        Box::new(SequentialIds::new(EPOCH)),
    );
    let (sink, mut events) = EventSink::new(10_000);
    node.lock()
        .await
        .attach(node.now(), &["A".to_string()], false, sink);
    let call = |method, target: &'static str| {
        let node = node.clone();
        async move {
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let op = route(method, path).unwrap();
            invoke(&node, op, parse_query(query), b"").await
        }
    };
    for target in [
        "/channels/externalMedia?app=A&external_host=127.0.0.1:4000&format=ulaw&channelId=c1",
        "/channels/externalMedia?app=A&external_host=127.0.0.1:4002&format=ulaw&channelId=c2",
        "/channels/externalMedia?app=A&external_host=127.0.0.1:4004&format=ulaw&channelId=c3",
        "/bridges?bridgeId=b1",
        "/bridges/b1/addChannel?channel=c1,c2",
    ] {
        let out = call(Method::Post, target).await;
        assert!(out.status < 300, "{target}: {out:?}");
    }
    let leg = |id: &str| {
        let node = node.clone();
        let id = id.to_string();
        async move { node.lock().await.reg.channel(&id).map(|c| c.leg).unwrap() }
    };
    let doomed = plane.shard_of_leg(leg("c1").await).unwrap();
    assert_eq!(plane.shard_of_leg(leg("c2").await), Some(doomed));
    assert_ne!(
        plane.shard_of_leg(leg("c3").await),
        Some(doomed),
        "c3 elsewhere"
    );
    while events.try_recv().is_ok() {}

    plane
        .inject_fault(doomed, crate::shard::Fault::Panic)
        .unwrap();
    let mut ended = 0;
    for _ in 0..500 {
        ended = super::check_shards(&node).await;
        if ended > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(ended, 2, "c1 and c2 lived on the dead shard");
    let mut seen = Vec::new();
    while let Ok(text) = events.try_recv() {
        let e: Value = serde_json::from_str(&text).unwrap();
        seen.push((
            e["type"].as_str().unwrap().to_string(),
            e["channel"]["id"].as_str().unwrap().to_string(),
            e["cause"].clone(),
        ));
    }
    let want: Vec<(String, String, Value)> = [
        ("ChannelHangupRequest", "c1", json!(38)),
        ("ChannelLeftBridge", "c1", Value::Null),
        ("StasisEnd", "c1", Value::Null),
        ("ChannelDestroyed", "c1", json!(38)),
        ("ChannelHangupRequest", "c2", json!(38)),
        ("ChannelLeftBridge", "c2", Value::Null),
        ("StasisEnd", "c2", Value::Null),
        ("ChannelDestroyed", "c2", json!(38)),
    ]
    .into_iter()
    .map(|(t, c, cause)| (t.to_string(), c.to_string(), cause))
    .collect();
    assert_eq!(seen, want);
    let text = super::http::render_metrics(&node).await;
    assert!(text.lines().any(|l| l == "crossbar_healthy 0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l == format!("crossbar_shard_up{{shard=\"{doomed}\"}} 0")),
        "{text}"
    );
    // The node goes on: c3 answers, the bridge (now on the live shard)
    // takes c3 and a new channel.
    assert_eq!(
        call(Method::Get, "/channels/c3/rtp_statistics")
            .await
            .status,
        200
    );
    assert_eq!(
        call(
            Method::Post,
            "/channels/externalMedia?app=A&external_host=127.0.0.1:4006&format=ulaw&channelId=c4"
        )
        .await
        .status,
        200
    );
    assert_eq!(
        call(Method::Post, "/bridges/b1/addChannel?channel=c3,c4")
            .await
            .status,
        204
    );
    assert_eq!(call(Method::Delete, "/bridges/b1").await.status, 204);
}

/// The events WebSockets' queues in bytes: a client over its own bound is
/// closed and released; when the total is reached the client holding the
/// most is closed, and what it held no longer counts.
#[tokio::test]
async fn event_queues_are_bounded_in_bytes_per_client_and_in_total() {
    let mut config = Config::defaults();
    config.ari.ws_queue_bytes = 8_000;
    config.ari.ws_queue_total_bytes = 12_000;
    let node = Node::with_ids(
        config,
        Box::new(FakePlane::new()),
        Timestamp(EPOCH * 1000),
        Box::new(SequentialIds::new(EPOCH)),
    );
    let budget = node.ws_budget.clone();
    let (slow, _slow_rx) = EventSink::with_budget(1_000, budget.clone());
    let (reader, mut reader_rx) = EventSink::with_budget(1_000, budget.clone());
    let (idle, _idle_rx) = EventSink::with_budget(1_000, budget.clone());
    {
        let mut ctl = node.lock().await;
        ctl.attach(node.now(), &["S".to_string()], true, slow.clone());
        ctl.attach(node.now(), &["R".to_string()], true, reader.clone());
        ctl.attach(node.now(), &["I".to_string()], false, idle.clone());
    }
    let post = |target: &'static str| {
        let node = node.clone();
        async move {
            let op = route(Method::Post, target).unwrap();
            invoke(&node, op, Vec::new(), b"").await
        }
    };
    // Bounded: each bridge queues ~300 bytes to each subscribeAll client.
    for _ in 0..200 {
        assert_eq!(post("/bridges").await.status, 200);
        while let Ok(text) = reader_rx.try_recv() {
            reader.taken(&text);
        }
        if slow.closed() {
            break;
        }
    }
    assert!(slow.closed(), "the client that does not read is closed");
    assert!(!reader.closed(), "the reading client stays");
    assert!(!idle.closed());
    assert_eq!(
        node.metrics
            .ws_slow_closed_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(budget.total(), reader.queued_bytes() + idle.queued_bytes());
    assert!(node.lock().await.reg.app_names().iter().all(|a| a != "S"));

    // The total: a second slow client alongside a first one that fills
    // beyond half of it; the biggest goes first.
    let (big, _big_rx) = EventSink::with_budget(1_000, budget.clone());
    let (small, _small_rx) = EventSink::with_budget(1_000, budget.clone());
    node.lock()
        .await
        .attach(node.now(), &["B".to_string()], true, big.clone());
    for _ in 0..5 {
        assert_eq!(post("/bridges").await.status, 200);
    }
    while let Ok(text) = reader_rx.try_recv() {
        reader.taken(&text);
    }
    let big_before = big.queued_bytes();
    assert!(big_before > 1_000, "{big_before}");
    node.lock()
        .await
        .attach(node.now(), &["M".to_string()], true, small.clone());
    let mut big_last = 0;
    for _ in 0..200 {
        big_last = big.queued_bytes();
        assert_eq!(post("/bridges").await.status, 200);
        while let Ok(text) = reader_rx.try_recv() {
            reader.taken(&text);
        }
        if big.closed() {
            break;
        }
    }
    assert!(big.closed(), "the biggest client is closed at the total");
    // Closed for the total, well below its own bound.
    assert!(big_last < 7_000, "{big_last}");
    assert!(!small.closed() && !reader.closed());
    assert!(budget.total() <= 12_000);
    assert_eq!(
        budget.total(),
        reader.queued_bytes() + idle.queued_bytes() + small.queued_bytes()
    );
}

#[tokio::test]
async fn long_lists_come_whole_and_in_creation_order_across_pages() {
    let h = Harness::new(&["app"]).await;
    let n = crate::ari::ops::LIST_PAGE * 2 + 1;
    let mut ids = Vec::new();
    for _ in 0..n {
        let b = h.expect(Method::Post, "/bridges?type=mixing", 200).await;
        ids.push(b["id"].as_str().unwrap().to_string());
    }
    // One destroyed in the middle is not listed.
    let gone = ids.remove(n / 2);
    h.expect(Method::Delete, &format!("/bridges/{gone}"), 204)
        .await;
    let listed = h.expect(Method::Get, "/bridges", 200).await;
    let listed: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    // Exactly one page, and an empty table.
    for id in ids.drain(crate::ari::ops::LIST_PAGE..) {
        h.expect(Method::Delete, &format!("/bridges/{id}"), 204)
            .await;
    }
    let listed = h.expect(Method::Get, "/bridges", 200).await;
    assert_eq!(listed.as_array().unwrap().len(), ids.len());
    for id in ids.drain(..) {
        h.expect(Method::Delete, &format!("/bridges/{id}"), 204)
            .await;
    }
    assert_eq!(h.expect(Method::Get, "/bridges", 200).await, json!([]));
    assert_eq!(h.expect(Method::Get, "/channels", 200).await, json!([]));
}

/// A recording whose tap the data plane refuses: 201 `queued`, then
/// `RecordingFailed` with a cause, and the file the writer opened is gone.
#[tokio::test]
async fn a_refused_tap_fails_the_recording() {
    let dir = std::env::temp_dir().join(format!("crossbar-host-rec-{}", std::process::id()));
    let mut config = Config::defaults();
    config.recordings.path = dir.clone();
    let fake = FakePlane::new();
    let node = Node::with_ids(
        config,
        Box::new(fake.clone()),
        Timestamp(EPOCH * 1000),
        Box::new(SequentialIds::new(EPOCH)),
    );
    let (sink, events) = EventSink::new(100);
    node.lock()
        .await
        .attach(node.now(), &["A".to_string()], false, sink);
    let mut h = Harness { node, fake, events };
    let ch = h.external_media("A", 4000, None).await;
    let id = ch["id"].as_str().unwrap().to_string();
    h.events();
    h.fake.fail_next(Op::Media, DataplaneError::Unknown);
    let reply = h
        .expect(
            Method::Post,
            &format!("/channels/{id}/record?name=r&format=wav"),
            201,
        )
        .await;
    assert_eq!(reply["state"], "queued");
    let got = h.events();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["type"], "RecordingFailed");
    assert_eq!(got[0]["recording"]["state"], "failed");
    assert_eq!(
        got[0]["recording"]["cause"],
        "The target's media could not be recorded"
    );
    assert!(matches!(
        h.fake.calls().last(),
        Some(Call::Media { op, .. }) if op.starts_with("StartTap")
    ));
    h.expect(Method::Get, "/recordings/live/r", 404).await;
    // The writer removes the file it opened (bounded wait).
    let file = dir.join("r.wav");
    for _ in 0..100 {
        if !file.exists() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!file.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
