//! What `mock_relay.py` checks and answers, function for function (`classify`, `route`,
//! `check_auth`, `check_shape`, `extract_tx`, `extract_bundle`, `success`, `failure`), with the
//! same reason strings.

use crate::py::{self, Json, LoadError, PyStr};

/// The body a provider expects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// JSON-RPC `sendTransaction` with fixed config.
    JsonRpc,
    /// `{"transaction":{"content":B64}, fixed...}`.
    Submit,
    /// The transaction bytes.
    Raw,
    /// `{"transactions":[B64]}`.
    Batch,
    /// The base64 text alone.
    B64,
    /// Jito's JSON-RPC `sendBundle`.
    Bundle,
}

/// A fixed JSON parameter of a body.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fixed {
    Str(&'static str),
    Bool(bool),
    Int(i64),
}

/// One provider's request shape (the mock's `SPECS`).
#[derive(Debug)]
pub(crate) struct Spec {
    pub(crate) name: &'static str,
    /// Default path (`None`: any path).
    pub(crate) path: Option<&'static str>,
    /// Required query parameters: `None` is "the provider's token".
    pub(crate) query: &'static [(&'static str, Option<&'static str>)],
    /// The auth header (`None`: the token is in the query or the path).
    pub(crate) header: Option<&'static str>,
    pub(crate) ctype: &'static str,
    pub(crate) kind: Kind,
    pub(crate) fixed: &'static [(&'static str, Fixed)],
}

impl Spec {
    fn fixed_json(&self) -> Json {
        Json::Object(
            self.fixed
                .iter()
                .map(|(k, v)| {
                    let v = match *v {
                        Fixed::Str(s) => Json::str(s),
                        Fixed::Bool(b) => Json::Bool(b),
                        Fixed::Int(i) => Json::int(i),
                    };
                    (PyStr::from_str(k), v)
                })
                .collect(),
        )
    }

    pub(crate) fn is(&self, name: &str) -> bool {
        self.name == name
    }
}

const B64_ENC: (&str, Fixed) = ("encoding", Fixed::Str("base64"));
const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// The fourteen providers, in `mock_relay.py`'s order, then Jito's bundle endpoint.
pub(crate) static SPECS: [Spec; 15] = [
    Spec {
        name: "jito",
        path: Some("/api/v1/transactions"),
        query: &[("uuid", None)],
        header: Some("x-jito-auth"),
        ctype: JSON,
        kind: Kind::JsonRpc,
        fixed: &[B64_ENC],
    },
    Spec {
        name: "bloxroute",
        path: Some("/api/v2/submit"),
        query: &[],
        header: Some("Authorization"),
        ctype: JSON,
        kind: Kind::Submit,
        fixed: &[
            ("frontRunningProtection", Fixed::Bool(false)),
            ("useStakedRPCs", Fixed::Bool(true)),
        ],
    },
    Spec {
        name: "nextblock",
        path: Some("/api/v2/submit"),
        query: &[],
        header: Some("Authorization"),
        ctype: JSON,
        kind: Kind::Submit,
        fixed: &[("frontRunningProtection", Fixed::Bool(false))],
    },
    Spec {
        name: "0slot",
        path: Some("/txb"),
        query: &[("api-key", None)],
        header: None,
        ctype: OCTETS,
        kind: Kind::Raw,
        fixed: &[],
    },
    Spec {
        name: "temporal",
        path: Some("/"),
        query: &[("c", None)],
        header: None,
        ctype: JSON,
        kind: Kind::JsonRpc,
        fixed: &[B64_ENC],
    },
    Spec {
        name: "helius",
        path: Some("/fast"),
        query: &[("api-key", None)],
        header: None,
        ctype: JSON,
        kind: Kind::JsonRpc,
        fixed: &[
            B64_ENC,
            ("skipPreflight", Fixed::Bool(true)),
            ("maxRetries", Fixed::Int(0)),
        ],
    },
    Spec {
        name: "astralane",
        path: Some("/irisb"),
        query: &[("api-key", None), ("method", Some("sendTransaction"))],
        header: None,
        ctype: OCTETS,
        kind: Kind::Raw,
        fixed: &[],
    },
    Spec {
        name: "node1",
        path: Some("/"),
        query: &[],
        header: Some("api-key"),
        ctype: JSON,
        kind: Kind::JsonRpc,
        fixed: &[B64_ENC, ("skipPreflight", Fixed::Bool(true))],
    },
    Spec {
        name: "flashblock",
        path: Some("/api/v2/submit-batch"),
        query: &[],
        header: Some("Authorization"),
        ctype: JSON,
        kind: Kind::Batch,
        fixed: &[],
    },
    Spec {
        name: "stellium",
        path: None,
        query: &[],
        header: None,
        ctype: JSON,
        kind: Kind::JsonRpc,
        fixed: &[B64_ENC],
    },
    Spec {
        name: "blockrazor",
        path: Some("/v2/sendTransaction"),
        query: &[("auth", None), ("mode", Some("fast"))],
        header: None,
        ctype: "text/plain",
        kind: Kind::B64,
        fixed: &[],
    },
    Spec {
        name: "lightspeed",
        path: None,
        query: &[],
        header: None,
        ctype: JSON,
        kind: Kind::JsonRpc,
        fixed: &[
            B64_ENC,
            ("skipPreflight", Fixed::Bool(true)),
            ("preflightCommitment", Fixed::Str("processed")),
            ("maxRetries", Fixed::Int(0)),
        ],
    },
    Spec {
        name: "glaive",
        path: Some("/binary"),
        query: &[("api-key", None)],
        header: None,
        ctype: OCTETS,
        kind: Kind::Raw,
        fixed: &[],
    },
    Spec {
        name: "lunarlander",
        path: Some("/send-bin"),
        query: &[],
        header: Some("x-api-key"),
        ctype: OCTETS,
        kind: Kind::Raw,
        fixed: &[],
    },
    Spec {
        name: "jito-bundle",
        path: Some("/api/v1/bundles"),
        query: &[("uuid", None)],
        header: Some("x-jito-auth"),
        ctype: JSON,
        kind: Kind::Bundle,
        fixed: &[B64_ENC],
    },
];

/// Where Jito's bundle endpoint is in [`SPECS`]: after the providers.
const BUNDLE: usize = SPECS.len() - 1;

/// The fourteen providers (not the bundle endpoint).
pub(crate) fn providers() -> &'static [Spec] {
    &SPECS[..BUNDLE]
}

/// A provider (or the bundle endpoint) by name.
pub(crate) fn spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.name == name)
}

fn bundle() -> &'static Spec {
    &SPECS[BUNDLE]
}

/// Most transactions in one bundle.
pub(crate) const MAX_BUNDLE_TXS: usize = 5;

/// What the checks need from the command line.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    /// Provider name -> expected token.
    pub(crate) tokens: Vec<(&'static str, String)>,
    /// Provider name -> path override, in first-given order (a Python dict).
    pub(crate) paths: Vec<(&'static str, String)>,
    pub(crate) strict: bool,
}

impl Rules {
    fn token(&self, provider: &str) -> Option<&str> {
        self.tokens
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, t)| t.as_str())
    }

    fn path(&self, provider: &str) -> Option<&str> {
        self.paths
            .iter()
            .find(|(p, _)| *p == provider)
            .map(|(_, t)| t.as_str())
    }

    /// Where jito bundles go (`bundle_path`).
    fn bundle_path(&self) -> String {
        match self.path("jito") {
            Some(custom) if custom.ends_with("/transactions") => {
                format!(
                    "{}/bundles",
                    &custom[..custom.len() - "/transactions".len()]
                )
            }
            _ => bundle().path.unwrap().to_string(),
        }
    }
}

/// Request headers as `http.server` parsed them (Latin-1 text, names as sent).
#[derive(Debug, Default)]
pub(crate) struct Headers(pub(crate) Vec<(String, String)>);

impl Headers {
    pub(crate) fn get_all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name) && n.len() == name.len())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().copied()
    }
}

/// An answer other than 200 (`Reject`); `crash` stands for an exception the mock does not
/// catch (its handler dies: no answer, no log line, the connection closed).
#[derive(Debug)]
pub(crate) struct Reject {
    pub(crate) status: u16,
    pub(crate) reason: String,
    pub(crate) close: bool,
    pub(crate) crash: bool,
}

impl Reject {
    pub(crate) fn new(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            status,
            reason: reason.into(),
            close: false,
            crash: false,
        }
    }

    pub(crate) fn closing(status: u16, reason: impl Into<String>) -> Reject {
        Reject {
            close: true,
            ..Reject::new(status, reason)
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The query parameters of a request, in order (no name repeated).
pub(crate) type Query = Vec<(String, String)>;

fn query_get<'q>(query: &'q Query, k: &str) -> Option<&'q str> {
    query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// `classify`: which provider a request is for.
fn classify(
    rules: &Rules,
    path: &str,
    query: &Query,
    headers: &Headers,
    body: &[u8],
) -> Option<&'static Spec> {
    if path == rules.bundle_path() {
        return contains(body, b"\"sendBundle\"").then(bundle);
    }
    for (p, custom) in &rules.paths {
        if path == custom {
            if *p == "bloxroute" || *p == "nextblock" {
                break;
            }
            return spec(p);
        }
    }
    if path == "/api/v1/transactions" {
        return spec("jito");
    }
    if path == rules.path("bloxroute").unwrap_or("/api/v2/submit")
        || path == rules.path("nextblock").unwrap_or("/api/v2/submit")
    {
        return spec(if contains(body, b"\"useStakedRPCs\"") {
            "bloxroute"
        } else {
            "nextblock"
        });
    }
    let simple = [
        ("/api/v2/submit-batch", "flashblock"),
        ("/txb", "0slot"),
        ("/fast", "helius"),
        ("/irisb", "astralane"),
        ("/v2/sendTransaction", "blockrazor"),
        ("/binary", "glaive"),
        ("/send-bin", "lunarlander"),
    ];
    if let Some((_, p)) = simple.iter().find(|(s, _)| *s == path) {
        return spec(p);
    }
    let preflight = contains(body, b"\"preflightCommitment\"");
    if path == "/" {
        if query_get(query, "c").is_some() {
            return spec("temporal");
        }
        if headers.get("api-key").is_some() {
            return spec("node1");
        }
        if preflight {
            return spec("lightspeed");
        }
        return spec("node1");
    }
    if preflight {
        return spec("lightspeed");
    }
    if path.matches('/').count() == 1 {
        return spec("stellium");
    }
    None
}

/// `route`: (provider, path, query parameters).
pub(crate) fn route(
    rules: &Rules,
    pinned: Option<&'static Spec>,
    target: &str,
    headers: &Headers,
    body: &[u8],
) -> Result<(&'static Spec, String, Query), Reject> {
    let (path, query_text) = target.split_once('?').unwrap_or((target, ""));
    let pairs = py::parse_qsl_strict(query_text)
        .map_err(|e| Reject::new(400, format!("bad query string: {e}")))?;
    let mut query: Query = Vec::new();
    for (k, v) in pairs {
        if query.iter().any(|(n, _)| *n == k) {
            return Err(Reject::new(400, format!("query parameter {k} repeated")));
        }
        query.push((k, v));
    }
    let mut provider = match pinned {
        Some(p) => Some(p),
        None => classify(rules, path, &query, headers, body),
    };
    if pinned.is_some_and(|p| p.is("jito"))
        && path == rules.bundle_path()
        && contains(body, b"\"sendBundle\"")
    {
        provider = Some(bundle());
    }
    match provider {
        Some(p) => Ok((p, path.to_string(), query)),
        None => Err(Reject::new(404, format!("no provider serves {path}"))),
    }
}

/// `check_auth`.
pub(crate) fn check_auth(
    rules: &Rules,
    spec: &Spec,
    path: &str,
    query: &Query,
    headers: &Headers,
) -> Result<(), Reject> {
    let want = rules.token(if spec.kind == Kind::Bundle {
        "jito"
    } else {
        spec.name
    });
    let status = if spec.is("0slot") { 403 } else { 401 };
    let check = |got: Option<&str>, place: &str| -> Result<(), Reject> {
        match got {
            None | Some("") => Err(Reject::new(status, format!("missing token ({place})"))),
            Some(g) if want.is_some_and(|w| w != g) => {
                Err(Reject::new(status, format!("invalid token ({place})")))
            }
            _ => Ok(()),
        }
    };
    if spec.is("lightspeed") {
        if let Some(w) = want {
            if !py::unquote(path).contains(w) && !query.iter().any(|(_, v)| v == w) {
                return Err(Reject::new(401, "invalid token (lightspeed URL)"));
            }
        }
        return Ok(());
    }
    if spec.is("stellium") {
        if rules.path("stellium").is_some() {
            return Ok(());
        }
        let rest: String = path.chars().skip(1).collect();
        return check(Some(&py::unquote(&rest)), "path");
    }
    let mut got = None;
    for (k, v) in spec.query {
        if v.is_none() {
            got = query_get(query, k);
            check(got, &format!("query {k}"))?;
        }
    }
    if let Some(h) = spec.header {
        let values = headers.get_all(h);
        if values.len() > 1 {
            return Err(Reject::new(400, format!("{h} header repeated")));
        }
        let hv = values.first().copied();
        check(hv, &format!("{h} header"))?;
        if got.is_some() && hv != got {
            return Err(Reject::new(
                status,
                "invalid token (uuid and x-jito-auth differ)",
            ));
        }
    }
    Ok(())
}

/// `check_shape`: path, query parameters, Host, Content-Type (and with `--strict`, no other
/// headers).
pub(crate) fn check_shape(
    rules: &Rules,
    spec: &Spec,
    path: &str,
    query: &Query,
    headers: &Headers,
) -> Result<(), Reject> {
    let want_path = if spec.kind == Kind::Bundle {
        Some(rules.bundle_path())
    } else {
        rules.path(spec.name).or(spec.path).map(|p| p.to_string())
    };
    if let Some(w) = want_path {
        if path != w {
            return Err(Reject::new(
                400,
                format!("path {path} is not {}'s {w}", spec.name),
            ));
        }
    }
    for (k, v) in spec.query {
        let Some(got) = query_get(query, k) else {
            return Err(Reject::new(400, format!("query parameter {k} missing")));
        };
        if let Some(v) = v {
            if got != *v {
                return Err(Reject::new(400, format!("query parameter {k} must be {v}")));
            }
        }
    }
    let mut extra: Vec<&str> = query
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !spec.query.iter().any(|(q, _)| q == k))
        .collect();
    if !extra.is_empty() && (rules.strict || !spec.is("lightspeed")) {
        extra.sort();
        return Err(Reject::new(
            400,
            format!("unexpected query parameters: {}", extra.join(", ")),
        ));
    }
    let hosts = headers.get_all("Host");
    if hosts.len() != 1 || hosts[0].is_empty() {
        return Err(Reject::new(
            400,
            "exactly one non-empty Host header required",
        ));
    }
    let ctypes = headers.get_all("Content-Type");
    if ctypes.len() != 1 {
        return Err(Reject::new(400, "exactly one Content-Type header required"));
    }
    if ctypes[0] != spec.ctype {
        return Err(Reject::new(
            400,
            format!("Content-Type {} is not {}", ctypes[0], spec.ctype),
        ));
    }
    if rules.strict {
        let mut allowed = vec![
            "host".to_string(),
            "content-type".into(),
            "content-length".into(),
        ];
        if let Some(h) = spec.header {
            allowed.push(h.to_lowercase());
        }
        let names: Vec<String> = headers.0.iter().map(|(n, _)| py_lower(n)).collect();
        let mut extra_h: Vec<&String> = names.iter().filter(|n| !allowed.contains(n)).collect();
        extra_h.sort();
        extra_h.dedup();
        if !extra_h.is_empty() {
            let list: Vec<&str> = extra_h.iter().map(|s| s.as_str()).collect();
            return Err(Reject::new(
                400,
                format!("unexpected headers: {}", list.join(", ")),
            ));
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != names.len() {
            return Err(Reject::new(400, "a header is repeated"));
        }
    }
    Ok(())
}

/// Python's `str.lower()` for Latin-1 text.
fn py_lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// `decode_b64`: canonical padded base64 in a JSON string (or the whole body).
fn decode_b64(s: &Json, place: &str) -> Result<Vec<u8>, Reject> {
    let Json::Str(s) = s else {
        return Err(Reject::new(400, format!("{place} is not a string")));
    };
    let Some(text) = s.to_ascii() else {
        return Err(Reject::new(
            400,
            format!("bad base64 in {place}: string argument should contain only ASCII characters"),
        ));
    };
    let raw = py::b64decode_strict(text.as_bytes())
        .map_err(|e| Reject::new(400, format!("bad base64 in {place}: {e}")))?;
    if py::b64encode(&raw) != text {
        return Err(Reject::new(400, format!("non-canonical base64 in {place}")));
    }
    Ok(raw)
}

fn load(body: &[u8]) -> Result<Json, Reject> {
    py::loads(body).map_err(|e| match e {
        LoadError::Value(m) => Reject::new(400, format!("body is not JSON: {m}")),
        LoadError::Recursion => Reject {
            crash: true,
            ..Reject::closing(0, "maximum recursion depth exceeded while decoding JSON")
        },
    })
}

/// The checks common to `sendTransaction` and `sendBundle` bodies: returns params and id.
fn jsonrpc_envelope<'d>(
    doc: &'d Json,
    method: &str,
    strict: bool,
) -> Result<(&'d Json, &'d Json), Reject> {
    if !doc.has_exactly_keys(&["id", "jsonrpc", "method", "params"]) {
        return Err(Reject::new(
            400,
            "body must be an object with exactly id, jsonrpc, method, params",
        ));
    }
    let rpc_id = doc.get("id").unwrap();
    if strict && !rpc_id.strict_eq(&Json::int(1)) {
        return Err(Reject::new(400, "id must be 1"));
    }
    if !matches!(rpc_id, Json::Int(_) | Json::Str(_)) {
        return Err(Reject::new(400, "id must be a number or string"));
    }
    if !doc.get("jsonrpc").unwrap().strict_eq(&Json::str("2.0")) {
        return Err(Reject::new(400, "jsonrpc must be \"2.0\""));
    }
    if !doc.get("method").unwrap().strict_eq(&Json::str(method)) {
        return Err(Reject::new(400, format!("method must be \"{method}\"")));
    }
    Ok((doc.get("params").unwrap(), rpc_id))
}

/// The body `wire/src/relay.rs` writes for a transaction whose base64 is `b64`.
fn canonical_body(spec: &Spec, b64: &str) -> Vec<u8> {
    match spec.kind {
        Kind::JsonRpc => format!(
            "{{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"sendTransaction\",\"params\":[\"{b64}\",{}]}}",
            spec.fixed_json().compact()
        ),
        Kind::Submit => {
            let mut pairs = vec![(
                PyStr::from_str("transaction"),
                Json::object(&[("content", Json::str(b64))]),
            )];
            if let Json::Object(fixed) = spec.fixed_json() {
                pairs.extend(fixed);
            }
            Json::Object(pairs).compact()
        }
        Kind::Batch => format!("{{\"transactions\":[\"{b64}\"]}}"),
        _ => b64.to_string(),
    }
    .into_bytes()
}

/// `extract_tx`: the transaction bytes from a body of `spec`'s shape, and the JSON-RPC id.
/// On failure the id is lost (as in the mock, where it is a local of the failed call).
pub(crate) fn extract_tx(
    spec: &Spec,
    body: &[u8],
    strict: bool,
) -> Result<(Vec<u8>, Option<Json>), Reject> {
    match spec.kind {
        Kind::Raw => return Ok((body.to_vec(), None)),
        Kind::B64 => {
            if !body.is_ascii() {
                return Err(Reject::new(400, "body is not ASCII base64"));
            }
            let text = Json::Str(PyStr(body.iter().map(|&b| u32::from(b)).collect()));
            return Ok((decode_b64(&text, "body")?, None));
        }
        _ => {}
    }
    let doc = load(body)?;
    let fixed = spec.fixed_json();
    let (b64, place, rpc_id) = match spec.kind {
        Kind::JsonRpc => {
            let (params, rpc_id) = jsonrpc_envelope(&doc, "sendTransaction", strict)?;
            let Json::Array(params) = params else {
                return Err(Reject::new(400, "params must be [transaction, config]"));
            };
            if params.len() != 2 {
                return Err(Reject::new(400, "params must be [transaction, config]"));
            }
            if !params[1].strict_eq(&fixed) {
                return Err(Reject::new(
                    400,
                    format!(
                        "params[1] is {}, expected {}",
                        params[1].compact(),
                        fixed.compact()
                    ),
                ));
            }
            (&params[0], "params[0]", Some(rpc_id.clone()))
        }
        Kind::Submit => {
            let mut keys = vec!["transaction"];
            keys.extend(spec.fixed.iter().map(|(k, _)| *k));
            if !doc.has_exactly_keys(&keys) {
                let names: Vec<&str> = spec.fixed.iter().map(|(k, _)| *k).collect();
                return Err(Reject::new(
                    400,
                    format!("body keys must be transaction, {}", names.join(", ")),
                ));
            }
            if let Json::Object(pairs) = &fixed {
                for (k, v) in pairs {
                    let key: String = k.0.iter().map(|&c| c as u8 as char).collect();
                    if !doc.get(&key).unwrap().strict_eq(v) {
                        return Err(Reject::new(400, format!("{key} must be {}", v.compact())));
                    }
                }
            }
            let t = doc.get("transaction").unwrap();
            if !t.has_exactly_keys(&["content"]) {
                return Err(Reject::new(400, "transaction must be {\"content\": B64}"));
            }
            (t.get("content").unwrap(), "transaction.content", None)
        }
        _ => {
            if !doc.has_exactly_keys(&["transactions"]) {
                return Err(Reject::new(400, "body must be {\"transactions\": [B64]}"));
            }
            let txs = doc.get("transactions").unwrap();
            let Json::Array(txs) = txs else {
                return Err(Reject::new(
                    400,
                    "transactions must hold exactly one transaction",
                ));
            };
            if txs.len() != 1 {
                return Err(Reject::new(
                    400,
                    "transactions must hold exactly one transaction",
                ));
            }
            (&txs[0], "transactions[0]", None)
        }
    };
    let raw = decode_b64(b64, place)?;
    if strict {
        let Json::Str(s) = b64 else { unreachable!() };
        let text = s.to_ascii().unwrap();
        if body != canonical_body(spec, &text) {
            return Err(Reject::new(
                400,
                "body bytes differ from the wire/src/relay.rs template",
            ));
        }
    }
    Ok((raw, rpc_id))
}

/// `extract_bundle`: the transactions of a `sendBundle` body, in order, and the id.
pub(crate) fn extract_bundle(body: &[u8], strict: bool) -> Result<(Vec<Vec<u8>>, Json), Reject> {
    let doc = load(body)?;
    let (params, rpc_id) = jsonrpc_envelope(&doc, "sendBundle", strict)?;
    let params = match params {
        Json::Array(p) if p.len() == 2 => p,
        _ => return Err(Reject::new(400, "params must be [[transactions], config]")),
    };
    let fixed = bundle().fixed_json();
    if !params[1].strict_eq(&fixed) {
        return Err(Reject::new(
            400,
            format!(
                "params[1] is {}, expected {}",
                params[1].compact(),
                fixed.compact()
            ),
        ));
    }
    let b64s = match &params[0] {
        Json::Array(b) if (1..=MAX_BUNDLE_TXS).contains(&b.len()) => b,
        _ => {
            return Err(Reject::new(
                400,
                format!("params[0] must be a list of 1 to {MAX_BUNDLE_TXS} transactions"),
            ))
        }
    };
    let raws = b64s
        .iter()
        .enumerate()
        .map(|(i, b)| decode_b64(b, &format!("params[0][{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    if strict {
        let texts: Vec<String> = b64s
            .iter()
            .map(|b| match b {
                Json::Str(s) => format!("\"{}\"", s.to_ascii().unwrap()),
                _ => unreachable!(),
            })
            .collect();
        let canonical = format!(
            "{{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"sendBundle\",\"params\":[[{}],{{\"encoding\":\"base64\"}}]}}",
            texts.join(",")
        );
        if body != canonical.as_bytes() {
            return Err(Reject::new(
                400,
                "body bytes differ from the wire/src/relay.rs bundle request",
            ));
        }
    }
    Ok((raws, rpc_id.clone()))
}

/// `parse_tx`: validates like `swqos_wire::solana::Transaction::parse` (it is that parser) and
/// returns the base58 of the first signature.
pub(crate) fn parse_tx(tx: &[u8]) -> Result<String, &'static str> {
    swqos_wire::solana::Transaction::parse(tx)
        .map(|t| bs58::encode(t.first_signature()).into_string())
        .map_err(|e| e.reason())
}

/// `bundle_id`: hex SHA-256 of the transactions' first signatures, concatenated.
pub(crate) fn bundle_id(raws: &[Vec<u8>]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for raw in raws {
        // Parsed already: a short-vec count (1 to 3 bytes) then the signatures.
        let (_, n) = swqos_wire::solana::decode_short_u16(raw).expect("parsed transaction");
        ctx.update(&raw[n..n + 64]);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `success`: the 200 body and its Content-Type.
pub(crate) fn success(spec: &Spec, sig: &str, rpc_id: Option<&Json>) -> (Vec<u8>, &'static str) {
    let sig_json = py::dump_string(sig);
    let body = match spec.name {
        "bloxroute" | "nextblock" | "blockrazor" => format!("{{\"signature\":{sig_json}}}"),
        "flashblock" => {
            format!("{{\"success\":true,\"data\":{{\"signatures\":[{sig_json}]}}}}")
        }
        "0slot" => return (sig.as_bytes().to_vec(), "text/plain"),
        _ => format!(
            "{{\"jsonrpc\":\"2.0\",\"result\":{sig_json},\"id\":{}}}",
            rpc_id.map_or("1".to_string(), Json::compact)
        ),
    };
    (body.into_bytes(), JSON)
}

/// `failure`: the body of a refusal and its Content-Type.
pub(crate) fn failure(
    spec: Option<&Spec>,
    status: u16,
    reason: &str,
    rpc_id: Option<&Json>,
) -> (Vec<u8>, &'static str) {
    if spec.is_some_and(|s| s.is("0slot")) {
        return (reason.as_bytes().to_vec(), "text/plain");
    }
    let code = match status {
        400 => -32602,
        401 | 403 => -32001,
        404 => -32601,
        _ => -32600,
    };
    let body = format!(
        "{{\"jsonrpc\":\"2.0\",\"error\":{{\"code\":{code},\"message\":{}}},\"id\":{}}}",
        py::dump_string(reason),
        rpc_id.map_or("null".to_string(), Json::compact)
    );
    (body.into_bytes(), JSON)
}
