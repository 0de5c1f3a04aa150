//! The QUIC baseline of the end-to-end benchmark: quinn 0.11 on tokio, configured as
//! sol-trade-sdk configures its QUIC clients (docs/quic-lanes.md): one endpoint (a kernel UDP
//! socket on `0.0.0.0:0`) and one connection per lane, the provider's ALPN, server name and
//! client certificate, its keep-alive and idle timeout (the rest of the transport is quinn's
//! default), Glaive's authentication uni-stream and Node1's authentication bi-stream (answered
//! with one byte) once per connection, then one stream per transaction written with
//! `write_all` + `finish` (Node1: a bi-stream and its reply).
//!
//! One difference, on purpose: sol-trade-sdk skips the relay's certificate verification; this
//! client verifies it exactly as the data plane's QUIC lanes do (the same
//! `swqos_tls::client_config::quic_client_config` and `swqos_tls::client_identity::client_cert`,
//! the lane's `ca_files`), so both paths pay for the same handshake and present the same kind
//! of certificate.
//!
//! A transaction's send completes when the relay has acknowledged every byte of its stream
//! (`SendStream::stopped`; Node1: its reply), as the data plane's QUIC completion does; the
//! submit time is taken just before `open_uni`/`open_bi` (what a bot's send costs).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use dpdk_config::QuicLane;
use swqos_tls::client_config::TlsSettings;
use swqos_tls::client_identity::quic_lane_config;
use swqos_wire::quic_relay::{
    QuicProvider, Reply, StreamKind, MAX_AUTH_LEN, NODE1_AUTH_OK, REPLY_HEADER_LEN,
};

use super::E2E_TIMEOUT;

/// How long the handshake and the authentication stream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One lane's quinn connection to the relay.
pub(super) struct QuinnLane {
    provider: QuicProvider,
    /// Keeps the endpoint's socket and driver alive as long as the connection.
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

/// The quinn client configuration of `q` (named `name`): the data plane's TLS configuration
/// (roots, `ca_files`, the provider's ALPN and client certificate) and sol-trade-sdk's
/// transport settings for the provider.
fn client_config(name: &str, q: &QuicLane) -> Result<quinn::ClientConfig, String> {
    let key = q.token.as_ref().map(|t| t.expose());
    let tls = TlsSettings {
        server_name: q.server_name.clone(),
        ca_files: q.ca_files.clone(),
        insecure_skip_verify: q.insecure_skip_verify,
    };
    let rustls = quic_lane_config(
        name,
        q.provider,
        key,
        q.keypair_file.as_deref(),
        q.mev,
        &tls,
    )?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls)
        .map_err(|e| format!("quinn lane {name}: QUIC TLS: {e}"))?;
    let (keep_alive, idle) = q.provider.sdk_keep_alive_idle();
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(keep_alive))
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(idle).map_err(|e| format!("quinn lane {name}: {e}"))?,
        ));
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

impl QuinnLane {
    /// Connects lane `name` (`q`) to the relay at `addr` on `rt` and sends the provider's
    /// authentication stream, if it has one.
    pub(super) fn connect(
        rt: &tokio::runtime::Runtime,
        name: &str,
        q: &QuicLane,
        addr: SocketAddrV4,
    ) -> Result<QuinnLane, String> {
        let config = client_config(name, q)?;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            format!("quinn lane {name}: {what} {addr} ({}): {e}", q.provider)
        };
        rt.block_on(async {
            let endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
                .map_err(|e| fail("endpoint for", &e))?;
            let connecting = endpoint
                .connect_with(config, addr.into(), &q.server_name)
                .map_err(|e| fail("connect to", &e))?;
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| fail("no handshake with", &"timed out"))?
                .map_err(|e| fail("handshake with", &e))?;
            let key = q.token.as_ref().map(|t| t.expose());
            let mut auth = [0u8; MAX_AUTH_LEN];
            if let Some((kind, n)) = q.provider.auth(key, q.mev, &mut auth) {
                tokio::time::timeout(CONNECT_TIMEOUT, authenticate(&conn, kind, &auth[..n]))
                    .await
                    .map_err(|_| fail("no answer to the authentication from", &"timed out"))?
                    .map_err(|e| fail("authentication refused by", &e))?;
            }
            Ok(QuinnLane {
                provider: q.provider,
                endpoint,
                conn,
            })
        })
    }

    /// Sends one transaction: a new stream, `write_all`, `finish`, then waits until the relay
    /// acknowledged it all (Node1: until its reply, which must accept it). Returns
    /// `monotonic_ns()` at that moment.
    pub(super) async fn send(&self, tx: &[u8]) -> Result<u64, String> {
        let provider = self.provider;
        let exchange = async {
            match provider.tx_stream() {
                StreamKind::Uni => {
                    let mut s = self.conn.open_uni().await.map_err(|e| e.to_string())?;
                    s.write_all(tx).await.map_err(|e| e.to_string())?;
                    s.finish().map_err(|e| e.to_string())?;
                    match s.stopped().await {
                        Ok(None) => Ok(()),
                        Ok(Some(code)) => Err(format!("the relay stopped the stream ({code})")),
                        Err(e) => Err(e.to_string()),
                    }
                }
                StreamKind::Bi => {
                    let (mut s, mut r) = self.conn.open_bi().await.map_err(|e| e.to_string())?;
                    s.write_all(tx).await.map_err(|e| e.to_string())?;
                    s.finish().map_err(|e| e.to_string())?;
                    let mut head = [0u8; REPLY_HEADER_LEN];
                    r.read_exact(&mut head).await.map_err(|e| e.to_string())?;
                    let reply = Reply::parse(&head).ok_or("short reply")?;
                    let mut message = vec![0u8; reply.message_len.min(4096) as usize];
                    r.read_exact(&mut message)
                        .await
                        .map_err(|e| e.to_string())?;
                    if reply.accepted() {
                        Ok(())
                    } else {
                        Err(format!(
                            "the relay answered {}: {}",
                            reply.status,
                            String::from_utf8_lossy(&message)
                        ))
                    }
                }
            }
        };
        tokio::time::timeout(E2E_TIMEOUT, exchange)
            .await
            .map_err(|_| {
                format!("quinn path ({provider}): no acknowledgement within {E2E_TIMEOUT:?}")
            })?
            .map_err(|e| format!("quinn path ({provider}): {e}"))?;
        Ok(swqos_shm::time::monotonic_ns())
    }

    /// Closes the connection as sol-trade-sdk's clients do when dropped (code 0, "client
    /// closing") and waits briefly for the close to leave.
    pub(super) fn close(self, rt: &tokio::runtime::Runtime) {
        self.conn.close(0u32.into(), b"client closing");
        rt.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
        });
    }
}

/// The provider's authentication stream: Glaive's uni-stream (no answer), Node1's bi-stream
/// answered with one byte, [`NODE1_AUTH_OK`] when accepted.
async fn authenticate(
    conn: &quinn::Connection,
    kind: StreamKind,
    auth: &[u8],
) -> Result<(), String> {
    match kind {
        StreamKind::Uni => {
            let mut s = conn.open_uni().await.map_err(|e| e.to_string())?;
            s.write_all(auth).await.map_err(|e| e.to_string())?;
            s.finish().map_err(|e| e.to_string())
        }
        StreamKind::Bi => {
            let (mut s, mut r) = conn.open_bi().await.map_err(|e| e.to_string())?;
            s.write_all(auth).await.map_err(|e| e.to_string())?;
            s.finish().map_err(|e| e.to_string())?;
            let mut answer = [0u8; 1];
            r.read_exact(&mut answer).await.map_err(|e| e.to_string())?;
            if answer[0] == NODE1_AUTH_OK {
                Ok(())
            } else {
                Err(format!("answer {}", answer[0]))
            }
        }
    }
}
