//! TLS to relays (DESIGN.md section 7): rustls performs the handshake, then hands the traffic
//! secrets over (its kernel-offload API) and every record after that is sealed and opened by
//! `swqos-tls`, the record layer the data plane uses too. That is what makes a delegated send
//! work: the data plane seals the request at the connection's next sequence number and the
//! control plane's mirror write ([`TlsConn::write_records`]) produces the identical bytes.
//!
//! rustls keeps the secret schedule: `KernelConnection` derives the next secrets on a
//! `KeyUpdate` and stores session tickets. Key material never reaches a log or `Debug`.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{AlertDescription, ClientConfig, ConnectionTrafficSecrets, ExtractedSecrets};
use swqos_tls::{
    content_type, PostHandshake, RecordOpener, RecordSealer, Suite, TrafficKeys, Version,
    KEY_UPDATE_NOT_REQUESTED, MAX_PLAINTEXT,
};
use zeroize::Zeroize;

/// Records sealed under one write key before the connection changes keys: 2^23, well inside
/// AES-GCM's confidentiality limit for TLS 1.3 (2^24.5 records, RFC 8446 section 5.5; rustls
/// uses the same), and for ChaCha20-Poly1305 far inside its.
const REKEY_AFTER: u64 = 1 << 23;

/// Largest record we accept: header, TLS 1.2's bound on ciphertext expansion, 16 KiB.
const MAX_RECORD: usize = swqos_tls::HEADER_LEN + MAX_PLAINTEXT + 2048;
/// Ciphertext buffer: always room for one whole record after a partial one is moved to the front.
const RX_BUF: usize = 2 * MAX_RECORD;
/// Largest handshake flight buffered (certificate chains can span several records).
const MAX_HANDSHAKE_BUF: usize = 256 * 1024;

pub(crate) use swqos_tls::client_config::{client_config, TlsSettings};

/// What the data plane needs to seal records of a connection: suite, write key and IV, next
/// sequence number. Zeroized on drop; `Debug` shows no key material.
pub(crate) struct TxState {
    /// The suite.
    pub(crate) suite: Suite,
    /// The IANA id of the negotiated suite (what the shared-memory session entry stores).
    pub(crate) iana: u16,
    /// Write key; the first `key_len` bytes are used.
    pub(crate) key: [u8; 32],
    /// 16 or 32.
    pub(crate) key_len: usize,
    /// Write IV.
    pub(crate) iv: [u8; 12],
    /// Sequence number of the next record.
    pub(crate) seq: u64,
}

impl TxState {
    /// The key bytes.
    pub(crate) fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// The state as an arming publishes it in the session table.
    pub(crate) fn publish(&self) -> swqos_shm::sessions::TlsWriteRef<'_> {
        swqos_shm::sessions::TlsWriteRef {
            suite: self.iana,
            key: self.key(),
            iv: &self.iv,
            seq: self.seq,
        }
    }
}

impl Drop for TxState {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

impl fmt::Debug for TxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxState")
            .field("suite", &self.suite)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// A TLS connection after the handshake. Owns no socket: every method gets the blocking
/// `TcpStream` (with read/write timeouts set by the caller). A write or read that fails leaves
/// the connection unusable: close it.
pub(crate) struct TlsConn {
    kernel: KernelConnection<ClientConnectionData>,
    suite: Suite,
    /// A copy of the sealer's keys, for [`TlsConn::tx_state`].
    tx_keys: TrafficKeys,
    sealer: RecordSealer,
    opener: RecordOpener,
    /// Ciphertext received: `rx[..rx_len]`.
    rx: Vec<u8>,
    rx_len: usize,
    /// Decrypted application data not returned yet: `plain[plain_pos..]`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Records being written.
    tx: Vec<u8>,
    key_update_pending: bool,
    /// [`REKEY_AFTER`], smaller in tests.
    rekey_after: u64,
    /// close_notify or the TCP FIN arrived.
    eof: bool,
}

/// What one processed record was.
enum Record {
    /// Application data (appended to `plain`, maybe empty).
    Data,
    /// A post-handshake message, handled.
    Handshake,
    /// close_notify.
    Closed,
}

impl TlsConn {
    /// Drives the handshake over `stream` until rustls may send application data (or
    /// `deadline`), then takes the keys. Bytes that arrived after the handshake are kept for
    /// the reader.
    pub(crate) fn handshake(
        stream: &TcpStream,
        config: Arc<ClientConfig>,
        server_name: &str,
        deadline: Instant,
    ) -> Result<TlsConn, String> {
        let fail =
            |reason: &dyn fmt::Display| format!("TLS handshake with {server_name}: {reason}");
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| fail(&"not a DNS name or IP address"))?;
        let mut conn = UnbufferedClientConnection::new(config, name).map_err(|e| fail(&e))?;
        let saved = stream.read_timeout().map_err(|e| fail(&e))?;
        let driven = drive(&mut conn, stream, deadline);
        stream.set_read_timeout(saved).map_err(|e| fail(&e))?;
        let (rx, early) = driven.map_err(|e| fail(&e))?;
        let (secrets, kernel) = conn
            .dangerous_into_kernel_connection()
            .map_err(|e| fail(&e))?;
        TlsConn::new(kernel, secrets, rx, early).map_err(|e| fail(&e))
    }

    fn new(
        kernel: KernelConnection<ClientConnectionData>,
        secrets: ExtractedSecrets,
        mut rx: Vec<u8>,
        plain: Vec<u8>,
    ) -> Result<TlsConn, String> {
        let cs = kernel.negotiated_cipher_suite().suite();
        let suite = Suite::from_iana(u16::from(cs))
            .ok_or_else(|| format!("unsupported cipher suite {cs:?}"))?;
        let ExtractedSecrets {
            tx: (tx_seq, tx),
            rx: (rx_seq, rx_secrets),
        } = secrets;
        let tx_keys = traffic_keys(suite, tx)?;
        let rx_keys = traffic_keys(suite, rx_secrets)?;
        let rx_len = rx.len();
        rx.resize(rx_len.max(RX_BUF), 0);
        Ok(TlsConn {
            kernel,
            suite,
            sealer: RecordSealer::new(tx_keys.clone(), tx_seq),
            tx_keys,
            opener: RecordOpener::new(rx_keys, rx_seq),
            rx,
            rx_len,
            plain,
            plain_pos: 0,
            tx: Vec::new(),
            key_update_pending: false,
            rekey_after: REKEY_AFTER,
            eof: false,
        })
    }

    /// Version and suite, e.g. "TLS 1.3, TLS_AES_256_GCM_SHA384" (for the connect log line).
    pub(crate) fn describe(&self) -> String {
        let version = match self.suite.version() {
            Version::Tls13 => "TLS 1.3",
            Version::Tls12 => "TLS 1.2",
        };
        let cs = self.kernel.negotiated_cipher_suite().suite();
        // IANA's names (rustls spells the TLS 1.3 ones `TLS13_...`).
        let name = cs.as_str().unwrap_or("unknown suite");
        format!("{version}, {}", name.replacen("TLS13_", "TLS_", 1))
    }

    /// The sequence number of the next record this side seals.
    pub(crate) fn next_seq(&self) -> u64 {
        self.sealer.seq()
    }

    /// The write state the data plane needs to continue this connection's records.
    pub(crate) fn tx_state(&self) -> TxState {
        let key = self.tx_keys.key();
        let mut state = TxState {
            suite: self.suite,
            iana: u16::from(self.kernel.negotiated_cipher_suite().suite()),
            key: [0; 32],
            key_len: key.len(),
            iv: *self.tx_keys.iv(),
            seq: self.sealer.seq(),
        };
        state.key[..key.len()].copy_from_slice(key);
        state
    }

    /// Writes `plaintext` as application-data records of at most 16 KiB, in one `write_all`.
    /// A `KeyUpdate` the relay asked for is sent first (RFC 8446 section 4.6.3).
    pub(crate) fn write(&mut self, stream: &TcpStream, plaintext: &[u8]) -> io::Result<()> {
        self.flush_key_update(stream)?;
        self.write_records(stream, plaintext, MAX_PLAINTEXT)
            .map(drop)
    }

    /// The mirror write of a delegated send: `plaintext` sealed as records of exactly
    /// `record_plaintext` bytes (the last one shorter) from the current sequence number on,
    /// as the data plane sealed them, in one `write_all`. Returns the number of records.
    /// A `record_plaintext` of 0 or above 16384 is an error and writes nothing. A pending
    /// `KeyUpdate` is not sent here: the data plane sealed under the keys it was given.
    pub(crate) fn write_records(
        &mut self,
        stream: &TcpStream,
        plaintext: &[u8],
        record_plaintext: usize,
    ) -> io::Result<usize> {
        if !(1..=MAX_PLAINTEXT).contains(&record_plaintext) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS record size {record_plaintext} is not in 1..=16384"),
            ));
        }
        self.tx.clear();
        self.tx
            .resize(self.wire_len(plaintext.len(), record_plaintext), 0);
        let first_seq = self.sealer.seq();
        let (mut at, mut records) = (0, 0);
        for chunk in plaintext.chunks(record_plaintext) {
            match self.seal(at, chunk, content_type::APPLICATION_DATA) {
                Ok(n) => at += n,
                Err(e) => {
                    // Nothing was sent: those sequence numbers were not used on the wire.
                    self.sealer.set_seq(first_seq);
                    return Err(e);
                }
            }
            records += 1;
        }
        write_all(stream, &self.tx[..at])?;
        Ok(records)
    }

    /// Seals `plaintext` into `self.tx[at..]`; returns the record's length.
    fn seal(&mut self, at: usize, plaintext: &[u8], content_type: u8) -> io::Result<usize> {
        let start = at + self.sealer.plaintext_offset();
        self.tx[start..start + plaintext.len()].copy_from_slice(plaintext);
        self.sealer
            .seal_in_place(&mut self.tx[at..], plaintext.len(), content_type)
            .map_err(|e| io::Error::other(format!("TLS: {e}")))
    }

    /// Length on the wire of `plaintext_len` bytes sealed as records of `record_plaintext`
    /// bytes (clamped to 1..=16384).
    pub(crate) fn wire_len(&self, plaintext_len: usize, record_plaintext: usize) -> usize {
        let per = record_plaintext.clamp(1, MAX_PLAINTEXT);
        let records = plaintext_len.div_ceil(per);
        plaintext_len + records * self.sealer.overhead()
    }

    /// A blocking reader of the relay's application data (timeouts are the stream's).
    /// Post-handshake messages are handled inside; close_notify is the end of the stream; an
    /// alert or a record that fails to open is an error.
    pub(crate) fn reader<'a>(&'a mut self, stream: &'a TcpStream) -> impl Read + 'a {
        Reader { conn: self, stream }
    }

    /// For an idle connection: processes, without blocking, whatever records have arrived
    /// (session tickets, `KeyUpdate`). `Ok` if the connection is still usable.
    pub(crate) fn poll_idle(&mut self, stream: &TcpStream) -> Result<(), String> {
        const CLOSED: &str = "the relay closed the idle connection";
        const UNREQUESTED: &str = "the relay sent unrequested data on the idle connection";
        if self.plain_pos < self.plain.len() {
            return Err(UNREQUESTED.into());
        }
        if self.eof {
            return Err(CLOSED.into());
        }
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        let polled = loop {
            match self.process_record() {
                Ok(Some(Record::Data)) => break Err(UNREQUESTED.to_string()),
                Ok(Some(Record::Closed)) => break Err(CLOSED.to_string()),
                Ok(Some(Record::Handshake)) => continue,
                Ok(None) => {}
                Err(e) => break Err(e.to_string()),
            }
            match self.fill(stream) {
                Ok(0) => break Err(CLOSED.to_string()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e.to_string()),
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        polled
    }

    /// True when the relay asked for a `KeyUpdate` that has not been sent yet.
    #[cfg(test)]
    pub(crate) fn key_update_pending(&self) -> bool {
        self.key_update_pending
    }

    /// Sends the `KeyUpdate` the relay asked for, then switches to the next write keys
    /// (sequence 0). `Ok(false)` if none was pending. Re-arm with the new [`tx_state`].
    ///
    /// [`tx_state`]: TlsConn::tx_state
    pub(crate) fn flush_key_update(&mut self, stream: &TcpStream) -> io::Result<bool> {
        if !self.key_update_pending {
            return Ok(false);
        }
        let (_, secrets) = self
            .kernel
            .update_tx_secret()
            .map_err(|e| io::Error::other(format!("TLS KeyUpdate: {e}")))?;
        let next = traffic_keys(self.suite, secrets).map_err(io::Error::other)?;
        self.tx.clear();
        self.tx
            .resize(self.sealer.record_len(KEY_UPDATE_NOT_REQUESTED.len()), 0);
        let n = self.seal(0, &KEY_UPDATE_NOT_REQUESTED, content_type::HANDSHAKE)?;
        write_all(stream, &self.tx[..n])?;
        self.sealer.rekey(next.clone());
        self.tx_keys = next;
        self.key_update_pending = false;
        Ok(true)
    }

    /// Whether the write keys have sealed [`REKEY_AFTER`] records. rustls's kernel-offload
    /// API leaves counting to its user: past AES-GCM's confidentiality limit the connection
    /// must change keys (TLS 1.3: [`TlsConn::update_own_keys`]) or end (TLS 1.2).
    pub(crate) fn rekey_due(&self) -> bool {
        self.sealer.seq() >= self.rekey_after
    }

    /// TLS 1.3: sends a `KeyUpdate` of our own and moves to the next write keys (sequence 0);
    /// while the connection is the control plane's (BUSY), before it is armed again. An error
    /// for TLS 1.2, which has no `KeyUpdate`.
    pub(crate) fn update_own_keys(&mut self, stream: &TcpStream) -> io::Result<()> {
        if self.suite.version() != Version::Tls13 {
            return Err(io::Error::other("TLS 1.2 has no KeyUpdate"));
        }
        self.key_update_pending = true;
        self.flush_key_update(stream).map(drop)
    }

    /// Reads more ciphertext into `rx`; `Ok(0)` at the TCP end of stream.
    fn fill(&mut self, stream: &TcpStream) -> io::Result<usize> {
        loop {
            match (&mut &*stream).read(&mut self.rx[self.rx_len..]) {
                Ok(n) => {
                    self.rx_len += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens and handles the first record in `rx` if it is complete; `None` if more bytes are
    /// needed.
    fn process_record(&mut self) -> io::Result<Option<Record>> {
        let Some(len) = swqos_tls::record_len(&self.rx[..self.rx_len]) else {
            return Ok(None);
        };
        if len > MAX_RECORD {
            return Err(invalid("the relay sent an oversized TLS record"));
        }
        if self.rx_len < len {
            return Ok(None);
        }
        let opened = self
            .opener
            .open_in_place(&mut self.rx[..len])
            .map_err(|e| match e {
                swqos_tls::Error::Decrypt => invalid("TLS record failed to decrypt"),
                e => invalid(&format!("TLS record from the relay: {e}")),
            })?;
        let body = opened.plaintext;
        let record = match opened.content_type {
            content_type::APPLICATION_DATA => {
                if self.plain_pos == self.plain.len() {
                    self.plain.clear();
                    self.plain_pos = 0;
                }
                self.plain.extend_from_slice(&self.rx[body]);
                Record::Data
            }
            content_type::HANDSHAKE => {
                let mut msgs = body;
                while !msgs.is_empty() {
                    let (msg, used) =
                        PostHandshake::parse(&self.rx[msgs.clone()]).ok_or_else(|| {
                            invalid("unsupported TLS handshake record from the relay")
                        })?;
                    self.key_update_pending |=
                        post_handshake(&mut self.kernel, &mut self.opener, self.suite, msg)?;
                    msgs.start += used;
                }
                Record::Handshake
            }
            content_type::ALERT => match self.rx[body] {
                [_, 0] => {
                    self.eof = true;
                    Record::Closed
                }
                [_, desc] => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!(
                            "TLS alert from the relay: {:?}",
                            AlertDescription::from(desc)
                        ),
                    ))
                }
                _ => return Err(invalid("malformed TLS alert from the relay")),
            },
            t => {
                return Err(invalid(&format!(
                    "unexpected TLS record type {t} from the relay"
                )))
            }
        };
        self.rx.copy_within(len..self.rx_len, 0);
        self.rx_len -= len;
        Ok(Some(record))
    }

    /// `Read` for [`TlsConn::reader`].
    fn read_plain(&mut self, stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.plain_pos < self.plain.len() {
                let n = buf.len().min(self.plain.len() - self.plain_pos);
                buf[..n].copy_from_slice(&self.plain[self.plain_pos..self.plain_pos + n]);
                self.plain_pos += n;
                return Ok(n);
            }
            if self.eof {
                return Ok(0);
            }
            if self.process_record()?.is_some() {
                continue;
            }
            if self.fill(stream)? == 0 {
                self.eof = true;
                if self.rx_len > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the relay closed the connection in the middle of a TLS record",
                    ));
                }
            }
        }
    }
}

impl fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConn")
            .field("suite", &self.suite)
            .field("tx_seq", &self.sealer.seq())
            .field("rx_seq", &self.opener.seq())
            .finish_non_exhaustive()
    }
}

/// [`TlsConn::reader`].
struct Reader<'a> {
    conn: &'a mut TlsConn,
    stream: &'a TcpStream,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.read_plain(self.stream, buf)
    }
}

/// Handles one post-handshake message; `true` if the relay asked for a `KeyUpdate` back.
fn post_handshake(
    kernel: &mut KernelConnection<ClientConnectionData>,
    opener: &mut RecordOpener,
    suite: Suite,
    msg: PostHandshake<'_>,
) -> io::Result<bool> {
    match msg {
        // Only resumption needs tickets; one rustls cannot store is no reason to fail.
        PostHandshake::NewSessionTicket(body) => {
            let _ = kernel.handle_new_session_ticket(body);
        }
        PostHandshake::KeyUpdate { update_requested } => {
            let (seq, secrets) = kernel
                .update_rx_secret()
                .map_err(|e| invalid(&format!("TLS KeyUpdate from the relay: {e}")))?;
            opener.rekey(traffic_keys(suite, secrets).map_err(io::Error::other)?);
            debug_assert_eq!(seq, 0);
            return Ok(update_requested);
        }
        // TLS 1.2 HelloRequest: renegotiation is not supported, and ignoring it is allowed.
        PostHandshake::Other(0, _) if suite.version() == Version::Tls12 => {}
        PostHandshake::Other(t, _) => {
            return Err(invalid(&format!(
                "unexpected TLS handshake message {t} from the relay"
            )))
        }
    }
    Ok(false)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn write_all(stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    (&mut &*stream).write_all(bytes)
}

/// Record keys from rustls's secrets; rustls's `Iv` does not zeroize itself, so it is
/// overwritten here.
fn traffic_keys(
    suite: Suite,
    mut secrets: ConnectionTrafficSecrets,
) -> Result<TrafficKeys, String> {
    let keys = match &mut secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            let keys = TrafficKeys::new(suite, key.as_ref(), iv.as_ref());
            *iv = rustls::crypto::cipher::Iv::from([0; 12]);
            std::hint::black_box(&*iv);
            keys
        }
        _ => return Err("unsupported AEAD".into()),
    };
    keys.map_err(|e| format!("TLS keys: {e}"))
}

/// The handshake loop. Returns the bytes received after it and any application data rustls
/// decrypted on the way. Errors are reasons without the "TLS handshake" prefix.
fn drive(
    conn: &mut UnbufferedClientConnection,
    stream: &TcpStream,
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut incoming = vec![0u8; MAX_RECORD];
    let mut filled = 0;
    let mut outgoing = vec![0u8; 4096];
    let mut out_len = 0;
    let mut early = Vec::new();
    loop {
        let UnbufferedStatus { mut discard, state } =
            conn.process_tls_records(&mut incoming[..filled]);
        let mut read_more = false;
        match state {
            Err(e) => {
                send_alert(conn, stream);
                return Err(e.to_string());
            }
            Ok(ConnectionState::EncodeTlsData(mut enc)) => loop {
                match enc.encode(&mut outgoing[out_len..]) {
                    Ok(n) => {
                        out_len += n;
                        break;
                    }
                    Err(EncodeError::InsufficientSize(e)) => {
                        outgoing.resize(out_len + e.required_size, 0)
                    }
                    Err(e) => return Err(e.to_string()),
                }
            },
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                write_all(stream, &outgoing[..out_len]).map_err(|e| e.to_string())?;
                out_len = 0;
                transmit.done();
            }
            Ok(ConnectionState::BlockedHandshake) => read_more = true,
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(|e| e.to_string())?;
                    discard += record.discard;
                    early.extend_from_slice(record.payload);
                }
            }
            Ok(ConnectionState::WriteTraffic(_)) => {
                incoming.copy_within(discard..filled, 0);
                incoming.truncate(filled - discard);
                return Ok((incoming, early));
            }
            Ok(ConnectionState::PeerClosed | ConnectionState::Closed) => {
                return Err("the relay closed the connection".into())
            }
            Ok(other) => return Err(format!("unexpected state {other:?}")),
        }
        incoming.copy_within(discard..filled, 0);
        filled -= discard;
        if !read_more {
            continue;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        if filled == incoming.len() {
            if incoming.len() >= MAX_HANDSHAKE_BUF {
                return Err("handshake message too large".into());
            }
            incoming.resize(incoming.len() * 2, 0);
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        match (&mut &*stream).read(&mut incoming[filled..]) {
            Ok(0) => return Err("the relay closed the connection".into()),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Best effort: sends the alert rustls queued for a failed handshake.
fn send_alert(conn: &mut UnbufferedClientConnection, stream: &TcpStream) {
    let mut buf = [0u8; 64];
    if let Ok(ConnectionState::EncodeTlsData(mut enc)) = conn.process_tls_records(&mut []).state {
        if let Ok(n) = enc.encode(&mut buf) {
            let _ = write_all(stream, &buf[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa};
    use rustls::crypto::ring::cipher_suite as cs;
    use rustls::crypto::{ring, CryptoProvider};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned, SupportedCipherSuite};
    use std::net::{SocketAddr, TcpListener};
    use std::path::PathBuf;
    use std::sync::OnceLock;
    use std::thread::{self, JoinHandle};

    const SUITES: [(SupportedCipherSuite, &str); 6] = [
        (
            cs::TLS13_AES_128_GCM_SHA256,
            "TLS 1.3, TLS_AES_128_GCM_SHA256",
        ),
        (
            cs::TLS13_AES_256_GCM_SHA384,
            "TLS 1.3, TLS_AES_256_GCM_SHA384",
        ),
        (
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS 1.3, TLS_CHACHA20_POLY1305_SHA256",
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            "TLS 1.2, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            "TLS 1.2, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        ),
        (
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            "TLS 1.2, TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        ),
    ];
    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A CA and the relay.test certificate it signed.
    struct Pki {
        ca_pem: String,
        chain: Vec<CertificateDer<'static>>,
        key: Vec<u8>,
    }

    fn make_pki(tag: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, format!("swqos test CA {tag}"));
        let ca = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::new(vec!["relay.test".to_string()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        Pki {
            ca_pem: ca.pem(),
            chain: vec![leaf.der().clone()],
            key: key.serialize_der(),
        }
    }

    fn trusted() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| make_pki("trusted"))
    }

    fn untrusted() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(|| make_pki("untrusted"))
    }

    /// A file in the temp dir (removed by [`config`]).
    fn temp_file(contents: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("swqos-tls-test-{}-{n}.pem", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Settings that trust the test CA (through a `ca_files` entry).
    fn settings(server_name: &str) -> TlsSettings {
        TlsSettings {
            server_name: server_name.to_string(),
            ca_files: vec![temp_file(&trusted().ca_pem)],
            insecure_skip_verify: false,
        }
    }

    /// `client_config`, then the `ca_files` are removed (they are read only here).
    fn config(s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
        let config = client_config("test", s);
        for file in &s.ca_files {
            let _ = std::fs::remove_file(file);
        }
        config
    }

    type Server = StreamOwned<ServerConnection, TcpStream>;

    /// A rustls server config that negotiates exactly `suite`.
    fn server_config(pki: &Pki, suite: SupportedCipherSuite) -> Arc<ServerConfig> {
        let provider = CryptoProvider {
            cipher_suites: vec![suite],
            ..ring::default_provider()
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone()));
        let config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[suite.version()])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .unwrap();
        Arc::new(config)
    }

    /// A server on loopback that runs `script` on its one connection.
    fn serve(
        pki: &Pki,
        suite: SupportedCipherSuite,
        script: impl FnOnce(&mut Server) + Send + 'static,
    ) -> (SocketAddr, JoinHandle<()>) {
        serve_with(server_config(pki, suite), script)
    }

    fn serve_with(
        config: Arc<ServerConfig>,
        script: impl FnOnce(&mut Server) + Send + 'static,
    ) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
            let conn = ServerConnection::new(config).unwrap();
            script(&mut StreamOwned::new(conn, tcp));
        });
        (addr, server)
    }

    fn connect(addr: SocketAddr, s: &TlsSettings) -> (TcpStream, Result<TlsConn, String>) {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        let config = config(s).unwrap();
        let conn = TlsConn::handshake(&stream, config, &s.server_name, Instant::now() + TIMEOUT);
        (stream, conn)
    }

    /// Completes the server's handshake and sends what it queued (TLS 1.3 session tickets).
    fn finish_handshake(s: &mut Server) {
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        s.flush().unwrap();
    }

    fn expect_read(s: &mut impl Read, want: &[u8]) {
        let mut got = vec![0; want.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == want, "read {} bytes that differ", want.len());
    }

    fn pattern(len: u32, mul: u32) -> Vec<u8> {
        (0..len).map(|i| (i * mul) as u8).collect()
    }

    /// Polls until `done` or two seconds pass.
    fn poll_until(conn: &mut TlsConn, stream: &TcpStream, done: impl Fn(&TlsConn) -> bool) {
        let end = Instant::now() + Duration::from_secs(2);
        while !done(conn) {
            conn.poll_idle(stream).unwrap();
            assert!(Instant::now() < end, "timed out polling");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every suite: handshake, a request over several records, a response, the mirror write
    /// of a delegated send (byte-identical to the data plane's sealing), close_notify.
    #[test]
    fn round_trip_every_suite() {
        for (suite, description) in SUITES {
            let (request, response, delegated) =
                (pattern(40_000, 7), pattern(30_000, 13), pattern(5000, 11));
            let (req, resp, del) = (request.clone(), response.clone(), delegated.clone());
            let (addr, server) = serve(trusted(), suite, move |s| {
                expect_read(s, &req);
                s.write_all(&resp).unwrap();
                s.flush().unwrap();
                expect_read(s, &del);
                s.write_all(b"ok").unwrap();
                s.conn.send_close_notify();
                s.flush().unwrap();
            });
            let (stream, conn) = connect(addr, &settings("relay.test"));
            let mut conn = conn.unwrap();
            assert_eq!(conn.describe(), description);
            conn.write(&stream, &request).unwrap();
            expect_read(&mut conn.reader(&stream), &response);

            // What the data plane does with the published state, sealed here for comparison.
            let state = conn.tx_state();
            assert!(!format!("{state:?}").contains("key"));
            let keys = TrafficKeys::new(state.suite, state.key(), &state.iv).unwrap();
            let mut dataplane = RecordSealer::new(keys, state.seq);
            let mut records = Vec::new();
            for chunk in delegated.chunks(1400) {
                let mut record = vec![0; dataplane.record_len(chunk.len())];
                let at = dataplane.plaintext_offset();
                record[at..at + chunk.len()].copy_from_slice(chunk);
                let n = dataplane
                    .seal_in_place(&mut record, chunk.len(), content_type::APPLICATION_DATA)
                    .unwrap();
                records.extend_from_slice(&record[..n]);
            }
            for bad in [0, MAX_PLAINTEXT + 1] {
                assert!(conn.write_records(&stream, &delegated, bad).is_err());
            }
            assert_eq!(conn.tx_state().seq, state.seq);
            assert_eq!(conn.wire_len(delegated.len(), 1400), records.len());
            assert_eq!(conn.write_records(&stream, &delegated, 1400).unwrap(), 4);
            assert!(conn.tx == records, "{description}: mirror bytes differ");
            assert_eq!(conn.tx_state().seq, state.seq + 4);

            expect_read(&mut conn.reader(&stream), b"ok");
            assert_eq!(conn.reader(&stream).read(&mut [0; 16]).unwrap(), 0);
            assert!(conn.poll_idle(&stream).unwrap_err().contains("closed"));
            server.join().unwrap();
        }
    }

    /// The relay rekeys and asks for our KeyUpdate, during a response and while idle.
    #[test]
    fn key_update() {
        for (suite, _) in &SUITES[..3] {
            let (addr, server) = serve(trusted(), *suite, |s| {
                expect_read(s, b"req1");
                s.conn.refresh_traffic_keys().unwrap(); // KeyUpdate(update_requested)
                s.write_all(b"resp1").unwrap();
                s.flush().unwrap();
                expect_read(s, b"req2");
                s.write_all(b"resp2").unwrap();
                s.flush().unwrap();
                s.conn.refresh_traffic_keys().unwrap();
                s.flush().unwrap();
                expect_read(s, b"req3");
                s.write_all(b"resp3").unwrap();
                s.flush().unwrap();
            });
            let (stream, conn) = connect(addr, &settings("relay.test"));
            let mut conn = conn.unwrap();
            conn.write(&stream, b"req1").unwrap();
            expect_read(&mut conn.reader(&stream), b"resp1");
            assert!(conn.key_update_pending());
            assert!(conn.flush_key_update(&stream).unwrap());
            assert!(!conn.key_update_pending() && !conn.flush_key_update(&stream).unwrap());
            assert_eq!(conn.tx_state().seq, 0);
            // The server reads it under our next keys.
            conn.write(&stream, b"req2").unwrap();
            expect_read(&mut conn.reader(&stream), b"resp2");
            poll_until(&mut conn, &stream, |c| c.key_update_pending());
            conn.write(&stream, b"req3").unwrap(); // sends the KeyUpdate first
            assert_eq!(conn.tx_state().seq, 1);
            expect_read(&mut conn.reader(&stream), b"resp3");
            server.join().unwrap();
        }
    }

    /// After its record limit the connection moves to new write keys on its own (TLS 1.3) and
    /// the relay follows; TLS 1.2 cannot.
    #[test]
    fn record_limit_rekeys() {
        for (suite, _) in &SUITES[..3] {
            let (addr, server) = serve(trusted(), *suite, |s| {
                for (req, resp) in [
                    (b"req1", b"resp1"),
                    (b"req2", b"resp2"),
                    (b"req3", b"resp3"),
                ] {
                    expect_read(s, req);
                    s.write_all(resp).unwrap();
                    s.flush().unwrap();
                }
            });
            let (stream, conn) = connect(addr, &settings("relay.test"));
            let mut conn = conn.unwrap();
            conn.rekey_after = 2;
            let first_key = conn.tx_state().key;
            for (req, resp) in [(b"req1", b"resp1"), (b"req2", b"resp2")] {
                assert!(!conn.rekey_due());
                conn.write(&stream, req).unwrap();
                expect_read(&mut conn.reader(&stream), resp);
            }
            assert!(conn.rekey_due());
            conn.update_own_keys(&stream).unwrap();
            assert!(!conn.rekey_due());
            assert_eq!(conn.tx_state().seq, 0);
            assert_ne!(conn.tx_state().key, first_key);
            // The relay reads the next request under the new keys.
            conn.write(&stream, b"req3").unwrap();
            expect_read(&mut conn.reader(&stream), b"resp3");
            server.join().unwrap();
        }
        let (suite, _) = &SUITES[3];
        let (addr, server) = serve(trusted(), *suite, finish_handshake);
        let (stream, conn) = connect(addr, &settings("relay.test"));
        let mut conn = conn.unwrap();
        assert!(
            conn.update_own_keys(&stream).is_err(),
            "TLS 1.2 has no KeyUpdate"
        );
        drop(stream);
        server.join().unwrap();
    }

    /// TLS 1.3 session tickets arrive after the handshake, are consumed while idle and stored
    /// by rustls: the next connection with the same config resumes.
    #[test]
    fn session_tickets_while_idle() {
        let server_config = server_config(trusted(), cs::TLS13_AES_128_GCM_SHA256);
        let client_config = config(&settings("relay.test")).unwrap();
        for resumed in [false, true] {
            let (addr, server) = serve_with(server_config.clone(), move |s| {
                finish_handshake(s);
                let kind = s.conn.handshake_kind();
                assert_eq!(kind == Some(rustls::HandshakeKind::Resumed), resumed);
                expect_read(s, b"ping");
                s.write_all(b"pong").unwrap();
                s.flush().unwrap();
            });
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let deadline = Instant::now() + TIMEOUT;
            let mut conn =
                TlsConn::handshake(&stream, client_config.clone(), "relay.test", deadline).unwrap();
            // rustls servers send two tickets, in one record.
            poll_until(&mut conn, &stream, |c| c.opener.seq() == 1);
            conn.poll_idle(&stream).unwrap();
            conn.write(&stream, b"ping").unwrap();
            expect_read(&mut conn.reader(&stream), b"pong");
            server.join().unwrap();
        }
    }

    #[test]
    fn poll_idle_errors() {
        for (suite, _) in [SUITES[0], SUITES[3]] {
            // Data nobody asked for (TLS 1.3: it may arrive with the handshake).
            let (addr, server) = serve(trusted(), suite, |s| {
                s.write_all(b"surprise").unwrap();
                s.flush().unwrap();
                let _ = s.read(&mut [0; 1]);
            });
            let (stream, conn) = connect(addr, &settings("relay.test"));
            let mut conn = conn.unwrap();
            let end = Instant::now() + Duration::from_secs(2);
            let err = loop {
                match conn.poll_idle(&stream) {
                    Err(e) => break e,
                    Ok(()) => assert!(Instant::now() < end, "no error"),
                }
            };
            assert!(err.contains("unrequested data"), "{err}");
            drop(stream);
            server.join().unwrap();

            // The relay closes without close_notify.
            let (addr, server) = serve(trusted(), suite, finish_handshake);
            let (stream, conn) = connect(addr, &settings("relay.test"));
            let mut conn = conn.unwrap();
            server.join().unwrap();
            let end = Instant::now() + Duration::from_secs(2);
            let err = loop {
                match conn.poll_idle(&stream) {
                    Err(e) => break e,
                    Ok(()) => assert!(Instant::now() < end, "no error"),
                }
            };
            assert_eq!(err, "the relay closed the idle connection");
        }
    }

    #[test]
    fn certificate_checks() {
        let suite = cs::TLS13_AES_128_GCM_SHA256;
        // The client tells the server why (the alert rustls queued is sent).
        let ignore = |s: &mut Server| {
            let err = s.read(&mut [0; 1]).unwrap_err().to_string();
            assert!(err.contains("received fatal alert"), "{err}");
        };
        let (addr, server) = serve(untrusted(), suite, ignore);
        let err = connect(addr, &settings("relay.test")).1.unwrap_err();
        assert!(err.starts_with("TLS handshake with relay.test: "), "{err}");
        assert!(err.contains("UnknownIssuer"), "{err}");
        server.join().unwrap();

        let (addr, server) = serve(trusted(), suite, ignore);
        let err = connect(addr, &settings("other.test")).1.unwrap_err();
        assert!(err.contains("not valid for name \"other.test\""), "{err}");
        server.join().unwrap();

        let (addr, server) = serve(untrusted(), suite, |s| {
            expect_read(s, b"ping");
            s.write_all(b"pong").unwrap();
            s.flush().unwrap();
        });
        let insecure = TlsSettings {
            server_name: "relay.test".into(),
            ca_files: Vec::new(),
            insecure_skip_verify: true,
        };
        let (stream, conn) = connect(addr, &insecure);
        let mut conn = conn.unwrap();
        conn.write(&stream, b"ping").unwrap();
        expect_read(&mut conn.reader(&stream), b"pong");
        server.join().unwrap();
    }

    #[test]
    fn conn_is_send() {
        fn send<T: Send>() {}
        send::<TlsConn>();
    }

    #[test]
    fn handshake_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
            let _ = tcp.read(&mut [0; 4096]); // the ClientHello, then silence
            let _ = tcp.read(&mut [0; 1]); // until the client gives up
        });
        let stream = TcpStream::connect(addr).unwrap();
        let config = config(&settings("relay.test")).unwrap();
        let deadline = Instant::now() + Duration::from_millis(200);
        let err = TlsConn::handshake(&stream, config, "relay.test", deadline).unwrap_err();
        assert_eq!(err, "TLS handshake with relay.test: timed out");
        assert_eq!(stream.read_timeout().unwrap(), None, "timeout restored");
        drop(stream);
        server.join().unwrap();
    }

    #[test]
    fn config_errors() {
        let mut s = TlsSettings {
            server_name: "relay.test".into(),
            ca_files: vec![PathBuf::from("/nonexistent/ca.pem")],
            insecure_skip_verify: false,
        };
        let err = client_config("a", &s).unwrap_err();
        assert!(
            err.starts_with("lane a: ca_file /nonexistent/ca.pem: "),
            "{err}"
        );
        s.ca_files = vec![temp_file("not a certificate\n")];
        let err = config(&s).unwrap_err();
        assert!(err.ends_with("no PEM certificate in the file"), "{err}");
        s.server_name = "bad name".into();
        let err = client_config("a", &s).unwrap_err();
        assert!(err.contains("not a DNS name"), "{err}");
    }
}
