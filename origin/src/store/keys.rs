//! Stream keys are never stored: a key is derived from the owner token
//! (HMAC-SHA256 with a per-installation secret, and a version bumped by
//! rotation), and only its hash is kept, to find the broadcast on publish.
//! So the key can be shown again to whoever presents the owner token, and to
//! nobody else, and a stolen database yields no working key (pure).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::record::{Record, hex, sha256_hex};

/// Length of the per-installation secret.
pub const SECRET_BYTES: usize = 32;

/// Random bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    Ok(hex(&random_bytes(bytes)?))
}

/// Random bytes from the system.
pub fn random_bytes(bytes: usize) -> Result<Vec<u8>, getrandom::Error> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b)?;
    Ok(b)
}

/// The stream key of `r` for the holder of `owner_token`, under `secret`.
pub fn stream_key(secret: &[u8], r: &Record, owner_token: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(format!("{owner_token}:{}", r.key_version).as_bytes());
    format!("live_{}", &hex(&mac.finalize().into_bytes())[..32])
}

/// Whether `token` is the owner token of `r` (compared in constant time).
pub fn is_owner(r: &Record, token: &str) -> bool {
    let a = sha256_hex(token);
    a.len() == r.owner_hash.len()
        && a.bytes()
            .zip(r.owner_hash.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
