//! TLS for GBS: trust exactly one key, the one the NURL pins.
//!
//! GBS servers present self-signed certificates (stock: RSA-2048 X.509 *v1*, CN
//! `newpb_thingy`); there is no CA, no name and no expiry to check. The NURL carries the
//! SHA-256 of the server's SubjectPublicKeyInfo, and a connection is accepted iff the
//! certificate's SPKI hashes to it (stock `_StorageClientHTTPSPolicy`). Handshake signatures
//! are still verified, with that same key, so a server must hold the private key and not
//! merely replay the certificate.
//!
//! rustls's `verify_tls12_signature`/`verify_tls13_signature` parse the whole certificate with
//! webpki, which refuses X.509 v1; so the SPKI is cut out with
//! [`lafs_protocol::spki_der_from_cert_der`] and signatures are checked against it as a raw
//! public key (webpki's `RawPublicKeyEntity`, with rustls's algorithm tables).
//!
//! Like stock, the client sends no SNI (servers have no names) and no client certificate.

use std::sync::Arc;

use lafs_protocol::{SpkiHash, spki_der_from_cert_der};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// Accepts exactly the certificates whose SPKI hashes to the pin.
#[derive(Debug)]
pub(crate) struct SpkiPinVerifier {
    pin: SpkiHash,
    algs: WebPkiSupportedAlgorithms,
}

/// The error a pin mismatch becomes inside rustls; the connector turns it back into
/// [`super::ErrorKind::PinMismatch`]. Nothing else in this verifier returns it.
pub(crate) const PIN_MISMATCH: rustls::Error =
    rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure);

fn spki_of(cert: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    spki_der_from_cert_der(cert.as_ref())
        .map(|spki| SubjectPublicKeyInfoDer::from(spki.to_vec()))
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

impl ServerCertVerifier for SpkiPinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let spki = spki_of(end_entity)?;
        if SpkiHash::of_spki_der(spki.as_ref()).ct_eq(&self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(PIN_MISMATCH)
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = spki_of(cert)?;
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // TLS 1.2 schemes do not name one algorithm: try each candidate (as rustls does).
        let candidates = self
            .algs
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        for alg in candidates {
            match key.verify_signature(*alg, message, dss.signature()) {
                Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
                Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {}
                Err(_) => break,
            }
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = spki_of(cert)?;
        rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A client configuration that trusts only `pin` (aws-lc-rs provider, as the server uses),
/// presenting `identity` as client certificate if given.
pub(crate) fn client_config(
    pin: SpkiHash,
    identity: Option<&super::ClientIdentity>,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = SpkiPinVerifier {
        pin,
        algs: provider.signature_verification_algorithms,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder.with_client_auth_cert(
            vec![CertificateDer::from(id.cert_der.clone())],
            rustls::pki_types::PrivateKeyDer::Pkcs8(id.key_der.clone().into()),
        )?,
    };
    cfg.enable_sni = false;
    Ok(Arc::new(cfg))
}
