//! Vectors from RFC 8448 section 3 ("Simple 1-RTT Handshake", TLS_AES_128_GCM_SHA256).

use swqos_tls::{
    content_type, PostHandshake, RecordOpener, RecordSealer, Suite, TrafficKeys, TrafficSecret,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SUITE: Suite = Suite::Tls13Aes128GcmSha256;
const CLIENT_AP: &str = "9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5";
const SERVER_AP: &str = "a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643";
const CLIENT_DATA: &str = "1703030043a23f7054b62c94d0affafe8228ba55cbefacea42f914aa66bcab3f
    2b9819a8a5b46b395bd54a9a20441e2b62974e1f5a6292a2977014bd1e3deae63aeebb21694915e4";
const SERVER_DATA: &str = "17030300432e937e11ef4ac740e538ad36005fc4a46932fc3225d05f82aa1b36
    e30efaf97d90e6dffc602dcb501a59a8fcc49c4bf2e5f0a21c0047c2abf332540dd032e167c2955d";
const CLIENT_ALERT: &str = "1703030013c9872760655666b74d7ff1153efd6db6d0b0e3";
const SERVER_ALERT: &str = "1703030013b58fd67166ebf599d24720cfbe7efa7a8864a9";
const TICKET_RECORD: &str = "17030300de3a6b8f90414a97d6959c3487680de5134a2b240e6cffac116e95d4
    1d6af8f6b580dcf3d11d63c758db289a015940252f55713e061dc13e078891a38efbcf5753ad8ef170ad3c7353
    d16d9da773b9ca7f2b9fa1b6c0d4a3d03f75e09c30ba1e62972ac46f75f7b981be63439b2999ce130646151398
    91d5e4c5b406f16e3fc181a77ca475840025db2f0a77f81b5ab05b94c01346755f69232c86519d86cbeeac87aa
    c347d143f9605d64f650db4d023e70e952ca49fe5137121c74bc2697687e248746d6df353005f3bce18696129c
    8153556b3b6c6779b37bf15985684f";
const TICKET: &str = "040000c90000001efad6aac502000000b22c035d829359ee5ff7af4ec900000000262a6494
    dc486d2c8a34cb33fa90bf1b0070ad3c498883c9367c09a2be785abc55cd226097a3a982117283f82a03a143efd3
    ff5dd36d64e861be7fd61d2827db279cce145077d454a3664d4e6da4d29ee03725a6a4dafcd0fc67d2aea7052951
    3e3da2677fa5906c5b3f7d8f92f228bda40dda721470f9fbf297b5aea617646fac5c03272e970727c621a79141ef
    5f7de6505e5bfbc388e93343694093934ae4d3570008002a000400000400";

fn payload() -> Vec<u8> {
    (0u8..=0x31).collect()
}

#[test]
fn application_keys() {
    let server = TrafficSecret::new(SUITE, &hex(SERVER_AP)).unwrap().keys();
    assert_eq!(server.key(), hex("9f02283b6c9c07efc26bb9f2ac92e356"));
    assert_eq!(server.iv()[..], hex("cf782b88dd83549aadf1e984"));
    let client = TrafficSecret::new(SUITE, &hex(CLIENT_AP)).unwrap().keys();
    assert_eq!(client.key(), hex("17422dda596ed5d9acd890e3c63f5051"));
    assert_eq!(client.iv()[..], hex("5b78923dee08579033e523d9"));
}

fn seal(keys: TrafficKeys, seq: u64, ty: u8, plaintext: &[u8]) -> Vec<u8> {
    let mut sealer = RecordSealer::new(keys, seq);
    let mut out = vec![0; sealer.record_len(plaintext.len())];
    let at = sealer.plaintext_offset();
    out[at..at + plaintext.len()].copy_from_slice(plaintext);
    let n = sealer.seal_in_place(&mut out, plaintext.len(), ty).unwrap();
    assert_eq!(n, out.len());
    assert_eq!(sealer.seq(), seq + 1);
    out
}

fn open(keys: TrafficKeys, seq: u64, record: &str) -> (u8, Vec<u8>) {
    let mut buf = hex(record);
    let mut opener = RecordOpener::new(keys, seq);
    let opened = opener.open_in_place(&mut buf).unwrap();
    assert_eq!(opened.record_len, buf.len());
    (opened.content_type, buf[opened.plaintext].to_vec())
}

#[test]
fn client_records() {
    let keys = || TrafficSecret::new(SUITE, &hex(CLIENT_AP)).unwrap().keys();
    let data = content_type::APPLICATION_DATA;
    assert_eq!(seal(keys(), 0, data, &payload()), hex(CLIENT_DATA));
    assert_eq!(open(keys(), 0, CLIENT_DATA), (data, payload()));
    let alert = content_type::ALERT;
    assert_eq!(seal(keys(), 1, alert, &[1, 0]), hex(CLIENT_ALERT));
    assert_eq!(open(keys(), 1, CLIENT_ALERT), (alert, vec![1, 0]));
}

#[test]
fn server_records() {
    let keys = || TrafficSecret::new(SUITE, &hex(SERVER_AP)).unwrap().keys();
    let (ty, ticket) = open(keys(), 0, TICKET_RECORD);
    assert_eq!((ty, &ticket), (content_type::HANDSHAKE, &hex(TICKET)));
    match PostHandshake::parse(&ticket) {
        Some((PostHandshake::NewSessionTicket(body), n)) => {
            assert_eq!((body.len(), n), (ticket.len() - 4, ticket.len()))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seal(keys(), 0, content_type::HANDSHAKE, &ticket),
        hex(TICKET_RECORD)
    );
    let data = content_type::APPLICATION_DATA;
    assert_eq!(open(keys(), 1, SERVER_DATA), (data, payload()));
    assert_eq!(seal(keys(), 1, data, &payload()), hex(SERVER_DATA));
    assert_eq!(
        open(keys(), 2, SERVER_ALERT),
        (content_type::ALERT, vec![1, 0])
    );
}

#[test]
fn wrong_seq_or_tamper_fails() {
    let keys = || TrafficSecret::new(SUITE, &hex(CLIENT_AP)).unwrap().keys();
    let mut buf = hex(CLIENT_DATA);
    let mut opener = RecordOpener::new(keys(), 1);
    assert_eq!(
        opener.open_in_place(&mut buf),
        Err(swqos_tls::Error::Decrypt)
    );
    assert_eq!(opener.seq(), 1);
    let mut buf = hex(CLIENT_DATA);
    buf[20] ^= 1;
    let mut opener = RecordOpener::new(keys(), 0);
    assert_eq!(
        opener.open_in_place(&mut buf),
        Err(swqos_tls::Error::Decrypt)
    );
}
