//! The zone's signing key, read from files: BIND's pair
//! `K<zone>.+<alg>+<tag>.key` / `.private` (what `dnssec-keygen` writes and
//! SkyDNS v1's `-dnssec` read), or a PKCS#8 PEM private key (Knot's `keymgr`
//! keystore, `openssl genpkey`).

use std::path::{Path, PathBuf};

use base64::Engine;
use hickory_proto::{
    dnssec::{
        Algorithm, PublicKey, PublicKeyBuf, SigningKey, Verifier,
        crypto::{EcdsaSigningKey, Ed25519SigningKey, RsaSigningKey},
        rdata::DNSKEY,
    },
    rr::Name,
};
use ring::{
    rand::SystemRandom,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair,
    },
};
use rustls_pki_types::{PrivateKeyDer, pem::PemObject};

/// Flags of a key made from a bare private key: zone key + secure entry
/// point (a combined signing key, as Knot's and BIND's defaults).
const CSK_FLAGS: u16 = 257;
/// The Zone Key bit of DNSKEY flags (RFC 4034 2.1.1).
const ZONE_KEY: u16 = 0x0100;

/// Why a key could not be loaded: the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("cannot load -dnssec {}: {why}", path.display())]
pub struct KeyError {
    /// The file (or BIND basename) given.
    pub path: PathBuf,
    /// What is wrong, in one sentence.
    pub why: String,
}

/// A zone signing key: its DNSKEY, the private half and its key tag.
pub struct ZoneKey {
    pub(super) dnskey: DNSKEY,
    pub(super) signing: Box<dyn SigningKey>,
    pub(super) tag: u16,
}

impl std::fmt::Debug for ZoneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneKey")
            .field("algorithm", &self.dnskey.algorithm())
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

impl ZoneKey {
    /// Loads the key at `path` for `zone`: a BIND basename (with or without
    /// `.key`/`.private`), or a `.pem` file.
    ///
    /// # Errors
    /// A missing or broken file, an unsupported algorithm, a public and
    /// private half that do not belong together, or a BIND key for another
    /// zone than `zone`.
    pub fn load(path: &Path, zone: &Name) -> Result<Self, KeyError> {
        let fail = |why: String| KeyError {
            path: path.to_path_buf(),
            why,
        };
        let text = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| fail(format!("{}: {e}", p.display())))
        };
        let is_pem = path.extension().is_some_and(|e| e == "pem");
        if is_pem {
            return Self::from_pem(&text(path)?, zone).map_err(fail);
        }
        let base = path.to_string_lossy();
        let base = base
            .strip_suffix(".key")
            .or_else(|| base.strip_suffix(".private"))
            .unwrap_or(&base);
        let public = text(Path::new(&format!("{base}.key")))?;
        let private = text(Path::new(&format!("{base}.private")))?;
        Self::from_bind(&public, &private, zone).map_err(fail)
    }

    /// A key from BIND's `.key` (the DNSKEY record) and `.private` texts.
    fn from_bind(public: &str, private: &str, zone: &Name) -> Result<Self, String> {
        let (owner, dnskey) = dnskey_line(public)?;
        if !owner.eq_ignore_root(zone) {
            return Err(format!(
                "the key is for {owner}, not for -domain {zone}: generate one with dnssec-keygen -a ECDSAP256SHA256 -f KSK {zone}"
            ));
        }
        if dnskey.flags() & ZONE_KEY == 0 {
            return Err(format!(
                "flags {} are not a zone key's (256 or 257)",
                dnskey.flags()
            ));
        }
        let fields = private_fields(private);
        let algorithm = fields
            .iter()
            .find(|(k, _)| *k == "Algorithm")
            .and_then(|(_, v)| v.split_whitespace().next()?.parse::<u8>().ok())
            .ok_or("the .private file has no Algorithm line")?;
        if Algorithm::from_u8(algorithm) != dnskey.algorithm() {
            return Err(format!(
                "the .private file is for algorithm {algorithm}, the .key file for {}",
                dnskey.algorithm()
            ));
        }
        let secret = fields
            .iter()
            .find(|(k, _)| *k == "PrivateKey")
            .map(|(_, v)| base64::engine::general_purpose::STANDARD.decode(v.trim()))
            .ok_or_else(|| unsupported(dnskey.algorithm()))?
            .map_err(|e| format!("PrivateKey is not base64: {e}"))?;
        let public_key = dnskey.public_key().public_bytes();
        let mismatch = |e| format!("the private key does not match the DNSKEY ({e})");
        let signing: Box<dyn SigningKey> = match dnskey.algorithm() {
            alg @ (Algorithm::ECDSAP256SHA256 | Algorithm::ECDSAP384SHA384) => {
                let ring_alg = if alg == Algorithm::ECDSAP256SHA256 {
                    &ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &ECDSA_P384_SHA384_FIXED_SIGNING
                };
                // DNSKEY holds the point as X | Y; ring wants it uncompressed (0x04 X Y).
                let point = [&[4u8][..], public_key].concat();
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    ring_alg,
                    &secret,
                    &point,
                    &SystemRandom::new(),
                )
                .map_err(mismatch)?;
                Box::new(EcdsaSigningKey::from_ecdsa(pair, alg))
            }
            Algorithm::ED25519 => {
                let pair = Ed25519KeyPair::from_seed_and_public_key(&secret, public_key)
                    .map_err(mismatch)?;
                Box::new(Ed25519SigningKey::from_ed25519(pair))
            }
            other => return Err(unsupported(other)),
        };
        Self::new(dnskey, signing)
    }

    /// A key from a PKCS#8 PEM private key; its DNSKEY is made with flags 257.
    fn from_pem(pem: &str, zone: &Name) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &der else {
            return Err("the PEM key is not PKCS#8 (BEGIN PRIVATE KEY): convert it with openssl pkcs8 -topk8 -nocrypt".into());
        };
        let signing: Box<dyn SigningKey> = if let Ok(key) =
            EcdsaSigningKey::from_pkcs8(pkcs8, Algorithm::ECDSAP256SHA256)
        {
            Box::new(key)
        } else if let Ok(key) = EcdsaSigningKey::from_pkcs8(pkcs8, Algorithm::ECDSAP384SHA384) {
            Box::new(key)
        } else if let Some(key) = lenient_ecdsa(pkcs8.secret_pkcs8_der()) {
            key
        } else if let Ok(key) = Ed25519SigningKey::from_pkcs8(pkcs8) {
            Box::new(key)
        } else if let Ok(key) = RsaSigningKey::from_pkcs8(pkcs8, Algorithm::RSASHA256) {
            Box::new(key)
        } else {
            return Err(format!(
                "the PEM key is none of ECDSAP256SHA256, ECDSAP384SHA384, ED25519, RSASHA256 (zone {zone})"
            ));
        };
        let public = signing
            .to_public_key()
            .map_err(|e| format!("no public key: {e}"))?;
        Self::new(DNSKEY::with_flags(CSK_FLAGS, public), signing)
    }

    fn new(dnskey: DNSKEY, signing: Box<dyn SigningKey>) -> Result<Self, String> {
        let tag = dnskey
            .calculate_key_tag()
            .map_err(|e| format!("cannot compute the key tag: {e}"))?;
        Ok(Self {
            dnskey,
            signing,
            tag,
        })
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.dnskey.algorithm()
    }

    /// The key tag (as in BIND's file names and in DS records).
    pub fn tag(&self) -> u16 {
        self.tag
    }
}

/// An EC key ring refuses as written by GnuTLS (Knot's `keymgr`): the
/// private scalar with a leading zero byte (33 bytes for P-256). The
/// PKCS#8 and SEC1 structures are read by the RustCrypto crates; the scalar
/// is taken without the zero and paired with the public point beside it.
fn lenient_ecdsa(der: &[u8]) -> Option<Box<dyn SigningKey>> {
    let info = pkcs8::PrivateKeyInfo::try_from(der).ok()?;
    let ec = sec1::EcPrivateKey::try_from(info.private_key).ok()?;
    let public = ec.public_key?;
    let (alg, ring_alg, size) = match public.len() {
        65 => (
            Algorithm::ECDSAP256SHA256,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            32,
        ),
        97 => (
            Algorithm::ECDSAP384SHA384,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            48,
        ),
        _ => return None,
    };
    let secret = ec.private_key;
    let extra = secret.len().checked_sub(size)?;
    let (zeros, scalar) = secret.split_at(extra);
    if zeros.iter().any(|b| *b != 0) {
        return None;
    }
    let pair = EcdsaKeyPair::from_private_key_and_public_key(
        ring_alg,
        scalar,
        public,
        &SystemRandom::new(),
    )
    .ok()?;
    Some(Box::new(EcdsaSigningKey::from_ecdsa(pair, alg)))
}

fn unsupported(algorithm: Algorithm) -> String {
    format!(
        "algorithm {algorithm} is not supported from BIND files: use ECDSAP256SHA256 (13), ECDSAP384SHA384 (14) or ED25519 (15), or a PKCS#8 .pem for RSASHA256"
    )
}

/// The owner and DNSKEY of the first record in a `.key` file
/// (`<owner> [ttl] [IN] DNSKEY <flags> 3 <alg> <base64>`; `;` starts a comment).
fn dnskey_line(text: &str) -> Result<(Name, DNSKEY), String> {
    for line in text.lines() {
        let line = line.split(';').next().unwrap_or("").trim();
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(at) = tokens.iter().position(|t| t.eq_ignore_ascii_case("DNSKEY")) else {
            continue;
        };
        let owner = tokens
            .first()
            .filter(|_| at > 0)
            .and_then(|o| Name::from_ascii(o).ok())
            .ok_or("the .key file's DNSKEY line has no owner name")?;
        // hickory's text parser refuses DNSKEY (it expects to make keys),
        // so the four fields are read here: flags, protocol 3, algorithm, key.
        let bad =
            || "the .key file's DNSKEY is not `<flags> 3 <algorithm> <base64 key>`".to_string();
        let [flags, protocol, algorithm, key @ ..] = tokens.get(at + 1..).unwrap_or_default()
        else {
            return Err(bad());
        };
        let (Ok(flags), Ok(3), Ok(algorithm)) = (
            flags.parse::<u16>(),
            protocol.parse::<u8>(),
            algorithm.parse::<u8>(),
        ) else {
            return Err(bad());
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key.concat())
            .map_err(|e| format!("the .key file's public key is not base64: {e}"))?;
        let public = PublicKeyBuf::new(key, Algorithm::from_u8(algorithm));
        return Ok((owner, DNSKEY::with_flags(flags, public)));
    }
    Err("the .key file holds no DNSKEY record".into())
}

/// The `Name: value` lines of a `.private` file.
fn private_fields(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "skydns.local.";
    // Test keys made with dnssec-keygen -a <alg> -f KSK skydns.local (BIND 9.18).
    const P256_KEY: &str = "; This is a key-signing key, keyid 24374, for skydns.local.\n\
        skydns.local. IN DNSKEY 257 3 13 pqF9Pt0jucmL7c81DHfJAXXnWwtrhWvVy9x+UCiILoU23MdwPN5yP89P pGGCIEFl7PUYb5mrSo3SHfhIrUzgQg==\n";
    const P256_PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\n\
        PrivateKey: v2C4ROEUp+0wOdiAmgVz9MV+Ug+1VXhRyL9eUDasD5Y=\nCreated: 20261203183436\n";
    const ED25519_KEY: &str =
        "skydns.local. IN DNSKEY 257 3 15 84ckvr5rpud7Gip2an3Kl7rFCIitPRMjwug1ftAqFGQ=\n";
    const ED25519_PRIVATE: &str = "Private-key-format: v1.3\nAlgorithm: 15 (ED25519)\n\
        PrivateKey: XKn6xO3UE+Kkxne3+8yoADqX/+VC6yKOv3Z5PBKuWHo=\n";

    // keymgr -D <dir> skydns.local. generate algorithm=13 ksk=yes zsk=yes
    // (Knot 3.2, GnuTLS): the scalar is written with a leading zero.
    const KNOT_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGUAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHoweAIBAQQhALgElrZsNprL9BMx
n51OTKtSycCgePrZ4DYtGUi9UoMRoAoGCCqGSM49AwEHoUQDQgAEdZgSPoG3Isj9
2bod7DiIZgGM/sIlHZZun+YiFRjUs16obSyo1WPuyqs0Ij2I/TP8HohnZqmL7So3
XsRJhDRK5Q==
-----END PRIVATE KEY-----
";

    fn zone() -> Name {
        Name::from_ascii(ZONE).expect("name")
    }

    #[test]
    fn bind_pairs_load_with_the_tag_in_their_file_name() {
        let key = ZoneKey::from_bind(P256_KEY, P256_PRIVATE, &zone()).expect("P-256 loads");
        assert_eq!(key.algorithm(), Algorithm::ECDSAP256SHA256);
        assert_eq!(key.tag(), 24374);
        let key = ZoneKey::from_bind(ED25519_KEY, ED25519_PRIVATE, &zone()).expect("Ed25519");
        assert_eq!(key.algorithm(), Algorithm::ED25519);
        assert_eq!(key.tag(), 48371);
    }

    #[test]
    fn a_broken_mismatched_or_foreign_pair_says_why() {
        let other = Name::from_ascii("example.org.").expect("name");
        let e = ZoneKey::from_bind(P256_KEY, P256_PRIVATE, &other).expect_err("foreign zone");
        assert!(e.contains("not for -domain example.org."), "{e}");
        let e = ZoneKey::from_bind("nothing", P256_PRIVATE, &zone()).expect_err("no record");
        assert!(e.contains("no DNSKEY"), "{e}");
        let e = ZoneKey::from_bind(P256_KEY, ED25519_PRIVATE, &zone()).expect_err("alg");
        assert!(e.contains("algorithm 15"), "{e}");
        let other_secret = P256_PRIVATE.replace("v2C4", "w2C4");
        let e = ZoneKey::from_bind(P256_KEY, &other_secret, &zone()).expect_err("mismatch");
        assert!(e.contains("does not match"), "{e}");
        let e = ZoneKey::from_bind(P256_KEY, "Algorithm: 13\nPrivateKey: !!\n", &zone())
            .expect_err("base64");
        assert!(e.contains("base64"), "{e}");
    }

    #[test]
    fn a_generated_pem_key_loads_with_csk_flags() {
        let pkcs8 =
            EcdsaSigningKey::generate_pkcs8(Algorithm::ECDSAP256SHA256).expect("generate key");
        let text = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.secret_pkcs8_der())
        );
        let key = ZoneKey::from_pem(&text, &zone()).expect("loads");
        assert_eq!(key.algorithm(), Algorithm::ECDSAP256SHA256);
        assert_eq!(key.dnskey.flags(), CSK_FLAGS);
        assert!(ZoneKey::from_pem("not pem", &zone()).is_err());
    }

    #[test]
    fn a_knot_key_with_a_zero_padded_scalar_loads_with_knots_key_tag() {
        let key = ZoneKey::from_pem(KNOT_PEM, &zone()).expect("loads");
        assert_eq!(key.algorithm(), Algorithm::ECDSAP256SHA256);
        // What `keymgr ... list` prints for it.
        assert_eq!(key.tag(), 45595);
    }
}
