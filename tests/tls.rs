//! TLS and mutual TLS on the gRPC listener with real certificates made here
//! (rcgen): a client with a certificate from the configured CA is served;
//! one without, one from another CA, and a plaintext one are refused; new
//! certificate files are picked up without a restart.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::start_tollgate;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tollgate::proto::rls::rate_limit_service_client::RateLimitServiceClient;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate and key signed by `ca`, as PEM.
fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    (
        params.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

async fn call(addr: &str, server_ca: &str, client: Option<(&str, &str)>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(server_ca))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    RateLimitServiceClient::new(channel)
        .should_rate_limit(grpc_request("fingerprint-api", &[&[("user_id", "sk_tls")]]))
        .await
        .map(|_| ())
        .map_err(|e| format!("call: {e}"))
}

#[tokio::test]
async fn mutual_tls_accepts_its_clients_refuses_others_and_reloads_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (server_ca, client_ca, rogue_ca) = (ca("server-ca"), ca("client-ca"), ca("rogue-ca"));
    let (server_cert, server_key) = leaf(&server_ca, &["localhost", "127.0.0.1"]);
    let (client_cert, client_key) = leaf(&client_ca, &["client"]);
    let (rogue_cert, rogue_key) = leaf(&rogue_ca, &["client"]);
    let cert = write(dir.path(), "server.pem", &server_cert);
    let key = write(dir.path(), "server.key", &server_key);
    let client_ca_file = write(dir.path(), "clients.pem", &client_ca.pem);
    let tollgate = start_tollgate(&[
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &client_ca_file,
    ]);
    let addr = tollgate.grpc_addr.as_str();

    call(addr, &server_ca.pem, Some((&client_cert, &client_key)))
        .await
        .expect("a client from the CA is served");
    assert!(
        call(addr, &server_ca.pem, None).await.is_err(),
        "no client certificate: refused"
    );
    assert!(
        call(addr, &server_ca.pem, Some((&rogue_cert, &rogue_key)))
            .await
            .is_err(),
        "another CA: refused"
    );
    let plaintext = RateLimitServiceClient::connect(format!("http://{addr}")).await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(mut client) => client
            .should_rate_limit(grpc_request("fingerprint-api", &[&[("k", "v")]]))
            .await
            .is_err(),
    };
    assert!(refused, "plaintext: refused");

    // New server certificate from a new CA: picked up without a restart.
    let new_ca = ca("server-ca-2");
    let (new_cert, new_key) = leaf(&new_ca, &["localhost"]);
    tokio::time::sleep(Duration::from_millis(1100)).await; // a distinct mtime
    write(dir.path(), "server.key", &new_key);
    write(dir.path(), "server.pem", &new_cert);
    let started = Instant::now();
    while call(addr, &new_ca.pem, Some((&client_cert, &client_key)))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        call(addr, &server_ca.pem, Some((&client_cert, &client_key)))
            .await
            .is_err(),
        "the old certificate is gone"
    );
}

#[tokio::test]
async fn plain_tls_serves_any_client() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server-ca");
    let (server_cert, server_key) = leaf(&server_ca, &["localhost"]);
    let cert = write(dir.path(), "server.pem", &server_cert);
    let key = write(dir.path(), "server.key", &server_key);
    let tollgate = start_tollgate(&["--tls-cert", &cert, "--tls-key", &key]);
    call(&tollgate.grpc_addr, &server_ca.pem, None)
        .await
        .expect("TLS without client certificates");
}

#[test]
fn broken_certificate_files_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "server.pem", "not a certificate");
    let key = write(dir.path(), "server.key", "not a key");
    let out = std::process::Command::new(common::process::TOLLGATE)
        .args([
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
