//! The binary as a user runs it: `validate`, a refused bad config, the
//! environment variables, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");
const BROKEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/broken.yaml");

const BROKEN_MESSAGES: [&str; 3] = [
    "tests/fixtures/broken.yaml:6: tier `gold`: burst must be a number ≥ 1.0, not 0.5",
    "tests/fixtures/broken.yaml:7: default_tier `silver` is not a configured tier",
    "tests/fixtures/broken.yaml:8: whitelist: `not-a-network` is not an IP address or CIDR",
];

#[test]
fn validate_reports_every_problem_with_file_and_line_and_exits_1() {
    let out = Command::new(BIN)
        .args(["validate", BROKEN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for message in BROKEN_MESSAGES {
        assert!(
            stderr.contains(message),
            "{message:?} missing from:\n{stderr}"
        );
    }
}

#[test]
fn validate_accepts_the_shipped_examples() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("api.yaml"), tollgate::config::BUILTIN_YAML).unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 domains: fingerprint-api)"));
}

#[test]
fn serve_refuses_a_bad_config_from_the_environment_with_the_same_messages() {
    let out = Command::new(BIN)
        .arg("serve")
        .env("TOLLGATE_CONFIG", BROKEN)
        .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for message in BROKEN_MESSAGES {
        assert!(
            stderr.contains(message),
            "{message:?} missing from:\n{stderr}"
        );
    }
}

#[test]
fn serve_reads_its_address_from_the_environment_and_exits_0_on_sigterm() {
    let mut child = Command::new(BIN)
        .env("TOLLGATE_GRPC_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_HTTP_ADDR", "127.0.0.1:0")
        .env("TOLLGATE_DRAIN_SECS", "0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let listening = loop {
        let line = lines
            .next()
            .expect("tollgate logs before it exits")
            .unwrap();
        if line.contains("gRPC listening") {
            break line;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no listening line"
        );
    };
    assert!(listening.contains("127.0.0.1:"), "{listening}");
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean exit");
}
