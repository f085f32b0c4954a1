//! The `sounds` resource over real HTTP: a temporary sounds directory
//! (`CROSSBAR_SOUNDS_PATH`) listed with Asterisk's Sound JSON, the `lang` and
//! `format` filters, the 404s, the api-docs, and the default path finding the
//! Debian prompts (`asterisk-core-sounds-en-wav`, installed by tests/run).

mod common;

use std::path::Path;

use common::{temp_path, Server};
use serde_json::{json, Value};

fn wav(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(b"\x02\0\x10\0data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&data);
    v
}

fn put(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn sounds_dir() -> std::path::PathBuf {
    let dir = temp_path("sounds");
    put(&dir, "en/beep.wav", &wav(8000, &[0; 80]));
    put(&dir, "en/beep.g722", &[0; 40]);
    put(&dir, "en/digits/1.ulaw", &[0xff; 80]);
    put(&dir, "en/digits/1.gsm", &[0; 33]);
    put(
        &dir,
        "en/core-sounds-en.txt",
        b"beep: A beep.\ndigits/1: one\n",
    );
    put(&dir, "fr/beep.alaw", &[0xd5; 80]);
    put(&dir, "fr/vm-intro.sln16", &[0; 160]);
    dir
}

fn beep() -> Value {
    json!({"id": "beep", "text": "A beep.", "formats": [
        {"language": "en", "format": "slin"},
        {"language": "en", "format": "g722"},
        {"language": "fr", "format": "alaw"},
    ]})
}

#[test]
fn sounds_are_listed_filtered_and_got_by_id() {
    let dir = sounds_dir();
    let s = Server::start_with(&[("CROSSBAR_SOUNDS_PATH", dir.to_str().unwrap())]);
    let all = s.get("/ari/sounds");
    assert_eq!(
        all.ok(),
        &json!([
            beep(),
            {"id": "digits/1", "text": "one", "formats": [{"language": "en", "format": "ulaw"}]},
            {"id": "vm-intro", "formats": [{"language": "fr", "format": "slin16"}]},
        ])
    );
    assert!(all
        .text
        .starts_with(r#"[{"id":"beep","text":"A beep.","formats":["#));

    let fr = s.get("/ari/sounds?lang=fr");
    let ids: Vec<&str> = fr
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["beep", "vm-intro"]);
    assert_eq!(
        fr.ok()[0]["formats"],
        json!([{"language": "fr", "format": "alaw"}])
    );
    assert_eq!(
        s.get("/ari/sounds?format=g722").ok(),
        &json!([{"id": "beep", "text": "A beep.", "formats": [{"language": "en", "format": "g722"}]}])
    );
    assert_eq!(s.get("/ari/sounds?lang=en&format=alaw").status, 404);
    s.get("/ari/sounds?lang=de")
        .assert_error(404, "No sounds found that matched the query");
    s.get("/ari/sounds?format=gsm")
        .assert_error(404, "No sounds found that matched the query");

    assert_eq!(s.get("/ari/sounds/beep").ok(), &beep());
    assert_eq!(
        s.get("/ari/sounds/digits%2F1").ok()["formats"],
        json!([{"language": "en", "format": "ulaw"}])
    );
    s.get("/ari/sounds/nope")
        .assert_error(404, "Sound not found");
    s.get("/ari/sounds?nope=1")
        .assert_error_prefix(400, "Unknown parameter 'nope'");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_empty_or_missing_directory_has_no_sounds() {
    let dir = temp_path("no-sounds");
    let s = Server::start_with(&[("CROSSBAR_SOUNDS_PATH", dir.to_str().unwrap())]);
    s.get("/ari/sounds")
        .assert_error(404, "No sounds found that matched the query");
    s.get("/ari/sounds/beep")
        .assert_error(404, "Sound not found");
}

#[test]
fn api_docs_declare_the_operations_and_models() {
    let s = Server::start();
    let listing = s.get("/ari/api-docs/resources.json");
    assert!(listing.text.contains("/api-docs/sounds.{format}"));
    let doc = s.get("/ari/api-docs/sounds.json");
    let doc = doc.ok();
    let paths: Vec<&str> = doc["apis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/sounds", "/sounds/{soundId}"]);
    let params: Vec<&str> = doc["apis"][0]["operations"][0]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["lang", "format"]);
    assert_eq!(
        doc["models"]["Sound"]["properties"]["formats"]["type"],
        "List[FormatLangPair]"
    );
    assert_eq!(
        doc["models"]["FormatLangPair"]["properties"]["language"]["required"],
        true
    );
}

/// The default `sounds.path` is where Debian's prompt packages install; with
/// `asterisk-core-sounds-en-wav` there (tests/run installs it), `beep` is
/// found in English as `slin`.
#[test]
fn the_default_path_finds_the_debian_prompts() {
    if !Path::new("/usr/share/asterisk/sounds/en/beep.wav").exists() {
        eprintln!("skipped: asterisk-core-sounds-en-wav is not installed");
        return;
    }
    let s = Server::start();
    let beep = s.get("/ari/sounds/beep");
    let formats = beep.ok()["formats"].as_array().unwrap().clone();
    assert!(
        formats.contains(&json!({"language": "en", "format": "slin"})),
        "{formats:?}"
    );
    let en = s.get("/ari/sounds?lang=en&format=slin");
    assert!(en.ok().as_array().unwrap().len() > 100);
}
