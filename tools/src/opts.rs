//! Command-line options of the media scenarios (`relay`, `reflector`,
//! `transcode`, `mix`, `churn`): one parser, every value range-checked, so a
//! run is always bounded in time and in count.

use std::time::Duration;

/// How a server driven over rtpengine's ng protocol is written among the URLs.
pub const NG_SCHEME: &str = "ng://";
/// The longest measured window a run may ask for.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// The most two-party calls one run may set up.
pub const MAX_CALLS: usize = 5_000;
/// The most participants of one mixing bridge, and of all bridges together.
pub const MAX_PARTICIPANTS: usize = 5_000;

/// Options shared by the media scenarios (each uses the ones it needs).
#[derive(Clone, Debug)]
pub struct MediaOptions {
    pub url: String,
    /// `--url` was given (with `--rtpengine`: compare the two).
    pub url_given: bool,
    /// `relay --rtpengine ADDR`: rtpengine's ng address (`HOST:PORT`).
    pub rtpengine: Option<String>,
    /// `--compare URL1 URL2`: run against both, one after the other.
    pub compare: Option<(String, String)>,
    pub user: String,
    pub password: String,
    pub app: String,
    pub pid: Option<u32>,
    pub json: bool,
    pub per_thread: bool,
    pub allow_remote: bool,
    pub no_baseline: bool,
    pub timeout: Duration,
    pub duration: Duration,
    pub warmup: Duration,
    pub calls: usize,
    /// `transcode --pair`: the second leg's format (`alaw` or `opus`).
    pub pair: String,
    pub participants: usize,
    pub bridges: usize,
    pub talkers: f64,
    /// `mix --bridge-media`: variants run after plain softmix, each bridge
    /// with a playback (`play`) or a recording (`record`) of its own.
    pub bridge_media: Vec<String>,
    /// `churn`: calls started per second.
    pub rate: f64,
    /// `churn`: how long each call carries media before it is hung up.
    pub call_time: Duration,
    pub senders: usize,
    pub receivers: usize,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            url: "http://127.0.0.1:8088".into(),
            url_given: false,
            rtpengine: None,
            compare: None,
            user: "asterisk".into(),
            password: "asterisk".into(),
            app: "crossbar-load".into(),
            pid: None,
            json: false,
            per_thread: false,
            allow_remote: false,
            no_baseline: false,
            timeout: Duration::from_secs(5),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            calls: 10,
            pair: "alaw".into(),
            participants: 10,
            bridges: 1,
            talkers: 1.0,
            bridge_media: Vec::new(),
            rate: 5.0,
            call_time: Duration::from_millis(500),
            senders: 2,
            receivers: 2,
        }
    }
}

/// Parses `10`, `10s`, `1.5s`, `500ms` (plain numbers are seconds).
pub fn parse_duration(v: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1.0)
    } else {
        (v, 1.0)
    };
    let x: f64 = num.parse().ok()?;
    (x.is_finite() && x >= 0.0).then(|| Duration::from_secs_f64(x * scale))
}

impl MediaOptions {
    /// Parses `--name value` / `--name=value` options.
    pub fn parse(args: &[String]) -> Result<MediaOptions, String> {
        let mut o = MediaOptions::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let flag = match name {
                "--json" => Some(&mut o.json),
                "--allow-remote" => Some(&mut o.allow_remote),
                "--per-thread" => Some(&mut o.per_thread),
                "--no-baseline" => Some(&mut o.no_baseline),
                "--help" | "-h" => return Err("help requested".into()),
                _ => None,
            };
            if let Some(flag) = flag {
                if inline.is_some() {
                    return Err(format!("{name} takes no value"));
                }
                *flag = true;
                continue;
            }
            let mut value = || -> Result<String, String> {
                match &inline {
                    Some(v) => Ok(v.clone()),
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| format!("{name} needs a value")),
                }
            };
            let count = |v: String, max: usize| -> Result<usize, String> {
                v.parse()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| format!("{name}: expected 1..={max}, got '{v}'"))
            };
            let span = |v: String, min: Duration, max: Duration| -> Result<Duration, String> {
                parse_duration(&v)
                    .filter(|d| (min..=max).contains(d))
                    .ok_or_else(|| {
                        format!(
                            "{name}: expected a duration in {:?}..={:?} (e.g. 10s, 500ms), got '{v}'",
                            min, max
                        )
                    })
            };
            match name {
                "--url" => {
                    o.url = value()?;
                    o.url_given = true;
                }
                "--rtpengine" => {
                    let v = value()?;
                    let v = v.strip_prefix(NG_SCHEME).unwrap_or(&v).to_string();
                    if v.is_empty() {
                        return Err("--rtpengine needs HOST:PORT".into());
                    }
                    o.rtpengine = Some(v);
                }
                "--compare" => {
                    let first = value()?;
                    let second = it
                        .next()
                        .cloned()
                        .ok_or("--compare needs two URLs: --compare URL1 URL2")?;
                    o.compare = Some((first, second));
                }
                "--user" => o.user = value()?,
                "--password" => o.password = value()?,
                "--app" => {
                    o.app = value()?;
                    if o.app.is_empty() {
                        return Err("--app cannot be empty".into());
                    }
                }
                "--pid" => {
                    let v = value()?;
                    o.pid = Some(
                        v.parse()
                            .map_err(|_| format!("--pid: bad process id '{v}'"))?,
                    )
                }
                "--timeout-ms" => {
                    let v = value()?;
                    o.timeout = Duration::from_millis(count(v, 3_600_000)? as u64)
                }
                "--duration" => {
                    o.duration = span(value()?, Duration::from_millis(100), MAX_DURATION)?
                }
                "--warmup" => o.warmup = span(value()?, Duration::ZERO, Duration::from_secs(60))?,
                "--call-time" => {
                    o.call_time =
                        span(value()?, Duration::from_millis(20), Duration::from_secs(60))?
                }
                "--calls" => o.calls = count(value()?, MAX_CALLS)?,
                "--participants" => o.participants = count(value()?, MAX_PARTICIPANTS)?,
                "--bridges" => o.bridges = count(value()?, MAX_PARTICIPANTS)?,
                "--senders" => o.senders = count(value()?, 16)?,
                "--receivers" => o.receivers = count(value()?, 16)?,
                "--pair" => {
                    let v = value()?;
                    o.pair = match v.as_str() {
                        "pcmu-pcma" | "ulaw-alaw" => "alaw".into(),
                        "pcmu-opus" | "ulaw-opus" => "opus".into(),
                        _ => {
                            return Err(format!(
                                "--pair: expected pcmu-pcma or pcmu-opus, got '{v}'"
                            ))
                        }
                    }
                }
                "--talkers" => {
                    let v = value()?;
                    o.talkers = v
                        .parse::<f64>()
                        .ok()
                        .filter(|x| (0.0..=1.0).contains(x))
                        .ok_or_else(|| {
                            format!("--talkers: expected a fraction in 0..=1, got '{v}'")
                        })?
                }
                "--bridge-media" => {
                    let v = value()?;
                    o.bridge_media = v.split(',').map(str::to_string).collect();
                    if let Some(bad) = o
                        .bridge_media
                        .iter()
                        .find(|m| !matches!(m.as_str(), "play" | "record"))
                    {
                        return Err(format!(
                            "--bridge-media: expected play and/or record (comma separated), got '{bad}'"
                        ));
                    }
                }
                "--rate" => {
                    let v = value()?;
                    o.rate = v
                        .parse::<f64>()
                        .ok()
                        .filter(|x| *x > 0.0 && *x <= 1000.0)
                        .ok_or_else(|| {
                            format!("--rate: expected calls per second in (0, 1000], got '{v}'")
                        })?
                }
                _ => return Err(format!("unknown option '{arg}'")),
            }
        }
        if o.rtpengine.is_some() && o.compare.is_some() {
            return Err(
                "--rtpengine and --compare: at most two servers (write --compare URL ng://HOST:PORT)"
                    .into(),
            );
        }
        if o.participants * o.bridges > MAX_PARTICIPANTS {
            return Err(format!(
                "--participants × --bridges is at most {MAX_PARTICIPANTS}"
            ));
        }
        Ok(o)
    }

    /// The servers to run against, in order: ARI URLs, and rtpengine as
    /// `ng://HOST:PORT` (`--rtpengine` alone: only rtpengine; with `--url`:
    /// the URL first, then rtpengine).
    pub fn urls(&self) -> Vec<String> {
        match (&self.compare, &self.rtpengine) {
            (Some((a, b)), _) => vec![a.clone(), b.clone()],
            (None, Some(ng)) if self.url_given => {
                vec![self.url.clone(), format!("{NG_SCHEME}{ng}")]
            }
            (None, Some(ng)) => vec![format!("{NG_SCHEME}{ng}")],
            (None, None) => vec![self.url.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn parses_and_bounds() {
        let o =
            MediaOptions::parse(&args("--calls 3 --duration 2s --warmup=500ms --json")).unwrap();
        assert_eq!(o.calls, 3);
        assert_eq!(o.duration, Duration::from_secs(2));
        assert_eq!(o.warmup, Duration::from_millis(500));
        assert!(o.json);
        assert!(MediaOptions::parse(&args("--duration 601")).is_err());
        assert!(MediaOptions::parse(&args("--calls 0")).is_err());
        assert!(MediaOptions::parse(&args("--talkers 1.5")).is_err());
        assert!(MediaOptions::parse(&args("--bridge-media sing")).is_err());
        assert_eq!(
            MediaOptions::parse(&args("--bridge-media play,record"))
                .unwrap()
                .bridge_media,
            vec!["play", "record"]
        );
        assert!(MediaOptions::parse(&args("--pair pcmu-g729")).is_err());
        assert!(MediaOptions::parse(&args("--compare http://127.0.0.1:1")).is_err());
        let c = MediaOptions::parse(&args("--compare http://a:1 http://b:2")).unwrap();
        assert_eq!(c.urls().len(), 2);
        let r = MediaOptions::parse(&args("--rtpengine 127.0.0.1:2223")).unwrap();
        assert_eq!(r.urls(), vec!["ng://127.0.0.1:2223".to_string()]);
        let r = MediaOptions::parse(&args(
            "--url http://127.0.0.1:18088 --rtpengine ng://127.0.0.1:2223",
        ))
        .unwrap();
        assert_eq!(
            r.urls(),
            vec![
                "http://127.0.0.1:18088".to_string(),
                "ng://127.0.0.1:2223".to_string()
            ]
        );
        assert!(
            MediaOptions::parse(&args("--compare http://a:1 http://b:2 --rtpengine x:1")).is_err()
        );
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("x"), None);
    }
}
