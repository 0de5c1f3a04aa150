//! The relay lanes' rustls client configurations: roots (bundled, the system's, the lane's
//! `ca_files`), `insecure_skip_verify`, ALPN, client certificates, key logging. One owner for
//! every process that verifies a relay: `swqos control` (its HTTPS connections,
//! `control/src/tls.rs`), the data plane (its QUIC lanes, `dataplane/src/quic.rs`) and
//! `swqos-bench` (its reqwest, kernel-socket and quinn baselines verify relays exactly as the
//! product does). Feature `client-config`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Once, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

// Its log lines are `eprintln!` in the plain format's shape (`swqos: ...`), not `tracing`
// events: swqos-bench links no `tracing`.

/// Per-lane TLS settings (from the lane's config).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// SNI and the name verified (a DNS name or an IP address literal).
    pub server_name: String,
    /// Extra PEM trust anchors, added to the bundled and system roots.
    pub ca_files: Vec<PathBuf>,
    /// Accept any certificate (tests only; logged loudly).
    pub insecure_skip_verify: bool,
}

/// The client config of a lane, built once at start: bundled Mozilla roots, the system's roots
/// and `ca_files`; TLS 1.3 and 1.2 with the ring provider's AES-GCM and ChaCha20-Poly1305
/// suites; ALPN `http/1.1`; secret extraction on (for the kernel-connection hand-over).
pub fn client_config(lane: &str, s: &TlsSettings) -> Result<Arc<ClientConfig>, String> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let mut config = build(lane, s, &versions, None)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.enable_secret_extraction = true;
    Ok(Arc::new(config))
}

/// A client certificate chain and its private key.
pub type ClientCert = (
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// The client config of a QUIC lane: the same roots and `insecure_skip_verify` as
/// [`client_config`], TLS 1.3 only (QUIC needs it), the provider's ALPN (if any), and the client
/// certificate the provider expects, if any. Key logging with `SSLKEYLOGFILE`, as there.
pub fn quic_client_config(
    lane: &str,
    s: &TlsSettings,
    alpn: Option<&[u8]>,
    cert: Option<ClientCert>,
) -> Result<ClientConfig, String> {
    let mut config = build(lane, s, &[&rustls::version::TLS13], cert)?;
    config.alpn_protocols = alpn.map(|a| vec![a.to_vec()]).unwrap_or_default();
    Ok(config)
}

/// What both lanes' configs share: the server name checked, the ring provider with `versions`,
/// the relay verified (or not, loudly) as `s` says, the client certificate if any, key logging.
fn build(
    lane: &str,
    s: &TlsSettings,
    versions: &[&'static rustls::SupportedProtocolVersion],
    cert: Option<ClientCert>,
) -> Result<ClientConfig, String> {
    ServerName::try_from(s.server_name.as_str()).map_err(|_| {
        format!(
            "lane {lane}: server_name {:?} is not a DNS name or IP address",
            s.server_name
        )
    })?;
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("lane {lane}: TLS: {e}"))?;
    let builder = if s.insecure_skip_verify {
        warn_insecure(lane);
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
    } else {
        builder.with_root_certificates(roots(lane, &s.ca_files)?)
    };
    let mut config = match cert {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("lane {lane}: client certificate: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    key_log(&mut config);
    Ok(config)
}

fn warn_insecure(lane: &str) {
    eprintln!(
        "swqos: WARNING: lane {lane}: insecure_skip_verify = true: the relay's certificate is \
         not verified"
    );
}

/// `SSLKEYLOGFILE`: TLS secrets to that file, for decrypting captures (said once per process).
fn key_log(config: &mut ClientConfig) {
    if std::env::var_os("SSLKEYLOGFILE").is_some_and(|p| !p.is_empty()) {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let path = std::env::var_os("SSLKEYLOGFILE").unwrap_or_default();
            eprintln!(
                "swqos: SSLKEYLOGFILE is set: TLS secrets are written to {} (for debugging \
                 captures only)",
                path.to_string_lossy()
            );
        });
        config.key_log = Arc::new(rustls::KeyLogFile::new());
    }
}

/// webpki-roots, the system's roots (loaded once per process; failures ignored) and `ca_files`.
fn roots(lane: &str, ca_files: &[PathBuf]) -> Result<RootCertStore, String> {
    static SYSTEM: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    let system = SYSTEM.get_or_init(|| {
        let certs = rustls_native_certs::load_native_certs().certs;
        eprintln!(
            "swqos: TLS roots: {} bundled, {} from the system",
            webpki_roots::TLS_SERVER_ROOTS.len(),
            certs.len()
        );
        certs
    });
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots.add_parsable_certificates(system.iter().cloned());
    for path in ca_files {
        let fail = |reason: &dyn fmt::Display| {
            format!("lane {lane}: ca_file {}: {reason}", path.display())
        };
        let pem = std::fs::read(path).map_err(|e| fail(&e))?;
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            roots
                .add(cert.map_err(|e| fail(&e))?)
                .map_err(|e| fail(&e))?;
            found += 1;
        }
        if found == 0 {
            return Err(fail(&"no PEM certificate in the file"));
        }
    }
    Ok(roots)
}

/// `insecure_skip_verify`: any certificate is accepted, but the handshake signatures are still
/// checked (so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
