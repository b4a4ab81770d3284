//! Redis connections by URL: one node (`redis://`, `rediss://`), a Cluster
//! (`redis+cluster://`), or a master found through Sentinel
//! (`redis+sentinel://`). Every kind is multiplexed: concurrent requests
//! share one pipelined connection per node, and reconnect by themselves.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{RedisResult, ScriptInvocation, Value};
use tokio::sync::Mutex;

/// A parsed `--redis-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisUrl {
    /// `redis://[user:pass@]host:port[/db]` or `rediss://…`
    Single(String),
    /// `redis+cluster://[user:pass@]host:port,host:port,…`: seed nodes.
    Cluster(Vec<String>),
    /// `redis+sentinel://host:port,host:port/<master-name>`
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        let hosts = |rest: &str, scheme: &str| -> Vec<String> {
            let (auth, hosts) = match rest.rsplit_once('@') {
                Some((auth, hosts)) => (format!("{auth}@"), hosts),
                None => (String::new(), rest),
            };
            hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("{scheme}://{auth}{h}"))
                .collect()
        };
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let nodes = hosts(rest.trim_end_matches('/'), "redis");
            if nodes.is_empty() {
                return Err(format!(
                    "`{url}`: a cluster URL needs at least one host:port"
                ));
            }
            Ok(Self::Cluster(nodes))
        } else if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let Some((rest, master)) = rest.split_once('/').filter(|(_, m)| !m.is_empty()) else {
                return Err(format!("`{url}`: a sentinel URL ends with /<master-name>"));
            };
            let sentinels = hosts(rest, "redis");
            if sentinels.is_empty() {
                return Err(format!(
                    "`{url}`: a sentinel URL needs at least one host:port"
                ));
            }
            Ok(Self::Sentinel {
                sentinels,
                master: master.to_string(),
            })
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Ok(Self::Single(url.to_string()))
        } else {
            Err(format!(
                "`{url}`: expected redis://, rediss://, redis+cluster:// or redis+sentinel://"
            ))
        }
    }
}

/// A live connection of any kind.
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Box<SentinelConnection>),
}

/// The master named by Sentinel, asked again after a connection error (a
/// failover).
pub struct SentinelConnection {
    client: Mutex<SentinelClient>,
    current: parking_lot::RwLock<Option<MultiplexedConnection>>,
}

impl Connection {
    /// `ca_cert`: a PEM CA that signs the servers' certificates, for
    /// `rediss://` with a private CA (else the web PKI roots are used).
    pub async fn open(
        url: &RedisUrl,
        timeout: Duration,
        ca_cert: Option<&[u8]>,
    ) -> RedisResult<Self> {
        let certificates = || redis::TlsCertificates {
            client_tls: None,
            root_cert: ca_cert.map(<[u8]>::to_vec),
        };
        match url {
            RedisUrl::Single(url) => {
                let client = match ca_cert {
                    Some(_) => redis::Client::build_with_tls(url.as_str(), certificates())?,
                    None => redis::Client::open(url.as_str())?,
                };
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
                    .set_response_timeout(None)
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Self::Single(ConnectionManager::new_lazy_with_config(
                    client, config,
                )?))
            }
            RedisUrl::Cluster(nodes) => {
                let mut builder = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(timeout.max(Duration::from_millis(250)));
                if ca_cert.is_some() {
                    builder = builder.certs(certificates());
                }
                let client = builder.build()?;
                Ok(Self::Cluster(client.get_async_connection().await?))
            }
            RedisUrl::Sentinel { sentinels, master } => {
                let client = SentinelClient::build(
                    sentinels.clone(),
                    master.clone(),
                    None,
                    SentinelServerType::Master,
                )?;
                Ok(Self::Sentinel(Box::new(SentinelConnection {
                    client: Mutex::new(client),
                    current: parking_lot::RwLock::new(None),
                })))
            }
        }
    }

    /// Runs a script invocation (EVALSHA, then EVAL to load it after
    /// NOSCRIPT: a restart, a failover, SCRIPT FLUSH).
    pub async fn invoke(&self, invocation: &ScriptInvocation<'_>) -> RedisResult<Value> {
        match self {
            Self::Single(conn) => invocation.invoke_async(&mut conn.clone()).await,
            Self::Cluster(conn) => invocation.invoke_async(&mut conn.clone()).await,
            Self::Sentinel(sentinel) => {
                let cached = sentinel.current.read().clone();
                let mut conn = match cached {
                    Some(conn) => conn,
                    None => {
                        let conn = sentinel.client.lock().await.get_async_connection().await?;
                        *sentinel.current.write() = Some(conn.clone());
                        conn
                    }
                };
                let result = invocation.invoke_async(&mut conn).await;
                if let Err(error) = &result
                    && (error.is_io_error()
                        || error.is_connection_dropped()
                        || error.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly))
                {
                    // The master may have moved: ask Sentinel next time.
                    *sentinel.current.write() = None;
                }
                result
            }
        }
    }

    /// PING, for readiness.
    pub async fn ping(&self) -> RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            Self::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            Self::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
            Self::Sentinel(sentinel) => {
                let mut conn = sentinel.client.lock().await.get_async_connection().await?;
                cmd.query_async(&mut conn).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RedisUrl;

    #[test]
    fn url_forms() {
        assert_eq!(
            RedisUrl::parse("redis://h:1/2"),
            Ok(RedisUrl::Single("redis://h:1/2".into()))
        );
        assert_eq!(
            RedisUrl::parse("rediss://u:p@h:1"),
            Ok(RedisUrl::Single("rediss://u:p@h:1".into()))
        );
        assert_eq!(
            RedisUrl::parse("redis+cluster://:pw@a:1,b:2"),
            Ok(RedisUrl::Cluster(vec![
                "redis://:pw@a:1".into(),
                "redis://:pw@b:2".into()
            ]))
        );
        assert_eq!(
            RedisUrl::parse("redis+sentinel://a:26379,b:26379/mymaster"),
            Ok(RedisUrl::Sentinel {
                sentinels: vec!["redis://a:26379".into(), "redis://b:26379".into()],
                master: "mymaster".into()
            })
        );
        assert!(
            RedisUrl::parse("redis+sentinel://a:1")
                .unwrap_err()
                .contains("/<master-name>")
        );
        assert!(
            RedisUrl::parse("http://x")
                .unwrap_err()
                .contains("expected redis://")
        );
        assert!(RedisUrl::parse("redis+cluster://").is_err());
    }
}
