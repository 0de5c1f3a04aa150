//! TLS relays for the end-to-end tests, all in the [`Topology`]'s peer namespace on
//! [`RELAY_IP`] (needs root):
//!
//! - [`TestPki`]: a test CA and a server certificate it signs for [`RELAY_HOST`] and
//!   [`RELAY_IP`], plus an untrusted CA with its own certificate for the same names (rcgen,
//!   ECDSA P-256, PEM files).
//! - [`nginx_tls`]: nginx terminating TLS in front of the mock relay, one `server` block (one
//!   port) per protocol and cipher suite of [`NGINX_VARIANTS`], logging the negotiated
//!   protocol and cipher of every request.
//! - [`s_server_relay`]: `openssl s_server` as a second, independent TLS stack, with
//!   `tests/relay/s_server_relay.py` speaking HTTP/1.1 through its pipes and logging every
//!   request's exact body; optionally a TLS 1.3 KeyUpdate (update_requested) after every N-th
//!   response.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use serde_json::Value;

use crate::topology::{Guard, Topology};
use crate::workspace;

/// The relays' address in the peer namespace.
pub const RELAY_IP: &str = "198.18.77.2";

/// The DNS name the server certificates are for (besides [`RELAY_IP`]).
pub const RELAY_HOST: &str = "relay.test";

/// The test CA's common name.
pub const CA_NAME: &str = "swqos test CA";

/// The untrusted CA's common name.
pub const UNTRUSTED_CA_NAME: &str = "swqos untrusted CA";

/// The test certificates in PEM files: a CA and a server certificate it signs for
/// [`RELAY_HOST`] and [`RELAY_IP`], and an untrusted CA with a server certificate for the same
/// names. All ECDSA P-256 (so the TLS 1.2 suites are the ECDHE-ECDSA ones).
#[derive(Debug, Clone)]
pub struct TestPki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    untrusted_ca: PathBuf,
    untrusted_cert: PathBuf,
    untrusted_key: PathBuf,
}

/// A CA: its certificate (PEM) and what signs with it.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn p256() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate an ECDSA P-256 key")
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = p256();
    let cert = params.self_signed(&key).expect("self-sign the CA");
    Ca { cert, key }
}

/// A server certificate for [`RELAY_HOST`] and [`RELAY_IP`] signed by `ca`: (cert PEM, key PEM).
fn server_cert(ca: &Ca) -> (String, String) {
    let mut params = CertificateParams::new(vec![RELAY_HOST.to_string(), RELAY_IP.to_string()])
        .expect("server params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, RELAY_HOST);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let key = p256();
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("sign the server certificate");
    (cert.pem(), key.serialize_pem())
}

impl TestPki {
    /// Generates the certificates and writes them into `dir` (created if missing): `ca.pem`,
    /// `cert.pem`, `key.pem`, `untrusted-ca.pem`, `untrusted-cert.pem`, `untrusted-key.pem`.
    pub fn new(dir: &Path) -> TestPki {
        fs::create_dir_all(dir).expect("create the PKI folder");
        let pki = TestPki {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            untrusted_ca: dir.join("untrusted-ca.pem"),
            untrusted_cert: dir.join("untrusted-cert.pem"),
            untrusted_key: dir.join("untrusted-key.pem"),
        };
        for (ca_name, ca_path, cert_path, key_path) in [
            (CA_NAME, &pki.ca, &pki.cert, &pki.key),
            (
                UNTRUSTED_CA_NAME,
                &pki.untrusted_ca,
                &pki.untrusted_cert,
                &pki.untrusted_key,
            ),
        ] {
            let ca = new_ca(ca_name);
            let (cert, key) = server_cert(&ca);
            fs::write(ca_path, ca.cert.pem()).expect("write the CA");
            fs::write(cert_path, cert).expect("write the server certificate");
            fs::write(key_path, key).expect("write the server key");
        }
        pki
    }

    /// The test CA's certificate (what a lane trusts).
    pub fn ca_pem(&self) -> &Path {
        &self.ca
    }

    /// The server certificate the test CA signed.
    pub fn cert_pem(&self) -> &Path {
        &self.cert
    }

    /// Its private key (PKCS#8).
    pub fn key_pem(&self) -> &Path {
        &self.key
    }

    /// The untrusted CA's certificate (to show the untrusted server certificate is otherwise
    /// fine).
    pub fn untrusted_ca_pem(&self) -> &Path {
        &self.untrusted_ca
    }

    /// A server certificate for the same names, signed by the untrusted CA.
    pub fn untrusted_cert_pem(&self) -> &Path {
        &self.untrusted_cert
    }

    /// Its private key (PKCS#8).
    pub fn untrusted_key_pem(&self) -> &Path {
        &self.untrusted_key
    }
}

/// A cipher suite by its names and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteName {
    /// The IANA number (what `swqos_tls::Suite::from_iana` takes).
    pub iana_id: u16,
    /// The IANA (RFC) name, e.g. `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`.
    pub iana: &'static str,
    /// OpenSSL's name, which nginx logs (`$ssl_cipher`) and s_server prints, e.g.
    /// `ECDHE-ECDSA-AES128-GCM-SHA256` (for TLS 1.3 suites the same as the IANA name).
    pub openssl: &'static str,
}

/// One `server` block of [`nginx_tls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsVariant {
    /// Its port on [`RELAY_IP`].
    pub port: u16,
    /// The only protocol it speaks, as nginx logs it (`$ssl_protocol`): `TLSv1.3` or `TLSv1.2`.
    pub protocol: &'static str,
    /// The only suite it accepts; `None`: OpenSSL's defaults for the protocol.
    pub suite: Option<SuiteName>,
    /// Serves the untrusted certificate ([`TestPki::untrusted_cert_pem`]) instead of the
    /// test CA's.
    pub untrusted: bool,
    /// The nginx directives that pin the protocol and suite.
    pub directives: &'static str,
}

/// `TLS_AES_128_GCM_SHA256`.
pub const TLS13_AES_128_GCM_SHA256: SuiteName = SuiteName {
    iana_id: 0x1301,
    iana: "TLS_AES_128_GCM_SHA256",
    openssl: "TLS_AES_128_GCM_SHA256",
};
/// `TLS_AES_256_GCM_SHA384`.
pub const TLS13_AES_256_GCM_SHA384: SuiteName = SuiteName {
    iana_id: 0x1302,
    iana: "TLS_AES_256_GCM_SHA384",
    openssl: "TLS_AES_256_GCM_SHA384",
};
/// `TLS_CHACHA20_POLY1305_SHA256`.
pub const TLS13_CHACHA20_POLY1305_SHA256: SuiteName = SuiteName {
    iana_id: 0x1303,
    iana: "TLS_CHACHA20_POLY1305_SHA256",
    openssl: "TLS_CHACHA20_POLY1305_SHA256",
};
/// `TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`.
pub const TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256: SuiteName = SuiteName {
    iana_id: 0xc02b,
    iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
};
/// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`.
pub const TLS12_ECDHE_ECDSA_AES_256_GCM_SHA384: SuiteName = SuiteName {
    iana_id: 0xc02c,
    iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
};
/// `TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256`.
pub const TLS12_ECDHE_ECDSA_CHACHA20_POLY1305_SHA256: SuiteName = SuiteName {
    iana_id: 0xcca9,
    iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
};

/// The port of the variant that serves the untrusted certificate.
pub const UNTRUSTED_PORT: u16 = 8449;

/// nginx's `server` blocks: one port per protocol and suite, and one serving the untrusted
/// certificate.
pub const NGINX_VARIANTS: [TlsVariant; 7] = [
    TlsVariant {
        port: 8443,
        protocol: "TLSv1.3",
        suite: Some(TLS13_AES_256_GCM_SHA384),
        untrusted: false,
        directives: "ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;",
    },
    TlsVariant {
        port: 8444,
        protocol: "TLSv1.3",
        suite: Some(TLS13_AES_128_GCM_SHA256),
        untrusted: false,
        directives: "ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;",
    },
    TlsVariant {
        port: 8445,
        protocol: "TLSv1.3",
        suite: Some(TLS13_CHACHA20_POLY1305_SHA256),
        untrusted: false,
        directives:
            "ssl_protocols TLSv1.3; ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;",
    },
    TlsVariant {
        port: 8446,
        protocol: "TLSv1.2",
        suite: Some(TLS12_ECDHE_ECDSA_AES_128_GCM_SHA256),
        untrusted: false,
        directives: "ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256;",
    },
    TlsVariant {
        port: 8447,
        protocol: "TLSv1.2",
        suite: Some(TLS12_ECDHE_ECDSA_AES_256_GCM_SHA384),
        untrusted: false,
        directives: "ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384;",
    },
    TlsVariant {
        port: 8448,
        protocol: "TLSv1.2",
        suite: Some(TLS12_ECDHE_ECDSA_CHACHA20_POLY1305_SHA256),
        untrusted: false,
        directives: "ssl_protocols TLSv1.2; ssl_ciphers ECDHE-ECDSA-CHACHA20-POLY1305;",
    },
    TlsVariant {
        port: UNTRUSTED_PORT,
        protocol: "TLSv1.3",
        suite: None,
        untrusted: true,
        directives: "ssl_protocols TLSv1.3;",
    },
];

/// Whether a TCP connection to `addr` from inside namespace `ns` succeeds (a short-lived
/// thread joins the namespace; nothing else does).
pub fn connects_in_ns(ns: &str, addr: SocketAddr) -> bool {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let Ok(f) = fs::File::open(&path) else {
            return false;
        };
        // SAFETY: setns with an open namespace file; it moves only this (short-lived) thread.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return false;
        }
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
    .join()
    .unwrap_or(false)
}

/// Starts `args` in the peer namespace with stdout piped and stderr appended to `stderr`.
fn spawn_logged(topo: &Topology, args: &[&str], stderr: &Path) -> Child {
    let err = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .expect("open a stderr file");
    Command::new("ip")
        .args(["netns", "exec", &topo.ns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {args:?} in {}: {e}", topo.ns))
}

/// nginx terminating TLS for the mock relay (see [`nginx_tls`]); killed on drop.
pub struct NginxTls {
    _process: Guard,
    access_log: PathBuf,
    error_log: PathBuf,
    conf: PathBuf,
}

/// One line of [`NginxTls`]'s access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// The port (so the variant) the request came to.
    pub port: u16,
    /// The negotiated protocol, `TLSv1.3` or `TLSv1.2`.
    pub protocol: String,
    /// The negotiated cipher by OpenSSL's name ([`SuiteName::openssl`]).
    pub cipher: String,
    /// Request method.
    pub method: String,
    /// Request URI (path and query).
    pub uri: String,
    /// The status nginx answered (the mock relay's, or nginx's own 502 when it failed).
    pub status: u16,
    /// The whole request's length (request line, headers, body).
    pub request_length: u64,
    /// The request's Content-Length header, if any.
    pub content_length: Option<u64>,
}

impl NginxTls {
    /// The access log: one line per request, `$server_port $ssl_protocol $ssl_cipher
    /// $request_method $request_uri $status $request_length $content_length`.
    pub fn access_log(&self) -> &Path {
        &self.access_log
    }

    /// nginx's error log (handshake failures show up here at `info` level).
    pub fn error_log(&self) -> &Path {
        &self.error_log
    }

    /// The generated nginx.conf.
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The access log, parsed.
    pub fn entries(&self) -> Vec<AccessEntry> {
        fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                assert_eq!(f.len(), 8, "unexpected access log line {l:?}");
                AccessEntry {
                    port: f[0].parse().expect("port"),
                    protocol: f[1].to_string(),
                    cipher: f[2].to_string(),
                    method: f[3].to_string(),
                    uri: f[4].to_string(),
                    status: f[5].parse().expect("status"),
                    request_length: f[6].parse().expect("request length"),
                    content_length: f[7].parse().ok(),
                }
            })
            .collect()
    }
}

/// Starts one nginx (a single process: `master_process off; daemon off;`) in the peer
/// namespace with one TLS `server` block per [`NGINX_VARIANTS`] entry on [`RELAY_IP`], each
/// proxying to `http://{upstream}` (the mock relay, `198.18.77.2:8080`) over kept-alive
/// HTTP/1.1 connections with `proxy_next_upstream off`, so each client request is exactly one
/// upstream request. Config and logs go to `dir` (created if missing). Returns once every port
/// accepts TCP connections.
pub fn nginx_tls(topo: &Topology, dir: &Path, pki: &TestPki, upstream: &str) -> NginxTls {
    fs::create_dir_all(dir).expect("create the nginx folder");
    let d = dir.display();
    let mut servers = String::new();
    for v in NGINX_VARIANTS {
        let (cert, key) = if v.untrusted {
            (pki.untrusted_cert_pem(), pki.untrusted_key_pem())
        } else {
            (pki.cert_pem(), pki.key_pem())
        };
        servers.push_str(&format!(
            "  server {{\n    listen {RELAY_IP}:{port} ssl;\n    server_name {RELAY_HOST};\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n    {directives}\n\
             \x20   location / {{\n      proxy_pass http://swqos_mock_relay;\n\
             \x20     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
             \x20     proxy_set_header Host $http_host;\n      proxy_next_upstream off;\n\
             \x20     proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n",
            port = v.port,
            cert = cert.display(),
            key = key.display(),
            directives = v.directives,
        ));
    }
    let conf = dir.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "worker_processes 1;\nmaster_process off;\ndaemon off;\n\
             error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  log_format swqos_tls '$server_port $ssl_protocol $ssl_cipher \
             $request_method $request_uri $status $request_length $content_length';\n\
             \x20 access_log {d}/access.log swqos_tls;\n\
             \x20 client_body_temp_path {d}/client_body;\n  proxy_temp_path {d}/proxy;\n\
             \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             \x20 scgi_temp_path {d}/scgi;\n\
             \x20 upstream swqos_mock_relay {{\n    server {upstream};\n    keepalive 16;\n  }}\n\
             {servers}}}\n"
        ),
    )
    .expect("write nginx.conf");
    let error_log = dir.join("error.log");
    let mut nginx = Guard(spawn_logged(
        topo,
        &[
            "nginx",
            "-c",
            conf.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
        ],
        &dir.join("nginx.stderr"),
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut waiting: Vec<u16> = NGINX_VARIANTS.iter().map(|v| v.port).collect();
    while !waiting.is_empty() {
        if let Some(status) = nginx.0.try_wait().ok().flatten() {
            panic!(
                "nginx exited ({status}):\n{}\n{}",
                fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default(),
                fs::read_to_string(&error_log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "nginx ports {waiting:?} not accepting within 10 s:\n{}",
            fs::read_to_string(&error_log).unwrap_or_default()
        );
        waiting
            .retain(|&p| !connects_in_ns(&topo.ns, SocketAddr::new(RELAY_IP.parse().unwrap(), p)));
        if !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    NginxTls {
        _process: nginx,
        access_log: dir.join("access.log"),
        error_log,
        conf,
    }
}

/// `openssl s_server` with the HTTP/1.1 relay script in front (see [`s_server_relay`]);
/// killed on drop (s_server dies with the script).
pub struct SServerRelay {
    _process: Guard,
    log: PathBuf,
    stderr: PathBuf,
    /// Its port on [`RELAY_IP`].
    pub port: u16,
}

impl SServerRelay {
    /// The JSON-lines log: requests and key-update events.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The relay's and s_server's stderr (with s_server's report, `--verbose`).
    pub fn stderr_log(&self) -> &Path {
        &self.stderr
    }

    fn lines(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("s_server relay log line"))
            .collect()
    }

    /// The requests in arrival order, one object each: `method`, `path`, `headers` (names
    /// lowercased), `body` (as text), `len` (body bytes), `seq` (from 1), `conn` (the
    /// connection, from 1, counting every accepted one, failed handshakes too), `cipher`
    /// (OpenSSL's name of the connection's cipher) and `key_update_after` (a KeyUpdate was
    /// requested after its response).
    pub fn requests(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v.get("method").is_some())
            .collect()
    }

    /// The KeyUpdates s_server performed: `{"event": "key_update", "result": 1, "conn": C}`
    /// (`result`: what `SSL_do_handshake` returned after `SSL_key_update`; 1 is success). A
    /// KeyUpdate requested after a connection's last response is not sent when the connection
    /// ends first.
    pub fn key_updates(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|v| v["event"] == "key_update")
            .collect()
    }
}

/// Reads `out` until `want` appears (10 s at most; on failure shows `stderr`); gives the reader
/// back.
fn wait_ready(mut out: ChildStdout, want: &str, stderr: &Path, what: &str) -> ChildStdout {
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = want.to_string();
    std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 256];
        while !seen.contains(&wanted) {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Err(seen));
                    return;
                }
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        let _ = tx.send(Ok(out));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(out)) => out,
        Ok(Err(seen)) => panic!(
            "{what} exited before `{want}`: {seen}\n{}",
            fs::read_to_string(stderr).unwrap_or_default()
        ),
        Err(_) => panic!(
            "no `{want}` from {what} within 10 s\n{}",
            fs::read_to_string(stderr).unwrap_or_default()
        ),
    }
}

/// Starts `tests/relay/s_server_relay.py` in the peer namespace: `openssl s_server` on
/// [`RELAY_IP`]`:port` with the test CA's server certificate and `extra_args` (e.g.
/// `["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"]` or
/// `["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"]`), answering every HTTP/1.1 request with
/// `200 {"jsonrpc":"2.0","result":"s_server","id":1}`; with `key_update_every` `Some(n)`,
/// s_server sends a KeyUpdate (update_requested) after every n-th response on TLS 1.3
/// connections. One connection at a time (s_server accepts the next when the current one
/// ends). Files go to `dir` (`s_server-<port>.jsonl`, `s_server-<port>.stderr`). Returns once
/// s_server listens.
pub fn s_server_relay(
    topo: &Topology,
    dir: &Path,
    pki: &TestPki,
    port: u16,
    extra_args: &[&str],
    key_update_every: Option<u32>,
) -> SServerRelay {
    fs::create_dir_all(dir).expect("create the s_server folder");
    let script = workspace().join("tests/relay/s_server_relay.py");
    let log = dir.join(format!("s_server-{port}.jsonl"));
    let stderr = dir.join(format!("s_server-{port}.stderr"));
    let listen = format!("{RELAY_IP}:{port}");
    let every = key_update_every.map(|n| n.to_string());
    let mut args = vec![
        "python3",
        "-u",
        script.to_str().unwrap(),
        "--listen",
        &listen,
        "--cert",
        pki.cert_pem().to_str().unwrap(),
        "--key",
        pki.key_pem().to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--verbose",
    ];
    if let Some(n) = &every {
        args.extend_from_slice(&["--key-update-every", n]);
    }
    args.push("--");
    args.extend_from_slice(extra_args);
    let mut relay = Guard(spawn_logged(topo, &args, &stderr));
    let out = relay.0.stdout.take().expect("piped stdout");
    relay.0.stdout = Some(wait_ready(
        out,
        "listening on",
        &stderr,
        "s_server_relay.py",
    ));
    SServerRelay {
        _process: relay,
        log,
        stderr,
        port,
    }
}
