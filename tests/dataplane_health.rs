//! Shard health and placement through the public `Dataplane` API, on real
//! shard threads and real UDP sockets: a stalled shard makes a command fail
//! with `Timeout` while the other shard keeps serving; a shard that stops
//! turning its loop is declared dead by its heartbeat; a panicked shard is
//! reported dead and its legs' commands fail at once with `ShardGone`;
//! placement by load and the shared RTP port pool.
//!
//! Faults are injected with the test hook `Dataplane::inject_fault`. Every
//! wait is bounded by a count of polls; nothing asserts on elapsed time.

#[path = "common_driver/mod.rs"]
mod common_driver;

use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crossbar::media::Format;
use crossbar::shard::{
    BridgeKey, BridgeSpec, Dataplane, DataplaneError, Direction, Fault, LegId, LegSpec, MemberSpec,
    ShardDown,
};

/// `dataplane.shard_stall_ms` of these tests: short, yet far above what a
/// healthy shard's idle heartbeat (a quarter of it) needs on a busy machine.
const STALL_MS: u32 = 1000;
/// A stall longer than any wait here (it ends early when the shard is told
/// to stop, which a dead shard is).
const LONG: Duration = Duration::from_secs(60);

/// Two unpinned shards with `pairs` RTP port pairs from `port_min` (even).
fn dataplane(port_min: u16, pairs: u16) -> Dataplane {
    let mut config = common_driver::config();
    config.rtp.port_min = port_min;
    config.rtp.port_max = port_min + 2 * pairs - 1;
    config.dataplane.shards = 2;
    config.dataplane.pin = false;
    config.dataplane.shard_stall_ms = STALL_MS;
    Dataplane::start(&config).expect("data plane starts")
}

fn spec() -> LegSpec {
    LegSpec {
        remote: "127.0.0.1:9".parse().unwrap(),
        format: Format::Ulaw,
        symmetric: false,
        dtmf_pt: None,
    }
}

async fn leg(dp: &Dataplane, id: u64) -> Result<SocketAddr, DataplaneError> {
    dp.create_rtp_leg(LegId(id), spec()).await
}

fn bridge(legs: &[u64]) -> BridgeSpec {
    BridgeSpec {
        members: legs
            .iter()
            .map(|&l| MemberSpec {
                leg: LegId(l),
                mute: false,
                announcer: false,
                absorb_dtmf: false,
            })
            .collect(),
        ..BridgeSpec::default()
    }
}

/// Runs `check_shards` every 20 ms, at most 1000 times, until it reports a
/// death; the reports.
async fn wait_for_death(dp: &Dataplane) -> Vec<ShardDown> {
    for _ in 0..1000 {
        let downs = dp.check_shards();
        if !downs.is_empty() {
            return downs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no shard was declared dead");
}

/// A command to a shard that does not answer fails with `Timeout` (bounded
/// by the deadline, not forever), the shard is given up, and the other
/// shard goes on serving; the dead shard's legs then fail at once.
#[tokio::test]
async fn stalled_shard_times_out_and_the_other_keeps_serving() {
    let dp = dataplane(31_000, 8);
    leg(&dp, 1).await.unwrap();
    leg(&dp, 2).await.unwrap();
    let (stuck, alive) = (
        dp.shard_of_leg(LegId(1)).unwrap(),
        dp.shard_of_leg(LegId(2)).unwrap(),
    );
    assert_ne!(stuck, alive, "legs are spread over both shards");

    dp.inject_fault(stuck, Fault::Stall(LONG)).unwrap();
    // The outer bound only keeps a broken deadline from hanging the test.
    let muted = tokio::time::timeout(
        Duration::from_secs(30),
        dp.set_mute(LegId(1), Direction::Both, true),
    )
    .await
    .expect("the command's own deadline ends the wait");
    assert_eq!(muted, Err(DataplaneError::Timeout));

    let mut up = vec![true; 2];
    up[stuck] = false;
    assert_eq!(dp.shards_up(), up, "the shard that timed out is given up");
    dp.set_mute(LegId(2), Direction::Both, true).await.unwrap();
    dp.rtp_stats(LegId(2)).await.unwrap();

    let downs = dp.check_shards();
    assert_eq!(downs.len(), 1, "{downs:?}");
    assert_eq!(downs[0].shard, stuck);
    assert_eq!(downs[0].legs, [LegId(1)]);
    assert!(
        downs[0].reason.contains("not answered"),
        "{}",
        downs[0].reason
    );
    assert!(dp.check_shards().is_empty(), "a death is reported once");

    // Later commands for its legs fail at once instead of waiting again.
    assert_eq!(
        dp.set_hold(LegId(1), true).await,
        Err(DataplaneError::ShardGone)
    );
    assert_eq!(
        dp.rtp_stats(LegId(1)).await.err(),
        Some(DataplaneError::ShardGone)
    );
    // New legs and bridges go to the shard alive.
    leg(&dp, 3).await.unwrap();
    assert_eq!(dp.shard_of_leg(LegId(3)), Some(alive));
    dp.set_bridge(BridgeKey(9), bridge(&[2, 3])).await.unwrap();
    // Destroying a lost leg only forgets it.
    dp.destroy_leg(LegId(1)).await.unwrap();
    assert_eq!(dp.shard_of_leg(LegId(1)), None);
    assert_eq!(dp.destroy_leg(LegId(1)).await, Err(DataplaneError::Unknown));
}

/// A shard whose loop stops turning, with no command waiting on it, is
/// found by its heartbeat; the shard that idles is not.
#[tokio::test]
async fn shard_whose_loop_stops_is_declared_dead_by_its_heartbeat() {
    let dp = dataplane(31_100, 8);
    leg(&dp, 1).await.unwrap();
    leg(&dp, 2).await.unwrap();
    let stuck = dp.shard_of_leg(LegId(2)).unwrap();
    dp.inject_fault(stuck, Fault::Stall(LONG)).unwrap();

    let downs = wait_for_death(&dp).await;
    assert_eq!(downs.len(), 1, "only the stalled shard: {downs:?}");
    assert_eq!(downs[0].shard, stuck);
    assert_eq!(downs[0].legs, [LegId(2)]);
    assert!(
        downs[0].reason.contains("has not turned"),
        "{}",
        downs[0].reason
    );
    assert!(dp.shards_up()[1 - stuck]);
    dp.rtp_stats(LegId(1)).await.unwrap();
    assert_eq!(
        dp.rtp_stats(LegId(2)).await.err(),
        Some(DataplaneError::ShardGone)
    );
}

/// A shard whose thread panics is reported dead with the panic's message
/// and what it held; its legs' commands fail fast, its bridge is placed anew
/// when set again, and its ports return to the pool (its thread is over).
#[tokio::test]
async fn panicked_shard_is_reported_dead_and_its_commands_fail_fast() {
    let dp = dataplane(31_200, 3);
    let first = leg(&dp, 1).await.unwrap();
    leg(&dp, 2).await.unwrap();
    let doomed = dp.shard_of_leg(LegId(1)).unwrap();
    let alive = 1 - doomed;
    dp.set_bridge(BridgeKey(5), bridge(&[1])).await.unwrap();

    dp.inject_fault(doomed, Fault::Panic).unwrap();
    let downs = wait_for_death(&dp).await;
    assert_eq!(downs.len(), 1, "{downs:?}");
    let down = &downs[0];
    assert_eq!(down.shard, doomed);
    assert_eq!(
        (&down.legs[..], &down.bridges[..]),
        (&[LegId(1)][..], &[BridgeKey(5)][..])
    );
    assert!(
        down.reason.contains("panicked") && down.reason.contains("injected"),
        "{}",
        down.reason
    );
    let mut up = vec![true; 2];
    up[doomed] = false;
    assert_eq!(dp.shards_up(), up);

    assert_eq!(
        dp.set_mute(LegId(1), Direction::In, true).await,
        Err(DataplaneError::ShardGone)
    );
    assert_eq!(
        dp.set_bridge(BridgeKey(6), bridge(&[1, 2])).await,
        Err(DataplaneError::ShardGone),
        "a lost leg cannot join a bridge"
    );
    dp.rtp_stats(LegId(2)).await.unwrap();
    // The lost bridge, set again with a live member, lives on the live shard.
    dp.set_bridge(BridgeKey(5), bridge(&[2])).await.unwrap();
    dp.destroy_bridge(BridgeKey(5)).await.unwrap();

    // Three pairs: one on each shard, one free; the lost leg's pair comes
    // back once the leg is forgotten (its thread has exited).
    leg(&dp, 3).await.unwrap();
    assert_eq!(leg(&dp, 4).await, Err(DataplaneError::NoPorts));
    dp.destroy_leg(LegId(1)).await.unwrap();
    let again = leg(&dp, 4).await.unwrap();
    assert_eq!(
        again.port(),
        first.port(),
        "the dead shard's pair is reused"
    );
    assert_eq!(dp.shard_of_leg(LegId(4)), Some(alive));
}

/// A stalled shard told to stop ends its stall and exits; its legs' pairs
/// then come back to the pool (held until then: see the unit tests of
/// `shard`).
#[tokio::test]
async fn ports_of_a_stalled_shard_come_back_after_it_exits() {
    let dp = dataplane(31_300, 2);
    leg(&dp, 1).await.unwrap();
    leg(&dp, 2).await.unwrap();
    let stuck = dp.shard_of_leg(LegId(1)).unwrap();
    dp.inject_fault(stuck, Fault::Stall(LONG)).unwrap();
    let downs = wait_for_death(&dp).await;
    assert_eq!(downs[0].legs, [LegId(1)]);
    dp.destroy_leg(LegId(1)).await.unwrap();
    // Told to stop, the stalled thread ends its stall and exits; each check
    // returns the pairs of shards whose thread is over.
    let mut created = None;
    for _ in 0..500 {
        dp.check_shards();
        match leg(&dp, 3).await {
            Ok(addr) => {
                created = Some(addr);
                break;
            }
            Err(DataplaneError::NoPorts) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(created.is_some(), "the pair never came back");
    assert_ne!(dp.shard_of_leg(LegId(3)), Some(stuck));
}

/// One pool for all shards: 8 pairs give 8 legs (not 4 per shard's slice),
/// spread 4 and 4; a destroyed leg's pair is reused and the shard it left
/// gets the next leg.
#[tokio::test]
async fn legs_share_one_port_pool_and_are_balanced_by_load() {
    let dp = dataplane(31_400, 8);
    let mut ports = HashSet::new();
    for id in 1..=8 {
        let local = leg(&dp, id).await.unwrap();
        assert_eq!(local.port() % 2, 0);
        assert!((31_400..31_416).contains(&local.port()), "{local}");
        ports.insert(local.port());
    }
    assert_eq!(ports.len(), 8);
    let on = |shard: usize| {
        (1..=8)
            .filter(|&id| dp.shard_of_leg(LegId(id)) == Some(shard))
            .count()
    };
    assert_eq!((on(0), on(1)), (4, 4));
    assert_eq!(leg(&dp, 9).await, Err(DataplaneError::NoPorts));

    let freed_shard = dp.shard_of_leg(LegId(3)).unwrap();
    let freed = dp.rtp_stats(LegId(3)).await.unwrap().local.unwrap();
    dp.destroy_leg(LegId(3)).await.unwrap();
    let reused = leg(&dp, 9).await.unwrap();
    assert_eq!(reused.port(), freed.port());
    assert_eq!(dp.shard_of_leg(LegId(9)), Some(freed_shard), "least loaded");
    // A Local pair counts two legs on its shard.
    dp.create_local_pair(LegId(20), LegId(21), Format::Ulaw)
        .await
        .unwrap();
    let pair_shard = dp.shard_of_leg(LegId(20)).unwrap();
    assert_eq!(dp.shard_of_leg(LegId(21)), Some(pair_shard));
    assert_eq!(
        dp.create_rtp_leg(LegId(20), spec()).await.err(),
        Some(DataplaneError::Io("leg id already in use".into()))
    );
}

/// A pair held by another socket is skipped (and tried again later): the
/// shard answers "in use" and the pool offers the next pair.
#[tokio::test]
async fn a_pair_in_use_elsewhere_is_skipped() {
    let dp = dataplane(31_500, 4);
    let blocker = UdpSocket::bind("127.0.0.1:31501").expect("the RTCP port is free");
    let first = leg(&dp, 1).await.unwrap();
    assert_eq!(first.port(), 31_502, "31500/31501 is taken");
    drop(blocker);
    let mut ports: Vec<u16> = vec![first.port()];
    for id in 2..=4 {
        ports.push(leg(&dp, id).await.unwrap().port());
    }
    ports.sort();
    assert_eq!(ports, [31_500, 31_502, 31_504, 31_506]);
}

/// A destroyed leg's sockets are closed by the time the shard answers: its
/// pair can be bound again at once (the only pair of the pool here).
#[tokio::test]
async fn a_destroyed_legs_pair_is_free_at_once() {
    let dp = dataplane(31_600, 1);
    for id in 1..=30 {
        let local = leg(&dp, id)
            .await
            .unwrap_or_else(|e| panic!("leg {id}: {e}"));
        assert_eq!(local.port(), 31_600);
        dp.destroy_leg(LegId(id)).await.unwrap();
    }
}
