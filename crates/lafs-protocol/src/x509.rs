//! Just enough X.509 for identities: PEM to DER, and the SubjectPublicKeyInfo of a certificate.
//!
//! A stock node keeps its TLS certificate and key in `private/node.pem` (certificate first,
//! then the PKCS#8 key, both PEM). The NURL's SPKI hash and the FURL's tub id are computed
//! from the certificate. This is a small, strict DER walk rather than an X.509 crate: it needs
//! six elements of one structure, must never panic on hostile bytes, and is easy to fuzz.
//! Signatures and validity are not checked here; the TLS layer does that.

use data_encoding::BASE64;

/// Why a PEM file or certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// No `-----BEGIN CERTIFICATE-----` block.
    #[error("no CERTIFICATE block in PEM")]
    NoCertificate,
    /// A PEM block without its END line, or with a mismatched one.
    #[error("unterminated or mismatched PEM block")]
    BadPemBlock,
    /// A PEM block's body is not base64.
    #[error("PEM body is not base64")]
    BadBase64,
    /// The DER is not an X.509 certificate of the expected shape.
    #[error("malformed DER certificate: {0}")]
    BadDer(&'static str),
}

/// One PEM block.
#[derive(Clone, PartialEq, Eq)]
pub struct PemBlock {
    /// The label, e.g. `CERTIFICATE` or `PRIVATE KEY`.
    pub label: String,
    /// The decoded body.
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PemBlock {
    /// Shows the label and size only: blocks may hold private keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemBlock({}, {} bytes)", self.label, self.der.len())
    }
}

/// Every PEM block in `pem`, in order. Text outside blocks is ignored (RFC 7468 allows it);
/// header lines inside a block (`Proc-Type:` ...) are refused as bad base64.
pub fn pem_blocks(pem: &[u8]) -> Result<Vec<PemBlock>, CertError> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<u8>)> = None;
    for line in pem.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        match current.as_mut() {
            None => {
                if let Some(label) = line
                    .strip_prefix(b"-----BEGIN ")
                    .and_then(|l| l.strip_suffix(b"-----"))
                {
                    let label = std::str::from_utf8(label).map_err(|_| CertError::BadPemBlock)?;
                    current = Some((label.to_owned(), Vec::new()));
                }
            }
            Some((label, body)) => {
                if let Some(end) = line
                    .strip_prefix(b"-----END ")
                    .and_then(|l| l.strip_suffix(b"-----"))
                {
                    if end != label.as_bytes() {
                        return Err(CertError::BadPemBlock);
                    }
                    let der = BASE64.decode(body).map_err(|_| CertError::BadBase64)?;
                    blocks.push(PemBlock {
                        label: std::mem::take(label),
                        der,
                    });
                    current = None;
                } else {
                    body.extend(line.iter().filter(|b| !b.is_ascii_whitespace()));
                }
            }
        }
    }
    if current.is_some() {
        return Err(CertError::BadPemBlock);
    }
    Ok(blocks)
}

/// The DER of the first `CERTIFICATE` block (e.g. of a stock `private/node.pem`).
pub fn pem_certificate_der(pem: &[u8]) -> Result<Vec<u8>, CertError> {
    pem_blocks(pem)?
        .into_iter()
        .find(|b| b.label == "CERTIFICATE")
        .map(|b| b.der)
        .ok_or(CertError::NoCertificate)
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const VERSION_TAG: u8 = 0xa0; // [0] EXPLICIT, constructed

/// One DER element: its tag, contents, the whole encoding, and what follows it.
struct Tlv<'a> {
    tag: u8,
    contents: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

fn tlv(input: &[u8]) -> Result<Tlv<'_>, CertError> {
    let bad = CertError::BadDer;
    let (&tag, after_tag) = input.split_first().ok_or(bad("truncated"))?;
    if tag & 0x1f == 0x1f {
        return Err(bad("high tag numbers are not used in certificates"));
    }
    let (&first, after_len) = after_tag.split_first().ok_or(bad("truncated"))?;
    let (len, after_len) = match first {
        0..=0x7f => (usize::from(first), after_len),
        0x80 => return Err(bad("indefinite length")),
        0x81..=0x84 => {
            let n = usize::from(first & 0x7f);
            if after_len.len() < n {
                return Err(bad("truncated"));
            }
            let (len_bytes, rest) = after_len.split_at(n);
            if len_bytes[0] == 0 {
                return Err(bad("non-minimal length"));
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(bad("non-minimal length"));
            }
            (len, rest)
        }
        _ => return Err(bad("length too large")),
    };
    if after_len.len() < len {
        return Err(bad("truncated"));
    }
    let header = input.len() - after_len.len();
    Ok(Tlv {
        tag,
        contents: &after_len[..len],
        whole: &input[..header + len],
        rest: &after_len[len..],
    })
}

fn expect<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<Tlv<'a>, CertError> {
    let t = tlv(input)?;
    if t.tag == tag {
        Ok(t)
    } else {
        Err(CertError::BadDer(what))
    }
}

/// The DER SubjectPublicKeyInfo inside a DER X.509 certificate, as the bytes appear there.
///
/// Walks `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`
/// and `TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
/// validity, subject, subjectPublicKeyInfo, ... }` (RFC 5280 section 4.1).
pub fn spki_der_from_cert_der(cert: &[u8]) -> Result<&[u8], CertError> {
    let certificate = expect(cert, SEQUENCE, "certificate is not a SEQUENCE")?;
    if !certificate.rest.is_empty() {
        return Err(CertError::BadDer("bytes after the certificate"));
    }
    let tbs = expect(
        certificate.contents,
        SEQUENCE,
        "tbsCertificate is not a SEQUENCE",
    )?;
    let sig_alg = expect(tbs.rest, SEQUENCE, "signatureAlgorithm is not a SEQUENCE")?;
    let sig = expect(
        sig_alg.rest,
        BIT_STRING,
        "signatureValue is not a BIT STRING",
    )?;
    if !sig.rest.is_empty() {
        return Err(CertError::BadDer("extra elements in the certificate"));
    }

    let mut fields = tbs.contents;
    if fields.first() == Some(&VERSION_TAG) {
        fields = tlv(fields)?.rest;
    }
    let serial = expect(fields, INTEGER, "serialNumber is not an INTEGER")?;
    let signature = expect(serial.rest, SEQUENCE, "signature is not a SEQUENCE")?;
    let issuer = expect(signature.rest, SEQUENCE, "issuer is not a SEQUENCE")?;
    let validity = expect(issuer.rest, SEQUENCE, "validity is not a SEQUENCE")?;
    let subject = expect(validity.rest, SEQUENCE, "subject is not a SEQUENCE")?;
    let spki = expect(
        subject.rest,
        SEQUENCE,
        "subjectPublicKeyInfo is not a SEQUENCE",
    )?;

    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    let algorithm = expect(spki.contents, SEQUENCE, "SPKI algorithm is not a SEQUENCE")?;
    let key = expect(algorithm.rest, BIT_STRING, "SPKI key is not a BIT STRING")?;
    if !key.rest.is_empty() {
        return Err(CertError::BadDer("extra elements in the SPKI"));
    }
    Ok(spki.whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_lengths() {
        assert!(tlv(&[0x30]).is_err());
        assert!(tlv(&[0x30, 0x01]).is_err());
        let t = tlv(&[0x30, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!(
            (t.tag, t.contents, t.whole, t.rest),
            (0x30, &[0xaa][..], &[0x30, 0x01, 0xaa][..], &[0xbb][..])
        );
        assert!(tlv(&[0x30, 0x80, 0x00, 0x00]).is_err());
        assert!(tlv(&[0x30, 0x81, 0x05]).is_err()); // non-minimal
        assert!(tlv(&[0x30, 0x82, 0x00, 0x80]).is_err()); // non-minimal
        assert!(tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(tlv(&[0x1f, 0x01, 0x00]).is_err());
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([0u8; 0x80]);
        assert_eq!(tlv(&long).unwrap().contents.len(), 0x80);
    }

    #[test]
    fn pem() {
        let text = b"junk\n-----BEGIN FOO-----\nAAEC\nAw==\n-----END FOO-----\n\
            -----BEGIN CERTIFICATE-----\r\nBAU=\r\n-----END CERTIFICATE-----\r\n";
        let blocks = pem_blocks(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "FOO");
        assert_eq!(blocks[0].der, [0, 1, 2, 3]);
        assert_eq!(format!("{:?}", blocks[0]), "PemBlock(FOO, 4 bytes)");
        assert_eq!(pem_certificate_der(text).unwrap(), [4, 5]);
        assert_eq!(pem_certificate_der(b""), Err(CertError::NoCertificate));
        assert_eq!(
            pem_blocks(b"-----BEGIN A-----\nAAAA\n"),
            Err(CertError::BadPemBlock)
        );
        assert_eq!(
            pem_blocks(b"-----BEGIN A-----\nAAAA\n-----END B-----\n"),
            Err(CertError::BadPemBlock)
        );
        assert_eq!(
            pem_blocks(b"-----BEGIN A-----\nA!AA\n-----END A-----\n"),
            Err(CertError::BadBase64)
        );
    }
}
