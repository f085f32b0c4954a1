//! The `crossbar` binary: loads the configuration, starts the data-plane
//! shards and serves ARI until SIGINT/SIGTERM.

use std::path::Path;

use crossbar::config::Config;
use crossbar::host::{serve, Node};
use crossbar::shard::Dataplane;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut config_path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(p),
                None => fail("--config needs a file name"),
            },
            "--help" | "-h" => {
                println!(
                    "usage: crossbar [--config FILE]\n\n\
                     Runs with the embedded defaults unless FILE overrides them;\n\
                     CROSSBAR_<SECTION>_<KEY> environment variables override both.\n\
                     --print-defaults shows the embedded configuration."
                );
                return;
            }
            "--print-defaults" => {
                print!("{}", crossbar::config::DEFAULT_TOML);
                return;
            }
            other => fail(&format!("unknown argument '{other}' (try --help)")),
        }
    }
    let config = match Config::load(config_path.as_deref().map(Path::new)) {
        Ok(c) => c,
        Err(e) => fail(&format!("bad configuration: {e}")),
    };
    // The TLS files are part of the configuration: refused like a bad key.
    let tls = match crossbar::host::tls::acceptor(&config.ari) {
        Ok(t) => t,
        Err(e) => fail(&format!("bad configuration: {e}")),
    };
    let level = match config.log.level.as_str() {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    match crossbar::host::conn::raise_nofile_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!("open-file limit raised from {before} to {after}")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("open-file limit not raised: {e}"),
    }
    if let Some(limit) = crossbar::host::conn::nofile_limit() {
        if (config.ari.max_connections as u64) + 256 > limit {
            tracing::warn!(
                "open-file limit {limit} leaves little room beyond ari.max_connections {}: connections may be refused for want of descriptors",
                config.ari.max_connections
            );
        }
    }
    if config.uses_default_credentials() {
        tracing::warn!(
            "ARI uses the development credentials asterisk/asterisk: set ari.username and ari.password (or CROSSBAR_ARI_USERNAME / CROSSBAR_ARI_PASSWORD) for anything but local development"
        );
    }
    // Recordings' directory: created if missing; a node that cannot create
    // it still runs (its recordings fail with the reason).
    if let Err(e) = std::fs::create_dir_all(&config.recordings.path) {
        tracing::warn!(
            "cannot create recordings.path {}: {e}",
            config.recordings.path.display()
        );
    }
    let dataplane = match Dataplane::start(&config) {
        Ok(d) => d,
        Err(e) => fail(&format!("cannot start the data plane: {e}")),
    };
    let formats: Vec<&str> = crossbar::media::Format::available()
        .map(crossbar::media::Format::name)
        .collect();
    if crossbar::media::Format::Opus.is_available() {
        tracing::info!(formats = %formats.join(","), "media formats");
    } else {
        tracing::info!(
            formats = %formats.join(","),
            "media formats (no Opus: this build lacks the 'opus' feature; build with --features opus, which needs cmake)"
        );
    }
    tracing::info!(
        driver = dataplane.driver().kind.name(),
        reason = %dataplane.driver().reason,
        "data plane I/O driver"
    );
    tracing::info!(
        shards = dataplane.shard_count(),
        rtp = %format!("{}:{}-{}", config.rtp.bind_ip, config.rtp.port_min, config.rtp.port_max),
        "data plane started"
    );
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => fail(&format!("cannot start the control runtime: {e}")),
    };
    runtime.block_on(async move {
        let bind = config.ari.bind;
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(l) => l,
            Err(e) => fail(&format!("cannot listen on {bind}: {e}")),
        };
        let (http, ws) = if tls.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        tracing::info!("ARI listening on {http}://{bind}/ari (events: {ws}://{bind}/ari/events)");
        let events = dataplane.take_events();
        let node = Node::new(config, Box::new(dataplane));
        match crossbar::host::sip::start(&node).await {
            Ok(Some(addr)) => tracing::info!("SIP listening on {addr} (UDP and TCP)"),
            Ok(None) => tracing::info!("SIP is off (sip.bind = \"off\")"),
            Err(e) => fail(&e),
        }
        tokio::spawn(crossbar::host::watch_shards(std::sync::Arc::downgrade(
            &node,
        )));
        if let Some(events) = events {
            tokio::spawn(crossbar::host::watch_media(
                std::sync::Arc::downgrade(&node),
                events,
            ));
        }
        tokio::select! {
            r = serve(node, listener, tls) => {
                if let Err(e) = r {
                    fail(&format!("control socket failed: {e}"));
                }
            }
            _ = shutdown_signal() => tracing::info!("shutting down"),
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn fail(message: &str) -> ! {
    eprintln!("crossbar: {message}");
    std::process::exit(2);
}
