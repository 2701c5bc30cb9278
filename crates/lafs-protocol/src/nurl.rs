//! NURLs and FURLs: how a storage server is named and located, and the identities in them.
//!
//! A NURL (`pb://<spki hash>@<host>:<port>/<swissnum>#v=1`) names a GBS server: connect with
//! TLS to host:port, accept the certificate only if the SHA-256 of its SubjectPublicKeyInfo
//! is the pinned hash, then present the swissnum in `Authorization`. Stock builds one NURL per
//! `tcp:` (or `tor:`) location hint of its Foolscap tub (`protocol_switch.py`,
//! `http_server.build_nurl`, via hyperlink), so a NURL carries exactly one host and port; an
//! announcement lists several NURLs instead. `pb+tor://` marks a server reached over Tor.
//!
//! A FURL (`pb://<tubid>@<hint>,<hint>/<swissnum>`) names the same server's Foolscap object.
//! lafs does not speak Foolscap, but the FURL's tub id (20 bytes, `b32(sha1(cert DER))`) is
//! what stock clients mix into lease secrets and write enablers, so it must be stable and
//! announced. Stock records it in `<node>/my_nodeid` and the FURL in `private/storage.furl`.

use std::fmt;
use std::str::FromStr;

use data_encoding::BASE64URL_NOPAD;
use lafs_core::base32;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::x509::{CertError, spki_der_from_cert_der};

/// Why a NURL or FURL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NurlError {
    /// Does not start with `pb://` (or `pb+tor://` for a NURL).
    #[error("not a pb:// URL")]
    BadScheme,
    /// A NURL must end with the fragment `#v=1` (without it, it is a Foolscap FURL).
    #[error("not an HTTP storage NURL (missing #v=1)")]
    NotHttp,
    /// The structure `<id>@<location>/<swissnum>` is not there.
    #[error("malformed URL")]
    Malformed,
    /// The SPKI hash is not 43 characters of unpadded URL-safe base64.
    #[error("invalid SPKI hash")]
    BadSpkiHash,
    /// The tub id is not 32 characters of base32.
    #[error("invalid tub id")]
    BadTubId,
    /// The host is not a DNS name, IPv4 address or bracketed IPv6 address.
    #[error("invalid host")]
    BadHost,
    /// The port is missing, not decimal, 0 or above 65535.
    #[error("invalid port")]
    BadPort,
    /// The swissnum is empty, too long or holds characters outside `A-Za-z0-9-._~`.
    #[error("invalid swissnum")]
    BadSwissnum,
    /// A FURL location hint is empty.
    #[error("empty location hint")]
    EmptyHint,
}

/// A storage service's swissnum: the shared secret in its NURL and FURL, presented in every
/// request's `Authorization` header. Stock makes 32 base32 characters; we accept 1 to 256
/// URL-unreserved characters (`A-Za-z0-9-._~`), so it is always one clean path segment.
///
/// It is a credential: `Debug` hides it and there is no `Display`; use [`Swissnum::as_str`]
/// where the text is really needed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Swissnum(String);

impl Swissnum {
    /// Longest swissnum accepted.
    pub const MAX_LEN: usize = 256;

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison (`==` is not constant-time). A server checks requests with
    /// [`crate::check_authorization`].
    pub fn ct_eq(&self, other: &Swissnum) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl FromStr for Swissnum {
    type Err = NurlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NurlError::BadSwissnum)
        }
    }
}

impl fmt::Debug for Swissnum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Swissnum(<redacted>)")
    }
}

/// A server's TLS identity: SHA-256 of the DER SubjectPublicKeyInfo of its certificate
/// (RFC 7469 pin), written as 43 characters of unpadded URL-safe base64 (stock
/// `http_common.get_spki_hash`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiHash([u8; 32]);

impl SpkiHash {
    /// Wraps a digest.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash of a DER SubjectPublicKeyInfo.
    pub fn of_spki_der(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// The hash of a DER X.509 certificate's SubjectPublicKeyInfo, hashed as the bytes appear
    /// in the certificate. Stock re-encodes the parsed public key instead; the two agree for
    /// every DER-encoded key (checked against stock for RSA, P-256 and Ed25519 certificates).
    pub fn of_cert_der(cert_der: &[u8]) -> Result<Self, CertError> {
        Ok(Self::of_spki_der(spki_der_from_cert_der(cert_der)?))
    }

    /// Constant-time comparison (for checking a pin).
    pub fn ct_eq(&self, other: &SpkiHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl FromStr for SpkiHash {
    type Err = NurlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 43 {
            return Err(NurlError::BadSpkiHash);
        }
        let bytes = BASE64URL_NOPAD
            .decode(s.as_bytes())
            .map_err(|_| NurlError::BadSpkiHash)?;
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| NurlError::BadSpkiHash)
    }
}

impl fmt::Display for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&BASE64URL_NOPAD.encode(&self.0))
    }
}

impl fmt::Debug for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiHash({self})")
    }
}

/// A Foolscap tub id: SHA-1 of the tub's DER certificate (20 bytes), 32 base32 characters.
/// Stock clients use it as the server id in lease secrets and write enablers.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TubId([u8; 20]);

impl TubId {
    /// Wraps the 20 bytes.
    pub const fn from_bytes(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The 20 bytes (the `server_id` of lease-secret and write-enabler derivations).
    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// The tub id of a DER certificate (foolscap: `digest32(cert.digest("sha1"))`). The
    /// certificate's structure is checked first so a PEM file passed by mistake is refused.
    pub fn of_cert_der(cert_der: &[u8]) -> Result<Self, CertError> {
        spki_der_from_cert_der(cert_der)?;
        Ok(Self(Sha1::digest(cert_der).into()))
    }
}

impl FromStr for TubId {
    type Err = NurlError;

    /// 32 base32 characters in either case (stock lower-cases a FURL's tub id).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(NurlError::BadTubId);
        }
        base32::decode_array::<20>(&s.to_ascii_lowercase())
            .map(Self)
            .map_err(|_| NurlError::BadTubId)
    }
}

impl fmt::Display for TubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base32::encode(&self.0))
    }
}

impl fmt::Debug for TubId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TubId({self})")
    }
}

/// Checks a host: a DNS name or IPv4 address (`A-Za-z0-9.-`), or (`bracketed`) an IPv6
/// address (`0-9A-Fa-f:.`). Returns the host without brackets.
fn parse_host(s: &str) -> Result<(String, bool), NurlError> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(NurlError::BadHost)?;
        let ok = inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        return if ok {
            Ok((inner.to_owned(), true))
        } else {
            Err(NurlError::BadHost)
        };
    }
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    if ok {
        Ok((s.to_owned(), false))
    } else {
        Err(NurlError::BadHost)
    }
}

fn parse_port(s: &str) -> Result<u16, NurlError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NurlError::BadPort);
    }
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(NurlError::BadPort),
        Ok(p) => Ok(p),
    }
}

/// Splits `host:port` or `[v6]:port`.
fn parse_host_port(s: &str) -> Result<(String, u16), NurlError> {
    let colon = s.rfind(':').ok_or(NurlError::BadPort)?;
    let (host, bracketed) = parse_host(&s[..colon])?;
    if !bracketed && host.contains(':') {
        return Err(NurlError::BadHost);
    }
    Ok((host, parse_port(&s[colon + 1..])?))
}

/// `host` for a URL authority: IPv6 addresses in brackets.
fn authority_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// How a NURL's server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NurlScheme {
    /// `pb://`: TCP.
    Pb,
    /// `pb+tor://`: over Tor (stock makes these for `tor:` location hints).
    PbTor,
}

impl NurlScheme {
    fn prefix(self) -> &'static str {
        match self {
            NurlScheme::Pb => "pb://",
            NurlScheme::PbTor => "pb+tor://",
        }
    }
}

/// A GBS server's address: `pb://<spki hash>@<host>:<port>/<swissnum>#v=1`.
///
/// `Display` gives the canonical text, which contains the swissnum (a credential); `Debug`
/// hides it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Nurl {
    /// TCP or Tor.
    pub scheme: NurlScheme,
    /// The pinned certificate key.
    pub spki_hash: SpkiHash,
    /// DNS name or IP address; IPv6 without brackets.
    pub host: String,
    /// TCP port (stock always writes one; required).
    pub port: u16,
    /// The service's secret.
    pub swissnum: Swissnum,
}

impl Nurl {
    /// `host:port` for connecting (IPv6 in brackets), as stock's client builds its
    /// `https://` base URL.
    pub fn authority(&self) -> String {
        format!("{}:{}", authority_host(&self.host), self.port)
    }
}

impl FromStr for Nurl {
    type Err = NurlError;

    /// Parses a NURL as stock writes it. No query, no user name besides the SPKI hash, one
    /// path segment (the swissnum), and the fragment exactly `v=1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = if let Some(rest) = s.strip_prefix("pb://") {
            (NurlScheme::Pb, rest)
        } else if let Some(rest) = s.strip_prefix("pb+tor://") {
            (NurlScheme::PbTor, rest)
        } else {
            return Err(NurlError::BadScheme);
        };
        let (rest, fragment) = rest.split_once('#').ok_or(NurlError::NotHttp)?;
        if fragment != "v=1" {
            return Err(NurlError::NotHttp);
        }
        let (authority, path) = rest.split_once('/').ok_or(NurlError::Malformed)?;
        let (userinfo, hostport) = authority.split_once('@').ok_or(NurlError::Malformed)?;
        let spki_hash = userinfo.parse()?;
        let (host, port) = parse_host_port(hostport)?;
        let swissnum = path.parse()?;
        Ok(Nurl {
            scheme,
            spki_hash,
            host,
            port,
            swissnum,
        })
    }
}

impl fmt::Display for Nurl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}@{}/{}#v=1",
            self.scheme.prefix(),
            self.spki_hash,
            self.authority(),
            self.swissnum.as_str()
        )
    }
}

/// One Foolscap location hint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LocationHint {
    /// `tcp:HOST:PORT`, or the legacy `HOST:PORT` (foolscap converts it to the former).
    Tcp {
        /// DNS name or IP address; IPv6 without brackets.
        host: String,
        /// TCP port.
        port: u16,
    },
    /// Any other hint (`tor:...`, `i2p:...`, or a `tcp:` hint foolscap would not understand),
    /// kept verbatim. Foolscap ignores hints it does not understand.
    Other(String),
}

impl LocationHint {
    fn parse(s: &str) -> Result<LocationHint, NurlError> {
        if s.is_empty() {
            return Err(NurlError::EmptyHint);
        }
        if let Some(rest) = s.strip_prefix("tcp:")
            && let Ok((host, port)) = parse_host_port(rest)
        {
            return Ok(LocationHint::Tcp { host, port });
        }
        // Legacy `HOST:PORT` (DNS name or IPv4, no brackets).
        if let Some((host, port)) = s.rsplit_once(':')
            && !host.starts_with('[')
            && let (Ok((host, false)), Ok(port)) = (parse_host(host), parse_port(port))
        {
            return Ok(LocationHint::Tcp { host, port });
        }
        Ok(LocationHint::Other(s.to_owned()))
    }
}

impl fmt::Display for LocationHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationHint::Tcp { host, port } => write!(f, "tcp:{}:{port}", authority_host(host)),
            LocationHint::Other(s) => f.write_str(s),
        }
    }
}

/// A Foolscap FURL: `pb://<tubid>@<hint>,<hint>/<swissnum>`.
///
/// lafs uses it for the tub id (lease secrets, write enablers) and to announce itself; it does
/// not speak Foolscap. `Display` contains the swissnum; `Debug` hides it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Furl {
    /// The tub id.
    pub tubid: TubId,
    /// Location hints, possibly none.
    pub hints: Vec<LocationHint>,
    /// The object's swissnum (for the storage service, the NURLs use the same one).
    pub swissnum: Swissnum,
}

impl Furl {
    /// The NURLs stock would announce for this storage FURL's `tcp:` hints, given the TLS
    /// key's hash (`protocol_switch.add_storage_server`; `tor:host:port` hints become
    /// `pb+tor://` NURLs there too).
    pub fn nurls(&self, spki_hash: SpkiHash) -> Vec<Nurl> {
        self.hints
            .iter()
            .filter_map(|hint| {
                let (scheme, host, port) = match hint {
                    LocationHint::Tcp { host, port } => (NurlScheme::Pb, host.clone(), *port),
                    LocationHint::Other(s) => {
                        let (host, port) = parse_host_port(s.strip_prefix("tor:")?).ok()?;
                        (NurlScheme::PbTor, host, port)
                    }
                };
                Some(Nurl {
                    scheme,
                    spki_hash,
                    host,
                    port,
                    swissnum: self.swissnum.clone(),
                })
            })
            .collect()
    }
}

impl FromStr for Furl {
    type Err = NurlError;

    /// Parses a FURL as foolscap's `decode_furl` does, with stricter parts: the tub id must be
    /// exactly 32 base32 characters (foolscap reads the first 32 and ignores the rest; Tahoe
    /// decodes all of them), and the name must be a valid [`Swissnum`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("pb://").ok_or(NurlError::BadScheme)?;
        if rest.contains('#') {
            return Err(NurlError::Malformed);
        }
        let (tubid, rest) = rest.split_once('@').ok_or(NurlError::Malformed)?;
        let tubid = tubid.parse()?;
        let (hints, name) = rest.split_once('/').ok_or(NurlError::Malformed)?;
        let hints = if hints.is_empty() {
            Vec::new()
        } else {
            hints
                .split(',')
                .map(LocationHint::parse)
                .collect::<Result<_, _>>()?
        };
        Ok(Furl {
            tubid,
            hints,
            swissnum: name.parse()?,
        })
    }
}

impl fmt::Display for Furl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pb://{}@", self.tubid)?;
        for (i, hint) in self.hints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{hint}")?;
        }
        write!(f, "/{}", self.swissnum.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From a stock 1.20 node (see tests/stock_certs.rs for the certificate).
    const SPKI: &str = "Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU";
    const SWISS: &str = "g44v5ghvq7fx65wsuvuhuyrgjioef6rw";
    const NURL: &str = "pb://Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU@127.0.0.1:47999/g44v5ghvq7fx65wsuvuhuyrgjioef6rw#v=1";
    const NURL_V6: &str = "pb://Xok43PpKFfFU7DXowRCewMJ2UMoevoSgRPvTOa3N8oU@[::1]:47999/g44v5ghvq7fx65wsuvuhuyrgjioef6rw#v=1";
    const FURL: &str = "pb://4fjr4zgdclfvnxjiir2smepzevanrstv@tcp:127.0.0.1:47999/g44v5ghvq7fx65wsuvuhuyrgjioef6rw";

    #[test]
    fn nurl_round_trips() {
        let n: Nurl = NURL.parse().unwrap();
        assert_eq!(n.scheme, NurlScheme::Pb);
        assert_eq!(n.spki_hash.to_string(), SPKI);
        assert_eq!(n.host, "127.0.0.1");
        assert_eq!(n.port, 47999);
        assert_eq!(n.swissnum.as_str(), SWISS);
        assert_eq!(n.authority(), "127.0.0.1:47999");
        assert_eq!(n.to_string(), NURL);
        assert!(!format!("{n:?}").contains(SWISS));

        let n6: Nurl = NURL_V6.parse().unwrap();
        assert_eq!(n6.host, "::1");
        assert_eq!(n6.authority(), "[::1]:47999");
        assert_eq!(n6.to_string(), NURL_V6);

        let tor = NURL
            .replace("pb://", "pb+tor://")
            .replace("127.0.0.1", "abcdef.onion");
        let n: Nurl = tor.parse().unwrap();
        assert_eq!(n.scheme, NurlScheme::PbTor);
        assert_eq!(n.to_string(), tor);
    }

    #[test]
    fn nurl_refusals() {
        let cases = [
            (NURL.replace("pb://", "https://"), NurlError::BadScheme),
            (NURL.replace("#v=1", ""), NurlError::NotHttp),
            (NURL.replace("#v=1", "#v=2"), NurlError::NotHttp),
            (NURL.replace(SPKI, &SPKI[1..]), NurlError::BadSpkiHash),
            (
                NURL.replace(SPKI, &format!("{}=", &SPKI[1..])),
                NurlError::BadSpkiHash,
            ),
            (NURL.replace("Xok4", "Xok+"), NurlError::BadSpkiHash),
            (NURL.replace(":47999", ""), NurlError::BadPort),
            (NURL.replace(":47999", ":0"), NurlError::BadPort),
            (NURL.replace(":47999", ":65536"), NurlError::BadPort),
            (NURL.replace(":47999", ":+1"), NurlError::BadPort),
            (NURL.replace("127.0.0.1", "::1"), NurlError::BadHost),
            (NURL.replace("127.0.0.1", "[::1"), NurlError::BadHost),
            (NURL.replace("127.0.0.1", "[zz::1]"), NurlError::BadHost),
            (NURL.replace("127.0.0.1", "a_b"), NurlError::BadHost),
            (NURL.replace("127.0.0.1", ""), NurlError::BadHost),
            (NURL.replace(SWISS, ""), NurlError::BadSwissnum),
            (NURL.replace(SWISS, "a/b"), NurlError::BadSwissnum),
            (NURL.replace(SWISS, "a%2fb"), NurlError::BadSwissnum),
            (NURL.replace(SWISS, "a?x=1"), NurlError::BadSwissnum),
            (NURL.replace("@", ""), NurlError::Malformed),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Nurl>(), Err(want.clone()), "{s}");
        }
    }

    #[test]
    fn furl_round_trips() {
        let f: Furl = FURL.parse().unwrap();
        assert_eq!(f.tubid.to_string(), "4fjr4zgdclfvnxjiir2smepzevanrstv");
        assert_eq!(
            f.hints,
            [LocationHint::Tcp {
                host: "127.0.0.1".into(),
                port: 47999
            }]
        );
        assert_eq!(f.swissnum.as_str(), SWISS);
        assert_eq!(f.to_string(), FURL);
        assert!(!format!("{f:?}").contains(SWISS));
        let spki: SpkiHash = SPKI.parse().unwrap();
        let nurls = f.nurls(spki);
        assert_eq!(nurls.len(), 1);
        assert_eq!(nurls[0].to_string(), NURL);

        // Upper case tub ids are accepted (stock lower-cases them) and printed in lower case.
        let upper = FURL.replace(
            "4fjr4zgdclfvnxjiir2smepzevanrstv",
            "4FJR4ZGDCLFVNXJIIR2SMEPZEVANRSTV",
        );
        assert_eq!(upper.parse::<Furl>().unwrap().to_string(), FURL);

        let many = format!(
            "pb://{}@tcp:[::1]:1,example.org:2,tor:abc.onion:3,i2p:xyz,tcp:bad/{SWISS}",
            f.tubid
        );
        let m: Furl = many.parse().unwrap();
        assert_eq!(
            m.hints,
            [
                LocationHint::Tcp {
                    host: "::1".into(),
                    port: 1
                },
                LocationHint::Tcp {
                    host: "example.org".into(),
                    port: 2
                },
                LocationHint::Other("tor:abc.onion:3".into()),
                LocationHint::Other("i2p:xyz".into()),
                LocationHint::Other("tcp:bad".into()),
            ]
        );
        assert_eq!(
            m.to_string(),
            many.replace("example.org:2", "tcp:example.org:2")
        );
        let nurls: Vec<String> = m.nurls(spki).iter().map(ToString::to_string).collect();
        assert_eq!(
            nurls,
            [
                format!("pb://{SPKI}@[::1]:1/{SWISS}#v=1"),
                format!("pb://{SPKI}@example.org:2/{SWISS}#v=1"),
                format!("pb+tor://{SPKI}@abc.onion:3/{SWISS}#v=1"),
            ]
        );
        let none: Furl = format!("pb://{}@/{SWISS}", f.tubid).parse().unwrap();
        assert!(none.hints.is_empty());
        assert_eq!(none.to_string(), format!("pb://{}@/{SWISS}", f.tubid));
    }

    #[test]
    fn furl_refusals() {
        let tub = "4fjr4zgdclfvnxjiir2smepzevanrstv";
        let cases = [
            (FURL.replace("pb://", "pb+tor://"), NurlError::BadScheme),
            (FURL.replace(tub, &tub[1..]), NurlError::BadTubId),
            (FURL.replace(tub, &format!("{tub}a")), NurlError::BadTubId),
            (
                FURL.replace(tub, &tub.replace('4', "1")),
                NurlError::BadTubId,
            ),
            (FURL.replace("tcp:", ",tcp:"), NurlError::EmptyHint),
            (FURL.replace(SWISS, ""), NurlError::BadSwissnum),
            (format!("{FURL}#v=1"), NurlError::Malformed),
            (FURL.replace("@", ""), NurlError::Malformed),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<Furl>(), Err(want.clone()), "{s}");
        }
    }

    #[test]
    fn swissnums() {
        assert!("a".parse::<Swissnum>().is_ok());
        assert!("A-._~9".parse::<Swissnum>().is_ok());
        assert!("a".repeat(256).parse::<Swissnum>().is_ok());
        for bad in ["", "a b", "a/b", "a#b", "é", "a@b", "a,b"] {
            assert_eq!(
                bad.parse::<Swissnum>(),
                Err(NurlError::BadSwissnum),
                "{bad}"
            );
        }
        assert!("a".repeat(257).parse::<Swissnum>().is_err());
        let a: Swissnum = "abc".parse().unwrap();
        assert!(a.ct_eq(&"abc".parse().unwrap()));
        assert!(!a.ct_eq(&"abd".parse().unwrap()));
    }
}
