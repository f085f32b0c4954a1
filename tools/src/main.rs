//! `crossbar-load`: the load generator that ships with crossbar. It drives a
//! node (or any ARI server, Asterisk included, which is how the two are
//! compared) and reports what each phase cost: request latency, events on the
//! socket, and the server's CPU time.
//!
//! # Scenarios
//!
//! `control` — the ARI control plane:
//!
//! ```text
//! crossbar-load control [--url http://127.0.0.1:8088] [--user asterisk] [--password asterisk]
//!                       [--app crossbar-load] [--legs 400] [--pid PID] [--json]
//!                       [--timeout-ms 5000] [--settle-ms 250] [--settle-max-ms 30000]
//!                       [--hold-ms MS] [--rtp-host 127.0.0.1] [--allow-remote]
//! ```
//!
//! It opens the events WebSocket for `--app`, then runs three phases, one
//! request at a time:
//! 1. `create`: N `POST /ari/channels/externalMedia` legs (µ-law, pointed at a
//!    UDP socket the tool binds on `--rtp-host`, so nothing goes into the void);
//! 2. `join`: one `POST /ari/bridges?type=mixing`, then N `addChannel`;
//!    with `--hold-ms MS`, then a `hold` phase without requests: the server's
//!    CPU while the full bridge just sits there for MS;
//! 3. `hangup`: N `DELETE /ari/channels/{id}`;
//!
//! and finally destroys the bridge (`cleanup`). For each phase it reports
//! requests/s, p50/p99/max latency (an hdrhistogram in nanoseconds), wall time
//! of the requests, the events received on the socket from the phase's start
//! until the socket has been quiet for `--settle-ms` (bounded by
//! `--settle-max-ms`), events per leg, and with `--pid` the server's CPU time
//! (utime + stime from `/proc/PID/stat`, all threads) over the same window.
//! `--json` prints one JSON line instead of the table.
//!
//! Safety: the URL must name a loopback host (127.0.0.0/8, `localhost`, `::1`)
//! unless `--allow-remote` is given; only `http://` is supported. Every loop is
//! bounded, every request has a timeout, and on any error the legs and bridge
//! created so far are torn down before the tool exits with status 1 (2 for a
//! usage error).

//!
//! Media scenarios — `relay`, `reflector`, `transcode`, `mix`, `churn` — set
//! up externalMedia legs and bridges over ARI, send paced 20 ms RTP from one
//! loopback socket per leg, receive everything that comes back, and report
//! over a measured window after `--warmup`: packets in/out, loss,
//! reordering, latency through the node (hdrhistogram p50/p99/p99.9/max),
//! the server's CPU (`--pid`, or the process listening on the ARI port; per
//! thread with `--per-thread`) per forwarded packet or per
//! participant-second, and the tool's own CPU. `relay`, `transcode` and
//! `mix` also run the same traffic through an in-process classic reflector
//! (`reflector.rs`) and print the ratio to it; `--compare URL1 URL2` runs two
//! servers one after the other. `relay --rtpengine HOST:PORT` runs the same
//! calls through rtpengine, set up over its ng protocol (`ng.rs`); with
//! `--url URL` as well (or `--compare URL ng://HOST:PORT`) it runs the ARI
//! server first, then rtpengine, then the reflector, and prints both ratios.
//! `sip` — SIP call setup (`sip.rs`): the tool calls the node's `sip.bind`
//! with crossbar's own SIP agent and answers the calls as the ARI app;
//! reports setup rate, setup latency and server CPU per call with media.
//! Module by module: `traffic` (senders,
//! receivers, the window), `net` (sockets, recvmmsg/sendmmsg, epoll),
//! `audio` (tones, the marker detector), `server` (ARI session, teardown,
//! CPU probe), `report`, `opts`, `signal` (Ctrl-C), and one module per
//! scenario. Every run is bounded (`--duration` ≤ 600 s, counts capped),
//! loopback-only unless `--allow-remote`, and tears down what it created on
//! success, error and Ctrl-C.

mod ari;
mod audio;
mod churn;
mod control;
mod events;
mod lists;
mod mix;
mod net;
mod ng;
mod opts;
mod procstat;
mod reflector;
mod relay;
mod report;
mod server;
mod signal;
mod sip;
mod soak;
mod traffic;
mod transcode;

use std::process::ExitCode;

const USAGE: &str = "usage: crossbar-load <scenario> [options]

scenarios:
  control    externalMedia create, bridge join and hang-up over ARI, one request at a time
  relay      --calls N: N two-party PCMU calls (native_rtp); with the reflector baseline;
             --rtpengine HOST:PORT: the same calls through rtpengine (ng protocol)
  reflector  --calls N: the same traffic through the tool's in-process classic reflector
  transcode  --calls N --pair pcmu-pcma|pcmu-opus: two-party calls across formats (simple_bridge)
  mix        --participants N [--bridges M] [--talkers F]: softmix conferences
  churn      --rate R --duration D: calls set up, carrying media, torn down at R per second
  sip        --sip IP:PORT --calls N --rate R --hold D: SIP calls into the node, answered by the
             tool as the ARI app; setup rate, setup latency, server CPU per call with media
  lists      --bridges N [--lists K]: ping latency while GET /ari/bridges lists N bridges
             (--url, --user, --password, --json)
  soak       --duration D: ~1,000 legs with churn, relays, mixes and playbacks, then checks that
             no leg, bridge, port pair, descriptor or thread leaked and RSS stayed bounded

control options:
  --url URL          ARI server (default http://127.0.0.1:8088); loopback only unless --allow-remote
  --user NAME        ARI user (default asterisk)
  --password PASS    ARI password (default asterisk)
  --app NAME         Stasis application to run the legs in (default crossbar-load)
  --legs N           number of externalMedia legs (default 400, at most 100000)
  --pid PID          server process: report its CPU time (utime+stime) per phase
  --json             print one JSON line instead of the table
  --timeout-ms MS    per-request timeout (default 5000)
  --settle-ms MS     a phase ends when the event socket has been quiet this long (default 250)
  --settle-max-ms MS but waits at most this long for events after its last request (default 30000)
  --hold-ms MS       after the join phase, a 'hold' phase: no requests, the full bridge sits for MS
  --rtp-host IP      address of the UDP socket the legs point at (default 127.0.0.1)
  --allow-remote     allow a server outside 127.0.0.0/8 / localhost

media scenario options (relay, reflector, transcode, mix, churn):
  --url URL | --compare URL1 URL2   the server, or two servers run one after the other
  --rtpengine HOST:PORT   relay: drive rtpengine over ng (UDP) instead of ARI; with --url,
                     the URL first then rtpengine (= --compare URL ng://HOST:PORT);
                     loopback only unless --allow-remote; --pid applies to the first server,
                     rtpengine's is otherwise the process bound to the ng port
  --user, --password, --app, --timeout-ms, --allow-remote   as for control
  --duration D       measured window (default 10s, at most 600s); churn: how long calls are started
  --warmup D         traffic before the window (default 2s)
  --pid PID          server process (default: the process listening on the URL's port)
  --per-thread       server CPU per thread (from /proc/PID/task/*/stat)
  --no-baseline      relay, transcode, mix: skip the in-process reflector run
  --senders N, --receivers N   tool threads (default 2 each)
  --calls N          relay, reflector, transcode (default 10)
  --pair P           transcode: pcmu-pcma (default) or pcmu-opus (needs the `opus` feature)
  --participants N --bridges M --talkers F   mix (defaults 10, 1, 1.0)
  --bridge-media play,record   mix: after plain softmix, the same with a tone played into
                     each bridge and/or each bridge recorded (wav); reports vs_plain
  --rate R --call-time D   churn: calls per second (default 5), media time per call (default 500ms)
  --json             one JSON line per run instead of the tables

sip options:
  --url, --user, --password, --app, --timeout-ms, --pid, --json, --allow-remote   as for control
                     (the app is also the INVITE's user: sip:APP@IP:PORT)
  --sip IP:PORT      the node's sip.bind, UDP (default 127.0.0.1:5060)
  --calls N          calls in all (default 100, at most 100000)
  --rate R           new calls per second (default 20, at most 5000)
  --hold D           how long each answered call lasts before the tool's BYE (default 2s)
  --no-media         no RTP (default: 20 ms PCMU from the caller to crossbar for the whole hold)
  --answer-timeout D an unanswered call is CANCELled after D (default 10s)
  --answerers N      threads answering StasisStart over ARI (default 2)

soak options (see tools/src/soak.rs; exit 1 when a check fails):
  --url, --user, --password, --timeout-ms, --pid, --json, --allow-remote   as for control
  --app NAME         default crossbar-soak (its events socket has subscribeAll=true)
  --duration D       default 600s, at most 24h
  --relays N         two-party native calls kept up, one rebuilt every --rotate-ms (default 300)
  --mixes M --mix-size K   softmix bridges kept up, one in four members talking (default 10, 20)
  --churn-rate R --churn-hold D   short calls started per second and their length (20, 5s)
  --play-rate P      playbacks per second: channel tones stopped, bridge tones finished (5)
  --rotate-ms MS     default 1000
  --settle D         how long the node may take to quiesce after the teardown (default 30s)
  --rss-growth-mib N RSS after the teardown at most N MiB above the start (default 64)
  --rss-late-growth-mib N   runs of 6 min or more: RSS growth from half time to the end of the
                     run at most N MiB (default 8)
  --fd-slack N       descriptors after the teardown at most N above the start (default 8)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("lists") => {
            let options = match lists::Options::parse(&args[1..]) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            match lists::run(&options) {
                Ok(report) => {
                    print!("{report}");
                    if options.json {
                        println!();
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("crossbar-load: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("control") => {
            let options = match control::Options::parse(&args[1..]) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            signal::install();
            match control::run(&options) {
                Ok(report) => {
                    if options.json {
                        println!("{}", report.to_json());
                    } else {
                        print!("{}", report.to_table());
                    }
                    ExitCode::SUCCESS
                }
                Err(_) if signal::interrupted() => finish(),
                Err(e) => {
                    eprintln!("crossbar-load: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("sip") => {
            let options = match sip::Options::parse(&args[1..]) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            signal::install();
            net::raise_fd_limit();
            match sip::run(&options) {
                Ok(report) => {
                    if options.json {
                        println!("{}", report.to_json());
                    } else {
                        print!("{}", report.to_table());
                    }
                    ExitCode::SUCCESS
                }
                Err(_) if signal::interrupted() => finish(),
                Err(e) => {
                    eprintln!("crossbar-load: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some("soak") => {
            let options = match soak::Options::parse(&args[1..]) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            signal::install();
            net::raise_fd_limit();
            match soak::run(&options) {
                Ok(report) => {
                    if options.json {
                        println!("{}", report.to_json());
                    } else {
                        print!("{}", report.to_table());
                    }
                    if report.passed() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("crossbar-load: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Some(name @ ("relay" | "reflector" | "transcode" | "mix" | "churn")) => {
            let options = match opts::MediaOptions::parse(&args[1..]) {
                Ok(o) => o,
                Err(e) => return usage_error(&e),
            };
            if name != "relay"
                && options
                    .urls()
                    .iter()
                    .any(|u| u.starts_with(opts::NG_SCHEME))
            {
                return usage_error(&format!(
                    "{name}: rtpengine (--rtpengine, ng://) is supported by relay only"
                ));
            }
            media(name, &options)
        }
        Some("--help" | "-h" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage_error(&format!("unknown scenario '{other}'")),
        None => usage_error("no scenario given"),
    }
}

/// Runs a media scenario and prints its runs.
fn media(name: &str, o: &opts::MediaOptions) -> ExitCode {
    signal::install();
    net::raise_fd_limit();
    let progress = !o.json && net::stderr_is_tty();
    if name == "churn" {
        return match churn::run(o, progress) {
            Ok(runs) => {
                for r in &runs {
                    if o.json {
                        println!("{}", r.to_json());
                    } else {
                        println!("{}", r.to_table());
                    }
                }
                finish()
            }
            Err(e) => {
                eprintln!("crossbar-load: {e}");
                ExitCode::from(1)
            }
        };
    }
    let result = match name {
        "relay" => relay::run(o, "relay", crossbar::media::Format::Ulaw, progress),
        "reflector" => reflector::run_baseline(o, o.calls, progress).map(|r| vec![r]),
        "transcode" => transcode::run(o, progress),
        "mix" => mix::run(o, progress),
        _ => Err(format!("scenario '{name}' is not implemented yet")),
    };
    match result {
        Ok(runs) => {
            for r in &runs {
                if o.json {
                    println!("{}", r.to_json());
                } else {
                    println!("{}", r.to_table());
                }
            }
            finish()
        }
        Err(e) => {
            eprintln!("crossbar-load: {e}");
            ExitCode::from(1)
        }
    }
}

/// Exit status of a run: 130 after Ctrl-C.
fn finish() -> ExitCode {
    if signal::interrupted() {
        eprintln!("crossbar-load: interrupted; everything created was torn down");
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("crossbar-load: {message}\n\n{USAGE}");
    ExitCode::from(2)
}
