//! BOLT11 payment requests: bech32 coding, encoding with a local key, and decoding with
//! signature verification (public-key recovery).
//!
//! Facts from BOLT #11 and BIP-173: the human-readable part is `ln` + currency prefix +
//! optional amount (digits and a multiplier `m`, `u`, `n`, `p`); the data part is a 35-bit
//! timestamp, tagged fields (5-bit type, 10-bit length in 5-bit words, data) and a 520-bit
//! signature (64-byte compact ECDSA signature and a recovery id) over
//! `SHA-256(hrp bytes || data words packed to bytes, zero-padded)`. The bech32 checksum is the
//! BIP-173 one, with no 90-character limit.
//!
//! This module is used by the dev backend (to mint invoices and to play the payer's wallet) and
//! to read an invoice's expiry; real backends sign their own invoices.

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// The bech32 alphabet.
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
/// Longest payment request accepted for decoding, in characters.
pub const MAX_INVOICE_LEN: usize = 7089;

/// Why a payment request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Bolt11Error {
    #[error("not bech32: {0}")]
    /// The bech32 layer is broken (characters, checksum, length).
    Bech32(&'static str),
    #[error("not a BOLT11 payment request: {0}")]
    /// The fields inside are not a valid payment request.
    Format(&'static str),
    #[error("invalid signature")]
    /// The signature does not verify or recover.
    Signature,
}

/// The networks a payment request can be for, by their BOLT11 currency prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// `bc`
    Bitcoin,
    /// `tb`
    Testnet,
    /// `tbs`
    Signet,
    /// `bcrt`
    Regtest,
}

impl Network {
    /// The BOLT11 currency prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Network::Bitcoin => "bc",
            Network::Testnet => "tb",
            Network::Signet => "tbs",
            Network::Regtest => "bcrt",
        }
    }

    fn from_prefix(p: &str) -> Option<Self> {
        Some(match p {
            "bc" => Network::Bitcoin,
            "tb" => Network::Testnet,
            "tbs" => Network::Signet,
            "bcrt" => Network::Regtest,
            _ => return None,
        })
    }
}

/// A decoded, signature-checked payment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedInvoice {
    /// The network, from the currency prefix.
    pub network: Network,
    /// The amount in millisatoshis, when the request names one.
    pub amount_msat: Option<u64>,
    /// Creation time, Unix seconds.
    pub timestamp: u64,
    /// The payment hash (`p`).
    pub payment_hash: [u8; 32],
    /// The payment secret (`s`), when present.
    pub payment_secret: Option<[u8; 32]>,
    /// The `d` field, when present and valid UTF-8.
    pub description: Option<String>,
    /// Seconds after `timestamp` until the request expires (3600 when absent).
    pub expiry_secs: u64,
    /// `c` field (18 when absent).
    pub min_final_cltv_expiry: u64,
    /// The payee's compressed public key: the `n` field, or recovered from the signature.
    pub payee: [u8; 33],
}

impl DecodedInvoice {
    /// Unix time at which the request expires.
    pub fn expires_at(&self) -> u64 {
        self.timestamp.saturating_add(self.expiry_secs)
    }
}

/// What to put in a payment request the dev backend mints.
#[derive(Debug, Clone)]
pub struct InvoiceFields<'a> {
    /// The network (its currency prefix).
    pub network: Network,
    /// The amount, or none for an any-amount request.
    pub amount_msat: Option<u64>,
    /// Creation time, Unix seconds.
    pub timestamp: u64,
    /// The payment hash (`p`).
    pub payment_hash: [u8; 32],
    /// The payment secret (`s`).
    pub payment_secret: [u8; 32],
    /// The description (`d`).
    pub description: &'a str,
    /// Seconds until expiry (`x`).
    pub expiry_secs: u64,
    /// The final CLTV delta (`c`).
    pub min_final_cltv_expiry: u64,
}

fn polymod(values: impl IntoIterator<Item = u8>) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

fn hrp_expand(hrp: &[u8]) -> impl Iterator<Item = u8> + '_ {
    hrp.iter()
        .map(|c| c >> 5)
        .chain(std::iter::once(0))
        .chain(hrp.iter().map(|c| c & 31))
}

/// Encodes bech32 (BIP-173 checksum) from a lower-case HRP and 5-bit words.
pub fn bech32_encode(hrp: &str, data: &[u8]) -> String {
    let pm = polymod(
        hrp_expand(hrp.as_bytes())
            .chain(data.iter().copied())
            .chain([0u8; 6]),
    ) ^ 1;
    let mut out = String::with_capacity(hrp.len() + 1 + data.len() + 6);
    out.push_str(hrp);
    out.push('1');
    for &d in data {
        out.push(CHARSET[usize::from(d & 31)] as char);
    }
    for i in 0..6 {
        out.push(CHARSET[((pm >> (5 * (5 - i))) & 31) as usize] as char);
    }
    out
}

/// Decodes bech32 (BIP-173 checksum, no length limit below [`MAX_INVOICE_LEN`]) into the
/// lower-case HRP and the 5-bit data words without the checksum.
pub fn bech32_decode(s: &str) -> Result<(String, Vec<u8>), Bolt11Error> {
    if s.len() > MAX_INVOICE_LEN {
        return Err(Bolt11Error::Bech32("too long"));
    }
    let has_lower = s.bytes().any(|c| c.is_ascii_lowercase());
    let has_upper = s.bytes().any(|c| c.is_ascii_uppercase());
    if has_lower && has_upper {
        return Err(Bolt11Error::Bech32("mixed case"));
    }
    let s = s.to_ascii_lowercase();
    let sep = s.rfind('1').ok_or(Bolt11Error::Bech32("no separator"))?;
    let (hrp, rest) = s.split_at(sep);
    let data_chars = rest.get(1..).unwrap_or("");
    if hrp.is_empty() || data_chars.len() < 6 {
        return Err(Bolt11Error::Bech32("too short"));
    }
    if !hrp.bytes().all(|c| (33..=126).contains(&c)) {
        return Err(Bolt11Error::Bech32("bad character in prefix"));
    }
    let mut data = Vec::with_capacity(data_chars.len());
    for c in data_chars.bytes() {
        let v = CHARSET
            .iter()
            .position(|&x| x == c)
            .ok_or(Bolt11Error::Bech32("bad character"))?;
        data.push(v as u8);
    }
    if polymod(hrp_expand(hrp.as_bytes()).chain(data.iter().copied())) != 1 {
        return Err(Bolt11Error::Bech32("bad checksum"));
    }
    data.truncate(data.len() - 6);
    Ok((hrp.to_string(), data))
}

/// Regroups 8-bit bytes into 5-bit words, zero-padding the last word.
pub fn bytes_to_words(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (5 - bits)) & 31) as u8);
    }
    out
}

/// Regroups 5-bit words into bytes; trailing bits that do not fill a byte are dropped.
pub fn words_to_bytes(words: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 5 / 8);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &w in words {
        acc = (acc << 5) | u32::from(w & 31);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    out
}

/// Packs all words to bytes, zero-padding the last byte (the signing preimage's form).
fn words_to_bytes_padded(words: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 5 / 8 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &w in words {
        acc = ((acc << 5) | u32::from(w & 31)) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) & 0xff) as u8);
    }
    out
}

fn int_to_words(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v > 0 {
        out.push((v & 31) as u8);
        v >>= 5;
    }
    out.reverse();
    out
}

fn words_to_int(words: &[u8]) -> Option<u64> {
    if words.len() > 12 {
        return None;
    }
    Some(words.iter().fold(0u64, |acc, &w| (acc << 5) | u64::from(w)))
}

/// The BOLT11 amount string for `msat`, in the shortest form.
fn amount_str(msat: u64) -> String {
    const BTC: u64 = 100_000_000_000;
    if msat % BTC == 0 {
        format!("{}", msat / BTC)
    } else if msat % 100_000_000 == 0 {
        format!("{}m", msat / 100_000_000)
    } else if msat % 100_000 == 0 {
        format!("{}u", msat / 100_000)
    } else if msat % 100 == 0 {
        format!("{}n", msat / 100)
    } else {
        format!("{}p", u128::from(msat) * 10)
    }
}

fn parse_amount(s: &str) -> Result<u64, Bolt11Error> {
    let bad = Bolt11Error::Format("bad amount");
    let (digits, mult) = match s.as_bytes().last() {
        Some(c) if c.is_ascii_digit() => (s, None),
        Some(&c) => (&s[..s.len() - 1], Some(c)),
        None => return Err(bad),
    };
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(bad);
    }
    if digits.starts_with('0') {
        return Err(Bolt11Error::Format("amount has a leading zero"));
    }
    let n: u128 = digits.parse().map_err(|_| bad.clone())?;
    let msat: u128 = match mult {
        None => n * 100_000_000_000,
        Some(b'm') => n * 100_000_000,
        Some(b'u') => n * 100_000,
        Some(b'n') => n * 100,
        Some(b'p') => {
            if n % 10 != 0 {
                return Err(Bolt11Error::Format("sub-millisatoshi amount"));
            }
            n / 10
        }
        Some(_) => return Err(bad),
    };
    u64::try_from(msat).map_err(|_| bad)
}

fn push_field(data: &mut Vec<u8>, tag: u8, words: &[u8]) {
    data.push(tag);
    data.push(((words.len() >> 5) & 31) as u8);
    data.push((words.len() & 31) as u8);
    data.extend_from_slice(words);
}

const TAG_P: u8 = 1;
const TAG_S: u8 = 16;
const TAG_D: u8 = 13;
const TAG_N: u8 = 19;
const TAG_X: u8 = 6;
const TAG_C: u8 = 24;
const TAG_9: u8 = 5;

fn signing_hash(hrp: &str, words: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(hrp.as_bytes());
    h.update(words_to_bytes_padded(words));
    h.finalize().into()
}

/// Encodes and signs a payment request with `key`.
pub fn encode(fields: &InvoiceFields<'_>, key: &SigningKey) -> Result<String, Bolt11Error> {
    let mut hrp = format!("ln{}", fields.network.prefix());
    if let Some(msat) = fields.amount_msat {
        hrp.push_str(&amount_str(msat));
    }
    let mut data = Vec::with_capacity(400);
    let ts = fields.timestamp & ((1 << 35) - 1);
    for i in (0..7).rev() {
        data.push(((ts >> (5 * i)) & 31) as u8);
    }
    push_field(&mut data, TAG_P, &bytes_to_words(&fields.payment_hash));
    push_field(&mut data, TAG_S, &bytes_to_words(&fields.payment_secret));
    push_field(
        &mut data,
        TAG_D,
        &bytes_to_words(fields.description.as_bytes()),
    );
    push_field(&mut data, TAG_X, &int_to_words(fields.expiry_secs));
    push_field(
        &mut data,
        TAG_C,
        &int_to_words(fields.min_final_cltv_expiry),
    );
    // Features: var_onion_optin (bit 8) and payment_secret (bit 14), both compulsory.
    push_field(&mut data, TAG_9, &[16, 8, 0]);
    let hash = signing_hash(&hrp, &data);
    let (sig, recid) = key
        .sign_prehash_recoverable(&hash)
        .map_err(|_| Bolt11Error::Signature)?;
    let mut sig_bytes = [0u8; 65];
    sig_bytes[..64].copy_from_slice(&sig.to_bytes());
    sig_bytes[64] = recid.to_byte();
    data.extend(bytes_to_words(&sig_bytes));
    Ok(bech32_encode(&hrp, &data))
}

/// Decodes a payment request and checks its signature.
pub fn decode(invoice: &str) -> Result<DecodedInvoice, Bolt11Error> {
    let invoice = invoice.trim();
    let invoice = invoice
        .strip_prefix("lightning:")
        .or_else(|| invoice.strip_prefix("LIGHTNING:"))
        .unwrap_or(invoice);
    let (hrp, data) = bech32_decode(invoice)?;
    let rest = hrp
        .strip_prefix("ln")
        .ok_or(Bolt11Error::Format("prefix is not ln"))?;
    let cur_len = rest
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(rest.len());
    let network = Network::from_prefix(&rest[..cur_len])
        .ok_or(Bolt11Error::Format("unknown currency prefix"))?;
    let amount_msat = if cur_len < rest.len() {
        Some(parse_amount(&rest[cur_len..])?)
    } else {
        None
    };
    if data.len() < 7 + 104 {
        return Err(Bolt11Error::Format("too short"));
    }
    let (body, sig_words) = data.split_at(data.len() - 104);
    let timestamp = words_to_int(&body[..7]).ok_or(Bolt11Error::Format("timestamp"))?;
    let mut payment_hash = None;
    let mut payment_secret = None;
    let mut description = None;
    let mut expiry_secs = 3600;
    let mut min_final_cltv_expiry = 18;
    let mut payee_field: Option<[u8; 33]> = None;
    let mut i = 7;
    while i < body.len() {
        if i + 3 > body.len() {
            return Err(Bolt11Error::Format("truncated field header"));
        }
        let tag = body[i];
        let len = usize::from(body[i + 1]) * 32 + usize::from(body[i + 2]);
        let start = i + 3;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= body.len())
            .ok_or(Bolt11Error::Format("field runs past the end"))?;
        let words = &body[start..end];
        match tag {
            TAG_P if len == 52 && payment_hash.is_none() => {
                payment_hash = words_to_bytes(words).try_into().ok();
            }
            TAG_S if len == 52 && payment_secret.is_none() => {
                payment_secret = words_to_bytes(words).try_into().ok();
            }
            TAG_D if description.is_none() => {
                description = String::from_utf8(words_to_bytes(words)).ok();
            }
            TAG_N if len == 53 && payee_field.is_none() => {
                payee_field = words_to_bytes(words).try_into().ok();
            }
            TAG_X => {
                expiry_secs = words_to_int(words).ok_or(Bolt11Error::Format("expiry"))?;
            }
            TAG_C => {
                min_final_cltv_expiry =
                    words_to_int(words).ok_or(Bolt11Error::Format("min_final_cltv_expiry"))?;
            }
            _ => {}
        }
        i = end;
    }
    let payment_hash = payment_hash.ok_or(Bolt11Error::Format("no payment hash"))?;
    let sig_bytes = words_to_bytes(sig_words);
    if sig_bytes.len() != 65 {
        return Err(Bolt11Error::Signature);
    }
    let sig = Signature::from_slice(&sig_bytes[..64]).map_err(|_| Bolt11Error::Signature)?;
    let recid = RecoveryId::from_byte(sig_bytes[64]).ok_or(Bolt11Error::Signature)?;
    let hash = signing_hash(&hrp, body);
    let recovered = VerifyingKey::recover_from_prehash(&hash, &sig, recid)
        .map_err(|_| Bolt11Error::Signature)?;
    let recovered_bytes: [u8; 33] = recovered
        .to_encoded_point(true)
        .as_bytes()
        .try_into()
        .map_err(|_| Bolt11Error::Signature)?;
    let payee = match payee_field {
        Some(n) if n != recovered_bytes => return Err(Bolt11Error::Signature),
        Some(n) => n,
        None => recovered_bytes,
    };
    Ok(DecodedInvoice {
        network,
        amount_msat,
        timestamp,
        payment_hash,
        payment_secret,
        description,
        expiry_secs,
        min_final_cltv_expiry,
        payee,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bip173_vectors() {
        for v in [
            "A12UEL5L",
            "a12uel5l",
            "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio1tt5tgs",
            "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
            "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
        ] {
            let (hrp, data) = bech32_decode(v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(bech32_encode(&hrp, &data), v.to_ascii_lowercase());
        }
        for bad in [
            "pzry9x0s0muk",
            "1pzry9x0s0muk",
            "x1b4n0q5v",
            "li1dgmt3",
            "A1G7SGD8",
            "a12UEL5L",
        ] {
            assert!(bech32_decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn word_regrouping() {
        let b = [0xffu8, 0x00, 0xab];
        let w = bytes_to_words(&b);
        assert_eq!(w.len(), 5);
        assert_eq!(words_to_bytes(&w), b);
        assert_eq!(words_to_bytes_padded(&[31, 31]), vec![0xff, 0xc0]);
        assert_eq!(words_to_bytes_padded(&[1; 8]), words_to_bytes(&[1; 8]));
    }

    #[test]
    fn amounts() {
        for (msat, s) in [
            (100_000_000_000u64, "1"),
            (250_000_000, "2500u"),
            (100_000, "1u"),
            (2_500_000, "25u"),
            (1_000, "10n"),
            (1, "10p"),
            (1_234_567, "12345670p"),
        ] {
            assert_eq!(amount_str(msat), s);
            assert_eq!(parse_amount(s).unwrap(), msat);
        }
        assert!(parse_amount("1x").is_err());
        assert!(parse_amount("01u").is_err());
        assert!(parse_amount("15p").is_err());
        assert!(parse_amount("99999999999999999999").is_err());
    }

    /// The first example of BOLT #11 ("Please make a donation of any amount using payment_hash
    /// 0001020304050607080900010203040506070809000102030405060708090102 to me @03e7156a…").
    #[test]
    fn decodes_the_spec_example() {
        let inv = "lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql";
        let d = decode(inv).unwrap();
        assert_eq!(d.network, Network::Bitcoin);
        assert_eq!(d.amount_msat, None);
        assert_eq!(d.timestamp, 1_496_314_658);
        assert_eq!(
            hex::encode(d.payment_hash),
            "0001020304050607080900010203040506070809000102030405060708090102"
        );
        assert_eq!(
            d.description.as_deref(),
            Some("Please consider supporting this project")
        );
        assert_eq!(
            hex::encode(d.payee),
            "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad"
        );
        // One flipped character breaks the checksum; a re-checksummed change yields another
        // payee (without an `n` field the key is recovered, so it cannot match).
        let mut chars: Vec<char> = inv.chars().collect();
        chars[20] = if chars[20] == 'q' { 'p' } else { 'q' };
        assert!(decode(&chars.into_iter().collect::<String>()).is_err());
        let (hrp, mut data) = bech32_decode(inv).unwrap();
        data[10] ^= 1;
        match decode(&bech32_encode(&hrp, &data)) {
            Ok(other) => assert_ne!(other.payee, d.payee),
            Err(e) => assert_eq!(e, Bolt11Error::Signature),
        }
    }

    #[test]
    fn round_trip_with_local_key() {
        let key = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let fields = InvoiceFields {
            network: Network::Regtest,
            amount_msat: Some(21_000),
            timestamp: 1_700_000_000,
            payment_hash: [9; 32],
            payment_secret: [3; 32],
            description: "turnpike test ⚡",
            expiry_secs: 600,
            min_final_cltv_expiry: 80,
        };
        let s = encode(&fields, &key).unwrap();
        assert!(s.starts_with("lnbcrt210n1"), "{s}");
        let d = decode(&s).unwrap();
        assert_eq!(d.amount_msat, Some(21_000));
        assert_eq!(d.payment_hash, [9; 32]);
        assert_eq!(d.payment_secret, Some([3; 32]));
        assert_eq!(d.description.as_deref(), Some("turnpike test ⚡"));
        assert_eq!(d.expiry_secs, 600);
        assert_eq!(d.expires_at(), 1_700_000_600);
        assert_eq!(d.min_final_cltv_expiry, 80);
        let pk: [u8; 33] = key
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .unwrap();
        assert_eq!(d.payee, pk);
        let signet = encode(
            &InvoiceFields {
                network: Network::Signet,
                amount_msat: None,
                ..fields
            },
            &key,
        )
        .unwrap();
        assert!(signet.starts_with("lntbs1"));
        assert_eq!(decode(&signet).unwrap().network, Network::Signet);
    }

    #[test]
    fn garbage_never_panics() {
        let key = SigningKey::from_bytes(&[7u8; 32].into()).unwrap();
        let good = encode(
            &InvoiceFields {
                network: Network::Regtest,
                amount_msat: Some(1000),
                timestamp: 1,
                payment_hash: [1; 32],
                payment_secret: [2; 32],
                description: "x",
                expiry_secs: 60,
                min_final_cltv_expiry: 18,
            },
            &key,
        )
        .unwrap();
        let (hrp, data) = bech32_decode(&good).unwrap();
        for cut in 0..data.len() {
            let _ = decode(&bech32_encode(&hrp, &data[..cut]));
        }
        for s in ["", "1", "ln1", "lnbc1", "lnxx1qqqqqq", "lnbc0u1qqqqqqqqqq"] {
            assert!(decode(s).is_err(), "{s}");
        }
    }
}
