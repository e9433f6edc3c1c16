//! The API secret (`-secret`): which `Authorization` headers carry it,
//! compared in constant time.

use subtle::ConstantTimeEq;

/// True when an Authorization header carries the secret: as SkyDNS v1 sent it
/// (the bare secret), as `Bearer <secret>`, or as HTTP Basic with the secret
/// as password (what browsers send for the status page). Compared in
/// constant time.
pub(super) fn secret_matches(given: &[u8], secret: &[u8]) -> bool {
    use base64::Engine as _;
    if let Some(b64) = given.strip_prefix(b"Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap_or_default();
        let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
        return constant_time_eq(password, secret);
    }
    let given = given.strip_prefix(b"Bearer ").unwrap_or(given);
    constant_time_eq(given, secret)
}

/// `given == secret` in a time that depends on the secret's length only:
/// unlike `subtle`'s slice `ct_eq`, it does not return early when the
/// lengths differ, so a wrong guess does not even tell the secret's length.
fn constant_time_eq(given: &[u8], secret: &[u8]) -> bool {
    let mut same = given.len().ct_eq(&secret.len());
    for (i, s) in secret.iter().enumerate() {
        same &= given.get(i).copied().unwrap_or(!*s).ct_eq(s);
    }
    bool::from(same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_accepted_bare_bearer_and_basic() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(secret_matches(b"Bearer s3cret", b"s3cret"));
        assert!(secret_matches(b"Basic dXNlcjpzM2NyZXQ=", b"s3cret")); // user:s3cret
        assert!(!secret_matches(b"Basic dXNlcjp3cm9uZw==", b"s3cret")); // user:wrong
        assert!(!secret_matches(b"s3cret2", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
        assert!(!secret_matches(b"s3cre", b"s3cret"));
        assert!(!secret_matches(b"s3crex", b"s3cret"));
        assert!(!secret_matches(b"Bearer ", b"s3cret"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
