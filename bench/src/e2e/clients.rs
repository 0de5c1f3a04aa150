//! The two baseline clients of the end-to-end benchmark: a kernel-socket HTTP/1.1 client (a
//! lower bound for any client on the kernel's TCP) and reqwest configured as sol-trade-sdk
//! configures its SWQOS clients.

use std::time::Duration;

use super::{Proto, RelayLane, E2E_TIMEOUT};

/// The request template and TLS settings of an HTTP lane.
fn http_of(
    lane: &RelayLane,
) -> Result<
    (
        &swqos_wire::relay::RequestTemplate,
        Option<&swqos_tls::client_config::TlsSettings>,
    ),
    String,
> {
    match &lane.proto {
        Proto::Http { template, tls } => Ok((template, tls.as_ref())),
        Proto::Quic(_) => Err(format!("lane {}: not an HTTP lane", lane.name)),
    }
}

/// A minimal HTTP/1.1 client on one kernel TCP connection (HTTP/1.1, keep-alive,
/// `TCP_NODELAY`), writing exactly the bytes the lane's [`RequestTemplate`] produces. It has
/// none of reqwest's/hyper's own user-space work (headers, futures, a connection task), so it
/// is a lower bound for such a client.
pub(super) struct KernelClient {
    pub(super) addr: std::net::SocketAddrV4,
    pub(super) template: swqos_wire::relay::RequestTemplate,
    /// HTTPS: rustls (the same roots and suites as the lane) over the socket.
    pub(super) tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
    pub(super) stream: Option<KernelStream>,
    pub(super) request: Vec<u8>,
    pub(super) response: Vec<u8>,
    pub(super) reconnects: u32,
}

/// The kernel-socket client's connection: plain, or rustls's blocking stream over it.
pub(super) enum KernelStream {
    Plain(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl std::io::Read for KernelStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            KernelStream::Plain(s) => s.read(buf),
            KernelStream::Tls(s) => s.read(buf),
        }
    }
}

impl std::io::Write for KernelStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            KernelStream::Plain(s) => s.write(buf),
            KernelStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            KernelStream::Plain(s) => s.flush(),
            KernelStream::Tls(s) => s.flush(),
        }
    }
}

impl KernelClient {
    pub(super) fn new(lane: &RelayLane) -> Result<Self, String> {
        let (template, tls) = http_of(lane)?;
        let tls = match tls {
            Some(t) => Some((
                swqos_tls::client_config::client_config(&lane.name, t)?,
                t.server_name.clone(),
            )),
            None => None,
        };
        Ok(KernelClient {
            addr: lane.baseline_addr,
            template: template.clone(),
            tls,
            stream: None,
            request: Vec::with_capacity(4096),
            response: Vec::with_capacity(4096),
            reconnects: 0,
        })
    }

    pub(super) fn connect(&mut self) -> Result<(), String> {
        let s = std::net::TcpStream::connect_timeout(&self.addr.into(), Duration::from_secs(2))
            .map_err(|e| format!("kernel client: connect {}: {e}", self.addr))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(E2E_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(E2E_TIMEOUT))
            .map_err(|e| e.to_string())?;
        if self.stream.is_some() {
            self.reconnects += 1;
        }
        self.stream = Some(match &self.tls {
            None => KernelStream::Plain(s),
            Some((config, name)) => {
                let server = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|e| format!("kernel client: server name {name:?}: {e}"))?;
                let conn = rustls::ClientConnection::new(config.clone(), server)
                    .map_err(|e| format!("kernel client: TLS: {e}"))?;
                let mut tls = rustls::StreamOwned::new(conn, s);
                // The handshake now, not inside the first timed request.
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(|e| format!("kernel client: TLS handshake with {name}: {e}"))?;
                }
                KernelStream::Tls(Box::new(tls))
            }
        });
        Ok(())
    }

    /// Builds the request for `tx` (before the clock starts) and connects if needed.
    pub(super) fn prepare(&mut self, tx: &[u8]) -> Result<(), String> {
        self.request.resize(self.template.len(tx.len()), 0);
        let n = self.template.write(tx, &mut [&mut self.request[..]]);
        debug_assert_eq!(n, Some(self.request.len()));
        if self.stream.is_none() {
            self.connect()?;
        }
        Ok(())
    }

    /// Writes the prepared request.
    pub(super) fn send(&mut self) -> Result<(), String> {
        use std::io::Write;
        let stream = self.stream.as_mut().ok_or("kernel client: not connected")?;
        stream
            .write_all(&self.request)
            .map_err(|e| format!("kernel client: write: {e}"))
    }

    /// Reads the whole response (by `Content-Length`); returns its status.
    pub(super) fn receive(&mut self) -> Result<u16, String> {
        use std::io::Read;
        let stream = self.stream.as_mut().ok_or("kernel client: not connected")?;
        self.response.clear();
        let mut buf = [0u8; 4096];
        let mut head_end = None;
        let mut want = usize::MAX;
        let mut status = 0u16;
        let mut close = false;
        while self.response.len() < want {
            let n = stream
                .read(&mut buf)
                .map_err(|e| format!("kernel client: read: {e}"))?;
            if n == 0 {
                return Err("kernel client: the relay closed the connection mid-response".into());
            }
            self.response.extend_from_slice(&buf[..n]);
            if head_end.is_none() {
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut resp = httparse::Response::new(&mut headers);
                let end = match resp.parse(&self.response) {
                    Ok(httparse::Status::Complete(end)) => end,
                    Ok(httparse::Status::Partial) => continue,
                    Err(e) => return Err(format!("kernel client: bad response head: {e}")),
                };
                head_end = Some(end);
                status = resp.code.unwrap_or(0);
                let mut length = None;
                for h in resp.headers.iter() {
                    let v = std::str::from_utf8(h.value).unwrap_or("").trim();
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = v.parse::<usize>().ok();
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        close = v.eq_ignore_ascii_case("close");
                    }
                }
                let length = length.ok_or("kernel client: response without Content-Length")?;
                want = end + length;
            }
        }
        if close {
            self.stream = None; // the next request reconnects
        }
        Ok(status)
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A reqwest client for one relay lane, configured as sol-trade-sdk configures its SWQOS
/// clients (HTTP/1.1 only, `TCP_NODELAY`, keep-alive connection pool), with the request target
/// and headers the lane's [`RequestTemplate`] produces (Host, Content-Type, the auth header).
pub(super) struct ReqwestLane {
    pub(super) client: reqwest::Client,
    pub(super) url: reqwest::Url,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) template: swqos_wire::relay::RequestTemplate,
    /// The prepared body (the template's body bytes for the transaction).
    pub(super) body: Vec<u8>,
    pub(super) scratch: Vec<u8>,
}

impl ReqwestLane {
    pub(super) fn new(lane: &RelayLane, tx: &[u8]) -> Result<ReqwestLane, String> {
        let mut builder = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(2))
            .timeout(E2E_TIMEOUT);
        // HTTPS: rustls (ring) with its bundled roots plus the lane's CA files, the relay's
        // name resolved to the baselines' address of the relay (as DNS would).
        let (template, tls) = http_of(lane)?;
        let origin = match tls {
            None => format!("http://{}", lane.baseline_addr),
            Some(t) => {
                builder = builder
                    .use_rustls_tls()
                    .resolve(&t.server_name, lane.baseline_addr.into());
                for f in &t.ca_files {
                    let pem = std::fs::read(f)
                        .map_err(|e| format!("lane {}: {}: {e}", lane.name, f.display()))?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| format!("lane {}: {}: {e}", lane.name, f.display()))?;
                    for c in certs {
                        builder = builder.add_root_certificate(c);
                    }
                }
                if t.insecure_skip_verify {
                    builder = builder.danger_accept_invalid_certs(true);
                }
                format!("https://{}:{}", t.server_name, lane.baseline_addr.port())
            }
        };
        let client = builder
            .build()
            .map_err(|e| format!("reqwest client: {e}"))?;
        // The request line and headers of the template, from one request written by it.
        let mut raw = vec![0u8; template.len(tx.len())];
        template.write(tx, &mut [&mut raw[..]]);
        let mut parsed = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut parsed);
        match req.parse(&raw) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err("template: not a complete HTTP/1.1 request head".to_string()),
        }
        let target = match (req.method, req.path, req.version) {
            (Some("POST"), Some(path), Some(1)) => path,
            _ => return Err("template: not a POST HTTP/1.1 request line".to_string()),
        };
        let url = reqwest::Url::parse(&format!("{origin}{target}"))
            .map_err(|e| format!("lane {}: url: {e}", lane.name))?;
        let mut headers = reqwest::header::HeaderMap::new();
        for h in req.headers.iter() {
            let k = h.name;
            // Content-Length comes from the body; the connection is hyper's to manage.
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("connection") {
                continue;
            }
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| format!("template header {k:?}: {e}"))?;
            let value = reqwest::header::HeaderValue::from_bytes(h.value)
                .map_err(|e| format!("template header {k:?}: {e}"))?;
            headers.append(name, value);
        }
        Ok(ReqwestLane {
            client,
            url,
            headers,
            template: template.clone(),
            body: Vec::new(),
            scratch: Vec::with_capacity(4096),
        })
    }

    /// Builds the body for `tx` (before the clock starts).
    pub(super) fn prepare(&mut self, tx: &[u8]) {
        self.scratch.resize(self.template.len(tx.len()), 0);
        self.template.write(tx, &mut [&mut self.scratch[..]]);
        let start = find(&self.scratch, b"\r\n\r\n").map_or(0, |e| e + 4);
        self.body.clear();
        self.body.extend_from_slice(&self.scratch[start..]);
    }

    /// Sends the prepared body and reads the whole response; returns its status and
    /// `monotonic_ns()` when the response body was complete.
    pub(super) async fn exchange(&self, body: Vec<u8>) -> Result<(u16, u64), String> {
        let response = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| format!("reqwest: {e}"))?;
        let status = response.status().as_u16();
        response
            .bytes()
            .await
            .map_err(|e| format!("reqwest: body: {e}"))?;
        Ok((status, swqos_shm::time::monotonic_ns()))
    }
}

/// Polls every future to completion (as `futures::future::join_all`, for a handful of them);
/// outputs in order.
pub(super) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *o = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}
