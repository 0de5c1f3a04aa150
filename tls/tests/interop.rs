//! Interoperability with rustls: a real in-memory handshake between a rustls client and a
//! rustls server, then the client's traffic keys are extracted and this crate takes the
//! client's place. Records it seals must be read by the rustls server, records the server
//! writes must open here, and sealing what rustls sealed at the same sequence number must give
//! the same bytes.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{
    ClientConfig, ClientConnection, Connection, ConnectionTrafficSecrets, RootCertStore,
    ServerConfig, ServerConnection, SupportedCipherSuite,
};
use swqos_tls::{
    content_type, PostHandshake, RecordOpener, RecordSealer, Suite, TrafficKeys, TrafficSecret,
    Version, KEY_UPDATE_NOT_REQUESTED,
};

/// Records `CLIENT_TRAFFIC_SECRET_0` and `SERVER_TRAFFIC_SECRET_0` (the SSLKEYLOGFILE labels).
#[derive(Debug, Default)]
struct KeyLog(Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for KeyLog {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((label.to_string(), secret.to_vec()));
    }
}

impl KeyLog {
    fn get(&self, label: &str) -> Vec<u8> {
        let log = self.0.lock().unwrap();
        log.iter().find(|(l, _)| l == label).unwrap().1.clone()
    }
}

/// Moves everything `from` wants to write into `to`; returns the bytes moved.
fn transfer(from: &mut Connection, to: &mut Connection) -> usize {
    let bytes = drain(from);
    feed(to, &bytes);
    bytes.len()
}

fn drain(from: &mut Connection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut bytes).unwrap();
    }
    bytes
}

fn feed(to: &mut Connection, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        to.read_tls(&mut bytes).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn read_plaintext(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.reader().read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    out
}

fn keys(suite: Suite, secrets: ConnectionTrafficSecrets) -> TrafficKeys {
    let (key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (key, iv),
        _ => panic!("unexpected secrets"),
    };
    TrafficKeys::new(suite, key.as_ref(), iv.as_ref()).unwrap()
}

/// Seals `data` as application-data records of at most `chunk` bytes.
fn seal_all(sealer: &mut RecordSealer, data: &[u8], chunk: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for piece in data.chunks(chunk) {
        let at = sealer.plaintext_offset();
        let mut out = vec![0; sealer.record_len(piece.len())];
        out[at..at + piece.len()].copy_from_slice(piece);
        let n = sealer
            .seal_in_place(&mut out, piece.len(), content_type::APPLICATION_DATA)
            .unwrap();
        wire.extend_from_slice(&out[..n]);
    }
    wire
}

/// Opens every record of `wire`; returns (content type, plaintext) per record.
fn open_all(opener: &mut RecordOpener, mut wire: Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let opened = opener.open_in_place(&mut wire[at..]).unwrap();
        let range = opened.plaintext.start + at..opened.plaintext.end + at;
        out.push((opened.content_type, wire[range].to_vec()));
        at += opened.record_len;
    }
    out
}

fn app_data(records: &[(u8, Vec<u8>)]) -> Vec<u8> {
    records
        .iter()
        .filter(|(t, _)| *t == content_type::APPLICATION_DATA)
        .flat_map(|(_, p)| p.clone())
        .collect()
}

fn interop(rustls_suite: SupportedCipherSuite, expect: Suite) {
    let provider = Arc::new(CryptoProvider {
        cipher_suites: vec![rustls_suite],
        ..default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] = match expect.version() {
        Version::Tls13 => &[&rustls::version::TLS13],
        Version::Tls12 => &[&rustls::version::TLS12],
    };
    let cert = rcgen::generate_simple_self_signed(vec!["relay.test".to_string()]).unwrap();
    let cert_der: CertificateDer<'static> = cert.cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der()));

    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let mut client_config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_config.enable_secret_extraction = true;
    let key_log = Arc::new(KeyLog::default());
    client_config.key_log = key_log.clone();

    let mut client = Connection::from(
        ClientConnection::new(Arc::new(client_config), "relay.test".try_into().unwrap()).unwrap(),
    );
    let mut server = Connection::from(ServerConnection::new(Arc::new(server_config)).unwrap());
    for _ in 0..10 {
        let moved = transfer(&mut client, &mut server) + transfer(&mut server, &mut client);
        if moved == 0 && !client.is_handshaking() && !server.is_handshaking() {
            break;
        }
    }
    assert!(!client.is_handshaking() && !server.is_handshaking());
    let negotiated = server.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(Suite::from_iana(u16::from(negotiated)), Some(expect));

    // rustls seals one record; this crate must seal the identical bytes at its sequence number.
    let first = b"POST /api/v1/transactions HTTP/1.1\r\nHost: relay.test\r\n";
    client.writer().write_all(first).unwrap();
    let rustls_record = drain(&mut client);

    let secrets = client.dangerous_extract_secrets().unwrap();
    let (tx_seq, tx) = secrets.tx;
    let (rx_seq, rx) = secrets.rx;
    let tx = keys(expect, tx);
    let rx = keys(expect, rx);

    let mut sealer = RecordSealer::new(tx.clone(), tx_seq - 1);
    assert_eq!(seal_all(&mut sealer, first, 1 << 14), rustls_record);
    assert_eq!(sealer.seq(), tx_seq);
    feed(&mut server, &rustls_record);
    assert_eq!(read_plaintext(&mut server), first);

    // A request split into segment-sized records, read by rustls.
    let body: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let wire = seal_all(&mut sealer, &body, 1400);
    assert_eq!(wire.len(), body.len() + 4 * sealer.overhead());
    feed(&mut server, &wire);
    assert_eq!(read_plaintext(&mut server), body);

    // The response rustls writes opens here.
    let response: Vec<u8> = (0..20000u32).map(|i| (i * 13) as u8).collect();
    server.writer().write_all(&response).unwrap();
    let mut opener = RecordOpener::new(rx.clone(), rx_seq);
    let records = open_all(&mut opener, drain(&mut server));
    assert_eq!(app_data(&records), response);

    if expect.version() == Version::Tls13 {
        // The SSLKEYLOGFILE secrets derive the keys rustls extracted.
        let client_secret =
            TrafficSecret::new(expect, &key_log.get("CLIENT_TRAFFIC_SECRET_0")).unwrap();
        let server_secret =
            TrafficSecret::new(expect, &key_log.get("SERVER_TRAFFIC_SECRET_0")).unwrap();
        assert_eq!(client_secret.keys().key(), tx.key());
        assert_eq!(client_secret.keys().iv(), tx.iv());
        assert_eq!(server_secret.keys().key(), rx.key());
        assert_eq!(server_secret.keys().iv(), rx.iv());

        // KeyUpdate from the server: the handshake record under the old keys, then data under
        // the next secret's.
        server.refresh_traffic_keys().unwrap();
        server.writer().write_all(b"after update").unwrap();
        let mut wire = drain(&mut server);
        let first = opener.open_in_place(&mut wire).unwrap();
        assert_eq!(first.content_type, content_type::HANDSHAKE);
        let (msg, _) = PostHandshake::parse(&wire[first.plaintext.clone()]).unwrap();
        assert!(matches!(msg, PostHandshake::KeyUpdate { .. }), "{msg:?}");
        opener.rekey(server_secret.next().keys());
        let records = open_all(&mut opener, wire[first.record_len..].to_vec());
        assert_eq!(app_data(&records), b"after update");

        // This side's KeyUpdate, then data under its next secret, read by rustls.
        let mut out = vec![0; sealer.record_len(KEY_UPDATE_NOT_REQUESTED.len())];
        out[5..10].copy_from_slice(&KEY_UPDATE_NOT_REQUESTED);
        let n = sealer
            .seal_in_place(&mut out, 5, content_type::HANDSHAKE)
            .unwrap();
        feed(&mut server, &out[..n]);
        sealer.rekey(client_secret.next().keys());
        let wire = seal_all(&mut sealer, b"client after update", 100);
        feed(&mut server, &wire);
        assert_eq!(read_plaintext(&mut server), b"client after update");
    }

    // close_notify from this side.
    let mut out = vec![0; sealer.record_len(2)];
    let at = sealer.plaintext_offset();
    out[at..at + 2].copy_from_slice(&[1, 0]);
    let n = sealer
        .seal_in_place(&mut out, 2, content_type::ALERT)
        .unwrap();
    let mut bytes = &out[..n];
    server.read_tls(&mut bytes).unwrap();
    let state = server.process_new_packets().unwrap();
    assert!(state.peer_has_closed());
}

#[test]
fn tls13_aes_128_gcm() {
    interop(
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        Suite::Tls13Aes128GcmSha256,
    );
}

#[test]
fn tls13_aes_256_gcm() {
    interop(
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        Suite::Tls13Aes256GcmSha384,
    );
}

#[test]
fn tls13_chacha20_poly1305() {
    interop(
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        Suite::Tls13Chacha20Poly1305Sha256,
    );
}

#[test]
fn tls12_aes_128_gcm() {
    interop(
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        Suite::Tls12EcdheAes128GcmSha256,
    );
}

#[test]
fn tls12_aes_256_gcm() {
    interop(
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        Suite::Tls12EcdheAes256GcmSha384,
    );
}

#[test]
fn tls12_chacha20_poly1305() {
    interop(
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        Suite::Tls12EcdheChacha20Poly1305Sha256,
    );
}
