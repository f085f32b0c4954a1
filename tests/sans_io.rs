//! The sans-IO cores stay sans-IO: no module of the media core, the control
//! registry, or the RTP, jitter, codec, mix and SIP modules opens a socket, reads
//! a clock, touches io_uring or epoll, spawns a thread or reaches the
//! system through libc, outside its unit tests. (README, Architecture:
//! invariants.)

use std::path::{Path, PathBuf};

/// The module trees that must do no I/O.
const CORES: [&str; 8] = [
    "src/media",
    "src/control",
    "src/rtp",
    "src/codec",
    "src/mix",
    "src/jitter.rs",
    "src/sdp",
    "src/sip",
];

/// What I/O looks like in source text. Built from pieces so that this file
/// does not match itself if it is ever moved under a core.
fn forbidden() -> Vec<String> {
    [
        ("Instant", "::now("),
        ("SystemTime", ""),
        ("Timestamp", "::now("),
        ("ntp", "_now("),
        ("UdpSocket", ""),
        ("TcpStream", ""),
        ("TcpListener", ""),
        ("io_", "uring"),
        ("epoll", "_"),
        ("libc", "::"),
        ("std::", "thread"),
        ("std::", "fs"),
        ("to", "kio"),
        ("std::", "env"),
    ]
    .iter()
    .map(|(a, b)| format!("{a}{b}"))
    .collect()
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.to_path_buf());
        }
        return;
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for e in entries {
        rust_files(&e, out);
    }
}

#[test]
fn the_cores_do_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for core in CORES {
        rust_files(&root.join(core), &mut files);
    }
    assert!(
        files.iter().any(|f| f.ends_with("media/core.rs")),
        "the media core is where the README says it is"
    );
    let words = forbidden();
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        // Unit tests (a file's `#[cfg(test)]` module, at its end, or a
        // `tests.rs` file that its parent declares `#[cfg(test)] mod tests;`)
        // may take a base instant from the clock; the code under test may not.
        if file.ends_with("tests.rs") {
            let parent = file.parent().expect("a parent directory");
            let declared = [parent.with_extension("rs"), parent.join("mod.rs")]
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .any(|t| t.contains("#[cfg(test)]\nmod tests;"));
            if declared {
                continue;
            }
        }
        let code_part = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code_part.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for w in &words {
                if code.contains(w.as_str()) {
                    found.push(format!("{}:{}: {w}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O in a sans-IO core:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_catches_io() {
    let words = forbidden();
    let io_line = ["let t = Instant", "::now();"].concat();
    assert!(words.iter().any(|w| io_line.contains(w.as_str())));
    let socket_line = ["let s = std::net::Udp", "Socket::bind(a);"].concat();
    assert!(words.iter().any(|w| socket_line.contains(w.as_str())));
}
