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

/// The token origin `node_id` signs the requests it forwards with: only
/// origins sharing `secret` (one database) can make it.
pub fn origin_token(secret: &[u8], node_id: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("any key length");
    mac.update(format!("origin:{node_id}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether `token` is the owner token of `r` (compared in constant time).
pub fn is_owner(r: &Record, token: &str) -> bool {
    same(&sha256_hex(token), &r.owner_hash)
}

/// Whether two strings are equal, in time that depends only on their length.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
