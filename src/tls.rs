//! TLS and mutual TLS on the gRPC listener (rustls), with certificates
//! reloaded when their files change: each new connection is accepted with
//! the newest good config; a broken file is logged and the old config kept.
//! tonic receives ready TLS streams, so handshakes never block its accept
//! loop and a failed handshake never reaches it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// How often certificate files are checked for changes.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);
/// Longest time a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the PEM files are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate this CA signed.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA: {0}")]
    ClientVerifier(String),
}

impl TlsFiles {
    fn stamps(&self) -> Vec<Option<SystemTime>> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// A rustls server config from the files (ALPN h2 for gRPC).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let pem = |path: &PathBuf, e: rustls_pki_types::pem::Error| TlsError::Pem {
            path: path.clone(),
            message: e.to_string(),
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| pem(&self.cert, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| pem(&self.cert, e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| pem(&self.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem(ca, e))? {
                    roots.add(cert.map_err(|e| pem(ca, e))?)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::ClientVerifier(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts TLS connections on `listener` until the returned stream is
/// dropped; reloads the files when they change.
pub fn incoming(
    listener: TcpListener,
    files: TlsFiles,
) -> Result<ReceiverStream<std::io::Result<TlsStream<TcpStream>>>, TlsError> {
    let config = Arc::new(ArcSwap::new(files.server_config()?));
    let (tx, rx) = mpsc::channel(256);

    let watched = Arc::clone(&config);
    let watcher_tx = tx.clone();
    tokio::spawn(async move {
        let mut stamps = files.stamps();
        while !watcher_tx.is_closed() {
            tokio::time::sleep(RELOAD_CHECK).await;
            let now = files.stamps();
            if now == stamps {
                continue;
            }
            stamps = now;
            match files.server_config() {
                Ok(fresh) => {
                    watched.store(fresh);
                    tracing::info!("TLS certificates reloaded");
                }
                Err(error) => {
                    tracing::error!(%error, "TLS certificates rejected; the previous ones stay in use")
                }
            }
        }
    });

    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let _ = stream.set_nodelay(true); // small answers must not wait for delayed ACKs
            let acceptor = TlsAcceptor::from(config.load_full());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(ReceiverStream::new(rx))
}
