//! Which data-plane driver the tests run: `tests/run` runs the suite once per
//! driver by setting `CROSSBAR_DATAPLANE_IO` (and, for the fallback run,
//! `CROSSBAR_DATAPLANE_URING_DISABLE`) in the environment. These are the only
//! `CROSSBAR_*` variables the harnesses pass on to the node.

#![allow(dead_code)]

use crossbar::config::Config;

/// The configuration variables that choose the driver and its features.
pub const VARS: [&str; 2] = ["CROSSBAR_DATAPLANE_IO", "CROSSBAR_DATAPLANE_URING_DISABLE"];

/// The driver variables set in this process's environment.
pub fn vars() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| VARS.contains(&k.as_str()))
        .collect()
}

/// The embedded defaults with the driver variables applied.
pub fn config() -> Config {
    Config::from_layers(None, vars()).expect("driver variables are valid")
}
