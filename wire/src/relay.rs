//! The HTTP/1.1 requests SWQOS relays accept, written straight into packet buffers.
//!
//! A [`RequestTemplate`] is built once per lane (it allocates then): everything of the request
//! that does not depend on the transaction is prebuilt. Per transaction, [`RequestTemplate::write`]
//! writes the request across one or more output chunks (the payload areas of the TCP segments'
//! mbufs) with no allocation and no intermediate buffer: the head, the decimal `Content-Length`,
//! the body prefix, the transaction (base64 by SIMD, or raw bytes), the body suffix.
//! (The base64 output slices are written in place; `encode`'s returned slice is that same
//! region, so it is ignored.)
//!
//! Request shapes follow the public sol-trade-sdk clients (see DESIGN.md's table). API tokens are
//! part of the prebuilt bytes; `Debug` never shows them.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

/// A relay provider: each has its own path, auth and body shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Jito block engine: JSON-RPC `sendTransaction`, token as `uuid` and `x-jito-auth`.
    Jito,
    /// bloXroute: `/api/v2/submit`, `Authorization` header.
    Bloxroute,
    /// NextBlock: `/api/v2/submit`, `Authorization` header.
    NextBlock,
    /// 0slot: raw bincode to `/txb?api-key=`.
    ZeroSlot,
    /// Temporal (Nozomi): JSON-RPC to `/?c=`.
    Temporal,
    /// Helius Sender: JSON-RPC to `/fast?api-key=` with `skipPreflight`.
    HeliusSender,
    /// Astralane: raw bincode to `/irisb?api-key=&method=sendTransaction`.
    Astralane,
    /// Node1: JSON-RPC to `/`, `api-key` header.
    Node1,
    /// FlashBlock: `/api/v2/submit-batch`, `Authorization` header.
    FlashBlock,
    /// Stellium: JSON-RPC to `/TOKEN`.
    Stellium,
    /// BlockRazor: bare base64 as `text/plain` to `/v2/sendTransaction?auth=&mode=fast`.
    BlockRazor,
    /// Lightspeed: JSON-RPC to the user's URL path.
    Lightspeed,
    /// Glaive (HTTP binary form): raw bincode to `/binary?api-key=` (the key is a UUID v4).
    Glaive,
    /// Lunar Lander (HelloMoon, HTTP binary form): raw bincode to `/send-bin`, `x-api-key`
    /// header.
    LunarLander,
}

impl Provider {
    /// Every provider, in documentation order.
    pub const ALL: [Provider; 14] = [
        Provider::Jito,
        Provider::Bloxroute,
        Provider::NextBlock,
        Provider::ZeroSlot,
        Provider::Temporal,
        Provider::HeliusSender,
        Provider::Astralane,
        Provider::Node1,
        Provider::FlashBlock,
        Provider::Stellium,
        Provider::BlockRazor,
        Provider::Lightspeed,
        Provider::Glaive,
        Provider::LunarLander,
    ];

    /// The name used in configuration files.
    pub const fn name(self) -> &'static str {
        match self {
            Provider::Jito => "jito",
            Provider::Bloxroute => "bloxroute",
            Provider::NextBlock => "nextblock",
            Provider::ZeroSlot => "0slot",
            Provider::Temporal => "temporal",
            Provider::HeliusSender => "helius",
            Provider::Astralane => "astralane",
            Provider::Node1 => "node1",
            Provider::FlashBlock => "flashblock",
            Provider::Stellium => "stellium",
            Provider::BlockRazor => "blockrazor",
            Provider::Lightspeed => "lightspeed",
            Provider::Glaive => "glaive",
            Provider::LunarLander => "lunarlander",
        }
    }

    /// Whether the provider needs an API token to build a request.
    pub const fn needs_token(self) -> bool {
        !matches!(self, Provider::Lightspeed)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = RelayError;
    fn from_str(s: &str) -> Result<Provider, RelayError> {
        Provider::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or(RelayError::UnknownProvider)
    }
}

/// Why a template could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayError {
    /// Not one of [`Provider::ALL`]'s names.
    UnknownProvider,
    /// The provider needs an API token and none was given.
    MissingToken,
    /// The token, host or path holds a character that cannot go into an HTTP request line or
    /// header (control characters, spaces, or non-ASCII).
    InvalidCharacter,
    /// The path must start with `/`.
    InvalidPath,
    /// A bundle holds 1..=[`MAX_BUNDLE_TXS`] transactions.
    BundleSize,
}

impl fmt::Display for RelayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RelayError::UnknownProvider => "unknown relay provider",
            RelayError::MissingToken => "this provider needs an API token",
            RelayError::InvalidCharacter => {
                "token, host or path contains a character not allowed in an HTTP request"
            }
            RelayError::InvalidPath => "path must start with '/'",
            RelayError::BundleSize => "a Jito bundle holds 1 to 5 transactions",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for RelayError {}

/// Where a lane's requests go.
#[derive(Clone, Copy)]
pub struct Endpoint<'a> {
    /// The `Host` header value (`name` or `name:port` for a non-default port).
    pub host: &'a str,
    /// Path override (Lightspeed's URL path, or a relay's non-standard path); `None` uses the
    /// provider's own.
    pub path: Option<&'a str>,
    /// API token (never logged).
    pub token: Option<&'a str>,
}

/// How the transaction appears in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    /// Standard base64 with padding.
    Base64,
    /// The bincode bytes as they are.
    Raw,
}

const JSONRPC_PREFIX: &str = r#"{"id":1,"jsonrpc":"2.0","method":"sendTransaction","params":[""#;

/// Where a provider wants the API token.
#[derive(Clone, Copy)]
enum TokenAt {
    /// A query parameter.
    Query(&'static str),
    /// A header.
    Header(&'static str),
    /// Both (Jito: `?uuid=` and `x-jito-auth`).
    QueryAndHeader(&'static str, &'static str),
    /// The path itself (Stellium: `/TOKEN`).
    Path,
    /// Nowhere (Lightspeed: the user's URL carries it).
    Nowhere,
}

/// One provider's request shape (from the public sol-trade-sdk clients; DESIGN.md's table).
struct Shape {
    path: &'static str,
    token: TokenAt,
    /// Fixed query parameters after the token (`&...`).
    query_suffix: &'static str,
    content_type: &'static str,
    body_prefix: &'static str,
    body_suffix: &'static str,
    encoding: BodyEncoding,
}

const JSON: &str = "application/json";
const BASE64_OPTIONS: &str = r#"",{"encoding":"base64"}]}"#;

impl Shape {
    /// A JSON-RPC `sendTransaction` body, base64, with `suffix` closing its params.
    fn jsonrpc(token: TokenAt, path: &'static str, suffix: &'static str) -> Shape {
        Shape {
            path,
            token,
            query_suffix: "",
            content_type: JSON,
            body_prefix: JSONRPC_PREFIX,
            body_suffix: suffix,
            encoding: BodyEncoding::Base64,
        }
    }

    /// The raw transaction bytes as the body.
    fn raw(token: TokenAt, path: &'static str, query_suffix: &'static str) -> Shape {
        Shape {
            path,
            token,
            query_suffix,
            content_type: "application/octet-stream",
            body_prefix: "",
            body_suffix: "",
            encoding: BodyEncoding::Raw,
        }
    }

    /// bloXroute's and NextBlock's `/api/v2/submit` body, with `suffix` after the content.
    fn submit(suffix: &'static str) -> Shape {
        Shape {
            path: "/api/v2/submit",
            token: TokenAt::Header("Authorization"),
            query_suffix: "",
            content_type: JSON,
            body_prefix: r#"{"transaction":{"content":""#,
            body_suffix: suffix,
            encoding: BodyEncoding::Base64,
        }
    }

    fn of(p: Provider) -> Shape {
        let (jsonrpc, raw, submit) = (Shape::jsonrpc, Shape::raw, Shape::submit);
        match p {
            Provider::Jito => jsonrpc(
                TokenAt::QueryAndHeader("uuid", "x-jito-auth"),
                "/api/v1/transactions",
                BASE64_OPTIONS,
            ),
            Provider::Bloxroute => {
                submit(r#""},"frontRunningProtection":false,"useStakedRPCs":true}"#)
            }
            Provider::NextBlock => submit(r#""},"frontRunningProtection":false}"#),
            Provider::ZeroSlot => raw(TokenAt::Query("api-key"), "/txb", ""),
            Provider::Temporal => jsonrpc(TokenAt::Query("c"), "/", BASE64_OPTIONS),
            Provider::HeliusSender => jsonrpc(
                TokenAt::Query("api-key"),
                "/fast",
                r#"",{"encoding":"base64","skipPreflight":true,"maxRetries":0}]}"#,
            ),
            Provider::Astralane => raw(
                TokenAt::Query("api-key"),
                "/irisb",
                "&method=sendTransaction",
            ),
            Provider::Node1 => jsonrpc(
                TokenAt::Header("api-key"),
                "/",
                r#"",{"encoding":"base64","skipPreflight":true}]}"#,
            ),
            Provider::FlashBlock => Shape {
                path: "/api/v2/submit-batch",
                token: TokenAt::Header("Authorization"),
                query_suffix: "",
                content_type: JSON,
                body_prefix: r#"{"transactions":[""#,
                body_suffix: r#""]}"#,
                encoding: BodyEncoding::Base64,
            },
            Provider::Stellium => jsonrpc(TokenAt::Path, "/", BASE64_OPTIONS),
            Provider::BlockRazor => Shape {
                path: "/v2/sendTransaction",
                token: TokenAt::Query("auth"),
                query_suffix: "&mode=fast",
                content_type: "text/plain",
                body_prefix: "",
                body_suffix: "",
                encoding: BodyEncoding::Base64,
            },
            Provider::Lightspeed => jsonrpc(
                TokenAt::Nowhere,
                "/",
                r#"",{"encoding":"base64","skipPreflight":true,"preflightCommitment":"processed","maxRetries":0}]}"#,
            ),
            // No `mev-protect=true`: sol-trade-sdk adds it only when MEV protection is asked for.
            Provider::Glaive => raw(TokenAt::Query("api-key"), "/binary", ""),
            Provider::LunarLander => raw(TokenAt::Header("x-api-key"), "/send-bin", ""),
        }
    }
}

/// A lane's request with everything but the transaction prebuilt.
#[derive(Clone)]
pub struct RequestTemplate {
    provider: Provider,
    /// Request line and headers, ending with `Content-Length: `.
    head: Vec<u8>,
    body_prefix: Vec<u8>,
    body_suffix: Vec<u8>,
    encoding: BodyEncoding,
}

impl fmt::Debug for RequestTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The head holds the token: show only the provider and sizes.
        f.debug_struct("RequestTemplate")
            .field("provider", &self.provider)
            .field("head_len", &self.head.len())
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// Characters allowed verbatim in a path or query value: RFC 3986 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `s` percent-encoded for a query value or path segment.
fn push_encoded(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if is_unreserved(b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
    }
}

/// Visible ASCII only: nothing that could end a header line or the request line.
fn is_header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

impl RequestTemplate {
    /// Builds the template for `provider` at `endpoint`.
    pub fn new(provider: Provider, endpoint: Endpoint<'_>) -> Result<RequestTemplate, RelayError> {
        let token = match endpoint.token {
            Some(t) if !is_header_safe(t) => return Err(RelayError::InvalidCharacter),
            Some(t) => t,
            None if provider.needs_token() => return Err(RelayError::MissingToken),
            None => "",
        };
        if !is_header_safe(endpoint.host) {
            return Err(RelayError::InvalidCharacter);
        }
        if let Some(p) = endpoint.path {
            if !p.starts_with('/') {
                return Err(RelayError::InvalidPath);
            }
            if !is_header_safe(p) {
                return Err(RelayError::InvalidCharacter);
            }
        }

        // Request target: the provider's path with the token where the provider wants it.
        let shape = Shape::of(provider);
        let mut target = Vec::new();
        match (shape.token, endpoint.path) {
            (TokenAt::Path, None) => {
                target.push(b'/');
                push_encoded(&mut target, token);
            }
            (_, Some(p)) => target.extend_from_slice(p.as_bytes()),
            (_, None) => target.extend_from_slice(shape.path.as_bytes()),
        }
        if let TokenAt::Query(key) | TokenAt::QueryAndHeader(key, _) = shape.token {
            target.push(b'?');
            target.extend_from_slice(key.as_bytes());
            target.push(b'=');
            push_encoded(&mut target, token);
        }
        target.extend_from_slice(shape.query_suffix.as_bytes());
        let auth_header = match shape.token {
            TokenAt::Header(name) | TokenAt::QueryAndHeader(_, name) => Some((name, token)),
            _ => None,
        };
        let (content_type, body_prefix, body_suffix, encoding) = (
            shape.content_type,
            shape.body_prefix,
            shape.body_suffix,
            shape.encoding,
        );

        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"POST ");
        head.extend_from_slice(&target);
        head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        head.extend_from_slice(endpoint.host.as_bytes());
        head.extend_from_slice(b"\r\nContent-Type: ");
        head.extend_from_slice(content_type.as_bytes());
        head.extend_from_slice(b"\r\n");
        if let Some((name, value)) = auth_header {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"Content-Length: ");
        Ok(RequestTemplate {
            provider,
            head,
            body_prefix: body_prefix.as_bytes().to_vec(),
            body_suffix: body_suffix.as_bytes().to_vec(),
            encoding,
        })
    }

    /// The provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// A fingerprint of everything in the template but the transaction (provider, request line,
    /// headers including the token, body framing): two processes that build a lane's requests
    /// compare fingerprints to know they write the same bytes for the same transaction. Never
    /// zero. It covers the token, so it is kept where the token may be kept.
    pub fn fingerprint(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&[self.provider as u8, self.encoding as u8]);
        for part in [&self.head, &self.body_prefix, &self.body_suffix] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.digest().max(1)
    }

    /// How the transaction is carried.
    pub fn encoding(&self) -> BodyEncoding {
        self.encoding
    }

    /// Body bytes for a transaction of `tx_len` bytes.
    pub fn body_len(&self, tx_len: usize) -> usize {
        let tx = match self.encoding {
            BodyEncoding::Base64 => base64_len(tx_len),
            BodyEncoding::Raw => tx_len,
        };
        self.body_prefix.len() + tx + self.body_suffix.len()
    }

    /// Whole request bytes for a transaction of `tx_len` bytes.
    pub fn len(&self, tx_len: usize) -> usize {
        let body = self.body_len(tx_len);
        self.head.len() + decimal_len(body) + 4 + body
    }

    /// Writes the request for `tx` across `chunks`, in order, and returns the bytes written
    /// (`self.len(tx.len())`), or `None` (having written nothing useful) when the chunks hold
    /// fewer bytes than that.
    pub fn write(&self, tx: &[u8], chunks: &mut [&mut [u8]]) -> Option<usize> {
        let total = self.len(tx.len());
        if chunks.iter().map(|c| c.len()).sum::<usize>() < total {
            return None;
        }
        let mut w = ChunkWriter::new(chunks);
        w.put(&self.head);
        w.put_decimal(self.body_len(tx.len()));
        w.put(b"\r\n\r\n");
        w.put(&self.body_prefix);
        match self.encoding {
            BodyEncoding::Base64 => w.put_base64(tx),
            BodyEncoding::Raw => w.put(tx),
        }
        w.put(&self.body_suffix);
        debug_assert_eq!(w.written, total);
        Some(w.written)
    }
}

/// The digest of a request's plaintext, given as the pieces it was written in (in order): the
/// data plane reports it with every delegated send, and the control plane compares it with the
/// digest of the request it is about to write (XXH3-64; no allocation).
pub fn request_digest(pieces: &[&[u8]]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in pieces {
        h.update(p);
    }
    h.digest()
}

/// Most transactions a Jito bundle may hold.
pub const MAX_BUNDLE_TXS: usize = 5;

/// The whole HTTP/1.1 request for a Jito bundle of `txs` (1..=[`MAX_BUNDLE_TXS`] signed
/// transactions, in bundle order) at `endpoint`: `POST /api/v1/bundles?uuid=TOKEN` with
/// `x-jito-auth: TOKEN` (the same auth as [`Provider::Jito`]'s transactions) and the JSON-RPC
/// body `{"id":1,"jsonrpc":"2.0","method":"sendBundle","params":[["<b64>",...],{"encoding":"base64"}]}`.
///
/// A path override ending in `/transactions` (a block engine's transaction path) has that last
/// segment replaced by `/bundles`; any other override is ignored and the default path is used.
/// This allocates: bundles are not on the per-packet path.
pub fn jito_bundle_request(endpoint: Endpoint<'_>, txs: &[&[u8]]) -> Result<Vec<u8>, RelayError> {
    if txs.is_empty() || txs.len() > MAX_BUNDLE_TXS {
        return Err(RelayError::BundleSize);
    }
    // Validates host, token and path exactly as a transaction lane's template does.
    RequestTemplate::new(Provider::Jito, endpoint)?;
    let token = endpoint.token.ok_or(RelayError::MissingToken)?;
    let path = endpoint
        .path
        .and_then(|p| p.strip_suffix("/transactions"))
        .map_or_else(
            || String::from("/api/v1/bundles"),
            |base| alloc::format!("{base}/bundles"),
        );
    let mut body =
        Vec::with_capacity(96 + txs.iter().map(|t| base64_len(t.len()) + 3).sum::<usize>());
    body.extend_from_slice(br#"{"id":1,"jsonrpc":"2.0","method":"sendBundle","params":[["#);
    for (i, tx) in txs.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.push(b'"');
        let start = body.len();
        body.resize(start + base64_len(tx.len()), 0);
        let _ = base64_simd::STANDARD.encode(tx, base64_simd::Out::from_slice(&mut body[start..]));
        body.push(b'"');
    }
    body.extend_from_slice(br#"],{"encoding":"base64"}]}"#);

    let mut req = Vec::with_capacity(256 + body.len());
    req.extend_from_slice(b"POST ");
    req.extend_from_slice(path.as_bytes());
    req.extend_from_slice(b"?uuid=");
    push_encoded(&mut req, token);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(endpoint.host.as_bytes());
    req.extend_from_slice(b"\r\nContent-Type: application/json\r\nx-jito-auth: ");
    req.extend_from_slice(token.as_bytes());
    req.extend_from_slice(b"\r\nContent-Length: ");
    req.extend_from_slice(alloc::format!("{}", body.len()).as_bytes());
    req.extend_from_slice(b"\r\n\r\n");
    req.extend_from_slice(&body);
    Ok(req)
}

/// Padded base64 length of `n` bytes.
pub const fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Sequential writer over a list of output chunks. Callers check the total size first; a write
/// past the end is dropped rather than panicking.
struct ChunkWriter<'a, 'b> {
    chunks: &'a mut [&'b mut [u8]],
    chunk: usize,
    pos: usize,
    written: usize,
}

impl<'a, 'b> ChunkWriter<'a, 'b> {
    fn new(chunks: &'a mut [&'b mut [u8]]) -> ChunkWriter<'a, 'b> {
        ChunkWriter {
            chunks,
            chunk: 0,
            pos: 0,
            written: 0,
        }
    }

    /// The unwritten rest of the current chunk, moving past full ones.
    fn space(&mut self) -> Option<&mut [u8]> {
        while self.chunk < self.chunks.len() && self.pos == self.chunks[self.chunk].len() {
            self.chunk += 1;
            self.pos = 0;
        }
        let pos = self.pos;
        self.chunks.get_mut(self.chunk).map(|c| &mut c[pos..])
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.written += n;
    }

    fn put(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(space) = self.space() else { return };
            let n = space.len().min(data.len());
            space[..n].copy_from_slice(&data[..n]);
            self.advance(n);
            data = &data[n..];
        }
    }

    fn put_decimal(&mut self, n: usize) {
        let mut digits = [0u8; 20];
        let len = decimal_len(n);
        let mut v = n;
        for d in digits[..len].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.put(&digits[..len]);
    }

    /// Base64 straight into the chunks: whole 3-byte groups that fit the current chunk are
    /// encoded in place by SIMD; the one group that straddles a chunk boundary goes through a
    /// 4-byte stack buffer.
    fn put_base64(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let Some(space) = self.space() else { return };
            if space.len() >= base64_len(data.len()) {
                let n = base64_len(data.len());
                let _ = base64_simd::STANDARD
                    .encode(data, base64_simd::Out::from_slice(&mut space[..n]));
                self.advance(n);
                return;
            }
            let groups = space.len() / 4;
            if groups > 0 {
                let take = groups * 3;
                let _ = base64_simd::STANDARD.encode(
                    &data[..take],
                    base64_simd::Out::from_slice(&mut space[..groups * 4]),
                );
                self.advance(groups * 4);
                data = &data[take..];
            }
            // Fewer than 4 bytes left in this chunk: one group across the boundary.
            let take = data.len().min(3);
            let mut quad = [0u8; 4];
            let _ = base64_simd::STANDARD
                .encode(&data[..take], base64_simd::Out::from_slice(&mut quad));
            self.put(&quad);
            data = &data[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    fn endpoint(token: Option<&str>) -> Endpoint<'_> {
        Endpoint {
            host: "relay.example:8080",
            path: None,
            token,
        }
    }

    fn request(p: Provider, tx: &[u8]) -> String {
        let t = RequestTemplate::new(p, endpoint(Some("tok-1"))).unwrap();
        let mut buf = vec![0u8; t.len(tx.len())];
        let n = t.write(tx, &mut [&mut buf[..]]).unwrap();
        assert_eq!(n, buf.len());
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn fingerprints_tell_templates_apart_and_digests_ignore_how_bytes_are_cut() {
        let a = RequestTemplate::new(Provider::Jito, endpoint(Some("tok-1"))).unwrap();
        let b = RequestTemplate::new(Provider::Jito, endpoint(Some("tok-2"))).unwrap();
        let c = RequestTemplate::new(Provider::Jito, endpoint(Some("tok-1"))).unwrap();
        assert_eq!(a.fingerprint(), c.fingerprint());
        assert_ne!(
            a.fingerprint(),
            b.fingerprint(),
            "the token is part of the request"
        );
        let n1 = RequestTemplate::new(Provider::Node1, endpoint(Some("tok-1"))).unwrap();
        assert_ne!(a.fingerprint(), n1.fingerprint());

        let tx = [7u8; 300];
        let mut whole = vec![0u8; a.len(tx.len())];
        a.write(&tx, &mut [&mut whole[..]]).unwrap();
        let (x, y) = whole.split_at(100);
        assert_eq!(request_digest(&[&whole]), request_digest(&[x, y]));
        let mut other = whole.clone();
        other[whole.len() - 5] ^= 1;
        assert_ne!(request_digest(&[&whole]), request_digest(&[&other]));
    }

    #[test]
    fn jito_request_is_exact() {
        let r = request(Provider::Jito, &[1, 2, 3, 4]);
        let body = r#"{"id":1,"jsonrpc":"2.0","method":"sendTransaction","params":["AQIDBA==",{"encoding":"base64"}]}"#;
        let want = alloc::format!(
            "POST /api/v1/transactions?uuid=tok-1 HTTP/1.1\r\nHost: relay.example:8080\r\nContent-Type: application/json\r\nx-jito-auth: tok-1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(r, want);
    }

    #[test]
    fn glaive_and_lunar_lander_requests_are_exact() {
        // sol-trade-sdk src/swqos/glaive.rs (build_binary_url, send_transaction_impl) and
        // src/swqos/lunarlander.rs (send_transaction_impl): raw bincode, octet-stream.
        let tx = [0xFFu8, 0, 7];
        let key = "00112233-4455-4677-8899-aabbccddeeff";
        for (p, want_head) in [
            (
                Provider::Glaive,
                alloc::format!(
                    "POST /binary?api-key={key} HTTP/1.1\r\nHost: relay.example:8080\r\nContent-Type: application/octet-stream\r\nContent-Length: 3\r\n\r\n"
                ),
            ),
            (
                Provider::LunarLander,
                alloc::format!(
                    "POST /send-bin HTTP/1.1\r\nHost: relay.example:8080\r\nContent-Type: application/octet-stream\r\nx-api-key: {key}\r\nContent-Length: 3\r\n\r\n"
                ),
            ),
        ] {
            let t = RequestTemplate::new(p, endpoint(Some(key))).unwrap();
            assert_eq!(t.encoding(), BodyEncoding::Raw);
            let mut buf = vec![0u8; t.len(tx.len())];
            t.write(&tx, &mut [&mut buf[..]]).unwrap();
            let mut want = want_head.into_bytes();
            want.extend_from_slice(&tx);
            assert_eq!(buf, want, "{p}");
            assert!(p.needs_token());
            assert_eq!(
                RequestTemplate::new(p, endpoint(None)).err(),
                Some(RelayError::MissingToken),
                "{p}"
            );
        }
        assert_eq!("glaive".parse::<Provider>(), Ok(Provider::Glaive));
        assert_eq!("lunarlander".parse::<Provider>(), Ok(Provider::LunarLander));
        // A path override replaces the provider's path; the token stays where it goes.
        let t = RequestTemplate::new(
            Provider::Glaive,
            Endpoint {
                host: "h",
                path: Some("/eu/binary"),
                token: Some("k/1"),
            },
        )
        .unwrap();
        let mut buf = vec![0u8; t.len(0)];
        t.write(&[], &mut [&mut buf[..]]).unwrap();
        assert!(buf.starts_with(b"POST /eu/binary?api-key=k%2F1 HTTP/1.1\r\n"));
    }

    #[test]
    fn every_provider_has_its_shape() {
        let tx = [0xFFu8, 0, 7];
        let cases: [(Provider, &str, &str); 14] = [
            (Provider::Jito, "POST /api/v1/transactions?uuid=tok-1 ", "\"params\":[\"/wAH\",{\"encoding\":\"base64\"}]}"),
            (Provider::Bloxroute, "POST /api/v2/submit ", "{\"transaction\":{\"content\":\"/wAH\"},\"frontRunningProtection\":false,\"useStakedRPCs\":true}"),
            (Provider::NextBlock, "POST /api/v2/submit ", "{\"transaction\":{\"content\":\"/wAH\"},\"frontRunningProtection\":false}"),
            (Provider::ZeroSlot, "POST /txb?api-key=tok-1 ", "\r\n\r\n\u{FFFD}\0\u{7}"),
            (Provider::Temporal, "POST /?c=tok-1 ", "[\"/wAH\",{\"encoding\":\"base64\"}]}"),
            (Provider::HeliusSender, "POST /fast?api-key=tok-1 ", "{\"encoding\":\"base64\",\"skipPreflight\":true,\"maxRetries\":0}]}"),
            (Provider::Astralane, "POST /irisb?api-key=tok-1&method=sendTransaction ", "\r\n\r\n\u{FFFD}\0\u{7}"),
            (Provider::Node1, "POST / ", "{\"encoding\":\"base64\",\"skipPreflight\":true}]}"),
            (Provider::FlashBlock, "POST /api/v2/submit-batch ", "{\"transactions\":[\"/wAH\"]}"),
            (Provider::Stellium, "POST /tok-1 ", "[\"/wAH\",{\"encoding\":\"base64\"}]}"),
            (Provider::BlockRazor, "POST /v2/sendTransaction?auth=tok-1&mode=fast ", "\r\n\r\n/wAH"),
            (Provider::Lightspeed, "POST / ", "\"preflightCommitment\":\"processed\",\"maxRetries\":0}]}"),
            (Provider::Glaive, "POST /binary?api-key=tok-1 ", "\r\n\r\n\u{FFFD}\0\u{7}"),
            (Provider::LunarLander, "POST /send-bin ", "\r\n\r\n\u{FFFD}\0\u{7}"),
        ];
        for (p, start, end) in cases {
            let t = RequestTemplate::new(p, endpoint(Some("tok-1"))).unwrap();
            let mut buf = vec![0u8; t.len(tx.len())];
            t.write(&tx, &mut [&mut buf[..]]).unwrap();
            let r = String::from_utf8_lossy(&buf);
            assert!(r.starts_with(start), "{p}: {r}");
            assert!(r.ends_with(end), "{p}: {r}");
            // Content-Length matches the body.
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            let cl: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(cl, buf.len() - head.len() - 4, "{p}");
            let _ = body;
            // Auth headers where the provider wants them.
            let header = match p {
                Provider::Jito => Some("x-jito-auth: tok-1"),
                Provider::Bloxroute | Provider::NextBlock | Provider::FlashBlock => {
                    Some("Authorization: tok-1")
                }
                Provider::Node1 => Some("api-key: tok-1"),
                Provider::LunarLander => Some("x-api-key: tok-1"),
                _ => None,
            };
            if let Some(h) = header {
                assert!(head.contains(h), "{p}: {head}");
            }
            assert_eq!(p.name().parse::<Provider>(), Ok(p));
        }
    }

    #[test]
    fn splitting_across_chunks_gives_the_same_bytes() {
        let tx: Vec<u8> = (0..1232u32).map(|i| (i * 7 + 3) as u8).collect();
        for p in [
            Provider::Jito,
            Provider::ZeroSlot,
            Provider::BlockRazor,
            Provider::LunarLander,
        ] {
            let t = RequestTemplate::new(p, endpoint(Some("k"))).unwrap();
            for len in [0usize, 1, 2, 3, 100, 1231, 1232] {
                let tx = &tx[..len];
                let total = t.len(len);
                let mut whole = vec![0u8; total];
                t.write(tx, &mut [&mut whole[..]]).unwrap();
                for cut1 in (0..total).step_by(37).chain([1, 2, 3, total - 1]) {
                    for cut2 in [cut1, cut1 + 1, cut1 + 5, total] {
                        let cut2 = cut2.clamp(cut1, total);
                        let mut buf = vec![0u8; total];
                        let (a, rest) = buf.split_at_mut(cut1);
                        let (b, c) = rest.split_at_mut(cut2 - cut1);
                        assert_eq!(t.write(tx, &mut [a, b, c]), Some(total));
                        assert_eq!(buf, whole, "{p} len {len} cuts {cut1},{cut2}");
                    }
                }
            }
        }
    }

    #[test]
    fn base64_matches_a_reference() {
        use base64::Engine;
        let tx: Vec<u8> = (0..1232u32).map(|i| (i * 31 + 11) as u8).collect();
        let t = RequestTemplate::new(Provider::BlockRazor, endpoint(Some("k"))).unwrap();
        let mut buf = vec![0u8; t.len(tx.len())];
        t.write(&tx, &mut [&mut buf[..]]).unwrap();
        let want = base64::engine::general_purpose::STANDARD.encode(&tx);
        assert_eq!(want.len(), 1644);
        assert!(buf.ends_with(want.as_bytes()));
    }

    #[test]
    fn jito_bundle_request_is_exact() {
        let r =
            jito_bundle_request(endpoint(Some("tok/1")), &[&[1, 2, 3, 4], &[0xFF, 0, 7]]).unwrap();
        let body = r#"{"id":1,"jsonrpc":"2.0","method":"sendBundle","params":[["AQIDBA==","/wAH"],{"encoding":"base64"}]}"#;
        let want = alloc::format!(
            "POST /api/v1/bundles?uuid=tok%2F1 HTTP/1.1\r\nHost: relay.example:8080\r\nContent-Type: application/json\r\nx-jito-auth: tok/1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(String::from_utf8(r).unwrap(), want);
        // A transaction-path override maps to its bundle path.
        let r = jito_bundle_request(
            Endpoint {
                host: "h",
                path: Some("/x/api/v1/transactions"),
                token: Some("t"),
            },
            &[&[1]],
        )
        .unwrap();
        assert!(r.starts_with(b"POST /x/api/v1/bundles?uuid=t HTTP/1.1\r\n"));
    }

    #[test]
    fn jito_bundle_size_and_endpoint_are_checked() {
        let tx: &[u8] = &[1, 2, 3];
        assert_eq!(
            jito_bundle_request(endpoint(Some("k")), &[tx; 6]),
            Err(RelayError::BundleSize)
        );
        assert_eq!(
            jito_bundle_request(endpoint(Some("k")), &[]),
            Err(RelayError::BundleSize)
        );
        assert!(jito_bundle_request(endpoint(Some("k")), &[tx; 5]).is_ok());
        assert_eq!(
            jito_bundle_request(endpoint(None), &[tx]),
            Err(RelayError::MissingToken)
        );
        assert_eq!(
            jito_bundle_request(endpoint(Some("a b")), &[tx]),
            Err(RelayError::InvalidCharacter)
        );
    }

    #[test]
    fn too_small_output_is_refused() {
        let t = RequestTemplate::new(Provider::Jito, endpoint(Some("k"))).unwrap();
        let mut buf = vec![0u8; t.len(10) - 1];
        assert_eq!(t.write(&[0; 10], &mut [&mut buf[..]]), None);
    }

    #[test]
    fn bad_tokens_hosts_and_paths_are_refused_and_tokens_never_shown() {
        let e = |token, host, path| {
            RequestTemplate::new(Provider::Jito, Endpoint { host, path, token }).err()
        };
        assert_eq!(e(None, "h", None), Some(RelayError::MissingToken));
        assert_eq!(
            e(Some("a\r\nX: y"), "h", None),
            Some(RelayError::InvalidCharacter)
        );
        assert_eq!(
            e(Some("a b"), "h", None),
            Some(RelayError::InvalidCharacter)
        );
        assert_eq!(
            e(Some("t"), "h\n", None),
            Some(RelayError::InvalidCharacter)
        );
        assert_eq!(e(Some("t"), "h", Some("x")), Some(RelayError::InvalidPath));
        assert!(RequestTemplate::new(Provider::Lightspeed, endpoint(None)).is_ok());
        let t = RequestTemplate::new(Provider::Jito, endpoint(Some("SECRET-token"))).unwrap();
        assert!(!alloc::format!("{t:?}").contains("SECRET"));
        // Query tokens are percent-encoded.
        let t = RequestTemplate::new(Provider::ZeroSlot, endpoint(Some("a/b&c=d"))).unwrap();
        let mut buf = vec![0u8; t.len(0)];
        t.write(&[], &mut [&mut buf[..]]).unwrap();
        assert!(String::from_utf8(buf)
            .unwrap()
            .starts_with("POST /txb?api-key=a%2Fb%26c%3Dd "));
    }
}
