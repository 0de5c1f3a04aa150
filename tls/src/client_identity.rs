//! The client certificate a QUIC lane presents, as each provider expects ([`ClientIdentity`]):
//! none, self-signed of a fresh key (with the API key or the wallet's public key as its subject
//! CN), or of the user's Solana keypair itself (Ed25519). Built once at start; private key bytes
//! read from a file are zeroized after use. Feature `client-identity`: the data plane's QUIC
//! lanes and the benchmark's quinn baseline present the same certificates.

use std::path::Path;

use crate::client_config::{quic_client_config, ClientCert, TlsSettings};
use rcgen::{
    CertificateParams, CustomExtension, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use swqos_wire::quic_relay::{
    ClientIdentity, QuicProvider, LUNAR_LANDER_MEV_OID, LUNAR_LANDER_MEV_VALUE,
};
use zeroize::Zeroizing;

/// The PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The subject CN of certificates that carry no API key (what Solana's own tools write).
const DEFAULT_CN: &str = "Solana node";

/// The rustls configuration of QUIC lane `lane` of `provider`: its identity (from `api_key` or
/// `keypair_file`; `mev` adds Lunar Lander's extension), the provider's ALPN, and the relay's
/// verification as `tls` says. The one recipe both the data plane's lanes and the benchmark's
/// quinn baseline use.
pub fn quic_lane_config(
    lane: &str,
    provider: QuicProvider,
    api_key: Option<&str>,
    keypair_file: Option<&Path>,
    mev: bool,
    tls: &TlsSettings,
) -> Result<rustls::ClientConfig, String> {
    let mev_extension = mev && provider == QuicProvider::LunarLander;
    let cert = client_cert(provider.identity(), api_key, keypair_file, mev_extension)
        .map_err(|e| format!("lane {lane}: {e}"))?;
    quic_client_config(lane, tls, provider.alpn(), cert)
}

/// The certificate and key of `identity` (`None` for [`ClientIdentity::None`]): `api_key` is
/// the lane's key, `keypair_file` its Solana keypair file, `mev_extension` adds Lunar Lander's
/// MEV-protection extension. Errors name the file and what is wrong, never a key.
pub fn client_cert(
    identity: ClientIdentity,
    api_key: Option<&str>,
    keypair_file: Option<&Path>,
    mev_extension: bool,
) -> Result<Option<ClientCert>, String> {
    let keypair = || keypair_file.ok_or("this provider needs `keypair_file`");
    let (key, cn) = match identity {
        ClientIdentity::None => return Ok(None),
        ClientIdentity::Ephemeral => (fresh(&PKCS_ED25519)?, DEFAULT_CN.to_string()),
        ClientIdentity::ApiKeyCn => (
            fresh(&PKCS_ECDSA_P256_SHA256)?,
            api_key
                .ok_or("this provider needs an API key (`token`)")?
                .to_string(),
        ),
        ClientIdentity::WalletCn => {
            let (_, public) = solana_keypair(keypair()?)?;
            (
                fresh(&PKCS_ECDSA_P256_SHA256)?,
                bs58::encode(public).into_string(),
            )
        }
        ClientIdentity::WalletKey => (solana_keypair(keypair()?)?.0, DEFAULT_CN.to_string()),
    };
    let mut params = CertificateParams::new(vec!["localhost".to_string()])
        .map_err(|e| format!("client certificate: {e}"))?;
    params.distinguished_name.push(DnType::CommonName, cn);
    if mev_extension {
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &LUNAR_LANDER_MEV_OID,
                LUNAR_LANDER_MEV_VALUE.to_vec(),
            ));
    }
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("client certificate: {e}"))?;
    let der = Zeroizing::new(key.serialize_der());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec()));
    Ok(Some((vec![CertificateDer::from(cert.der().to_vec())], key)))
}

/// A fresh key of `alg`.
fn fresh(alg: &'static rcgen::SignatureAlgorithm) -> Result<KeyPair, String> {
    KeyPair::generate_for(alg).map_err(|e| format!("client key: {e}"))
}

/// The Ed25519 key of a Solana keypair file and its public key: a JSON array of 64 bytes, the
/// secret seed then the public key (as `solana-keygen` writes it), which must match the seed.
fn solana_keypair(path: &Path) -> Result<(KeyPair, [u8; 32]), String> {
    let fail = |why: &str| format!("keypair_file {}: {why}", path.display());
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| fail(&e.to_string()))?);
    let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
        serde_json::from_str(&text)
            .map_err(|_| fail("not a Solana keypair file (a JSON array of 64 bytes)"))?,
    );
    if bytes.len() != 64 {
        return Err(fail(&format!(
            "holds {} bytes; expected 64 (a 32-byte secret seed, then the public key)",
            bytes.len()
        )));
    }
    ring::signature::Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..])
        .map_err(|_| fail("its public key does not belong to its secret key"))?;
    let mut pkcs8 = Zeroizing::new(Vec::with_capacity(48));
    pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
    pkcs8.extend_from_slice(&bytes[..32]);
    let key =
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(&pkcs8[..]), &PKCS_ED25519)
            .map_err(|e| fail(&format!("cannot use its key: {e}")))?;
    let mut public = [0u8; 32];
    public.copy_from_slice(&bytes[32..]);
    Ok((key, public))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keypair_file(dir: &Path, seed: [u8; 32]) -> std::path::PathBuf {
        let kp = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        use ring::signature::KeyPair as _;
        let mut all = seed.to_vec();
        all.extend_from_slice(kp.public_key().as_ref());
        let path = dir.join("id.json");
        std::fs::write(&path, serde_json::to_string(&all).unwrap()).unwrap();
        path
    }

    #[test]
    fn a_solana_keypair_signs_a_certificate_of_its_own_public_key() {
        let dir = std::env::temp_dir().join(format!("swqos-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = keypair_file(&dir, [7; 32]);
        let (chain, _) = client_cert(ClientIdentity::WalletKey, None, Some(&path), false)
            .unwrap()
            .unwrap();
        let kp = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        use ring::signature::KeyPair as _;
        let public = kp.public_key().as_ref();
        assert!(
            chain[0].windows(32).any(|w| w == public),
            "the certificate carries the keypair's public key"
        );
        // A file whose public half does not match its seed is refused, naming the file.
        let mut bad: Vec<u8> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        bad[40] ^= 1;
        std::fs::write(&path, serde_json::to_string(&bad).unwrap()).unwrap();
        let err = client_cert(ClientIdentity::WalletKey, None, Some(&path), false).unwrap_err();
        assert!(
            err.contains("id.json") && err.contains("does not belong"),
            "{err}"
        );
        std::fs::write(&path, "[1,2,3]").unwrap();
        let err = client_cert(ClientIdentity::WalletKey, None, Some(&path), false).unwrap_err();
        assert!(err.contains("holds 3 bytes"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_api_key_becomes_the_subject_cn() {
        let key = "a1b2c3d4-0000-4000-8000-000000000001";
        let (chain, _) = client_cert(ClientIdentity::ApiKeyCn, Some(key), None, true)
            .unwrap()
            .unwrap();
        assert!(chain[0].windows(key.len()).any(|w| w == key.as_bytes()));
        // Lunar Lander's MEV extension: OID 2.999.1.1 (06 03 88 37 01 01), BOOLEAN TRUE.
        let ext = [0x06, 0x04, 0x88, 0x37, 0x01, 0x01];
        assert!(chain[0].windows(ext.len()).any(|w| w == ext));
        assert!(client_cert(ClientIdentity::ApiKeyCn, None, None, false).is_err());
        assert!(client_cert(ClientIdentity::None, None, None, false)
            .unwrap()
            .is_none());
    }
}
