//! Keys, certificates and XML signatures.
//!
//! Enveloped signatures are made and checked by xmlsec (through samael); detached
//! Redirect-binding signatures by OpenSSL. Only RSA-SHA256 is ever produced; verification
//! accepts RSA-SHA256/384/512 and ECDSA-SHA256/384/512, never SHA-1.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private, Public};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, CryptoProvider, ReduceMode, XmlSec,
};

use crate::xml;

/// The only signature algorithm this crate signs with.
pub(crate) const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// The only digest algorithm this crate produces.
pub(crate) const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// Signature algorithms accepted on verification (no SHA-1, no DSA).
const ALLOWED: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// Why a key or certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The certificate is not PEM, DER or base64 DER X.509.
    #[error("invalid certificate")]
    InvalidCertificate,
    /// The private key is not a PEM private key.
    #[error("invalid private key")]
    InvalidPrivateKey,
    /// The private key is not RSA of at least 2048 bits.
    #[error("signing key must be rsa of at least 2048 bits")]
    WeakKey,
    /// The private key does not belong to the certificate.
    #[error("private key does not match the certificate")]
    KeyMismatch,
}

/// An X.509 certificate (the public half of a signing key), compared by its DER encoding.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("sha256", &hex::encode(openssl::sha::sha256(&self.der)))
            .finish()
    }
}

impl Certificate {
    /// A certificate from PEM text.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let cert = X509::from_pem(pem.as_bytes()).map_err(|_| KeyError::InvalidCertificate)?;
        Self::from_x509(&cert)
    }

    /// A certificate from DER bytes.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        let cert = X509::from_der(der).map_err(|_| KeyError::InvalidCertificate)?;
        Self::from_x509(&cert)
    }

    /// A certificate from base64 DER, as in metadata's `ds:X509Certificate` (whitespace allowed).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let der = xml::decode_base64(text).map_err(|_| KeyError::InvalidCertificate)?;
        Self::from_der(&der)
    }

    fn from_x509(cert: &X509) -> Result<Self, KeyError> {
        // A certificate whose key cannot be read is of no use for verification.
        cert.public_key()
            .map_err(|_| KeyError::InvalidCertificate)?;
        Ok(Self {
            der: cert.to_der().map_err(|_| KeyError::InvalidCertificate)?,
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Base64 DER without line breaks (for metadata and `KeyInfo`).
    pub fn to_base64(&self) -> String {
        xml::encode_base64(&self.der)
    }

    /// The PEM encoding.
    pub fn to_pem(&self) -> String {
        let body = self.to_base64();
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for chunk in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(chunk));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        pem
    }

    fn public_key(&self) -> Option<PKey<Public>> {
        X509::from_der(&self.der).ok()?.public_key().ok()
    }
}

/// A private RSA key (at least 2048 bits) with its certificate; signs with RSA-SHA256.
#[derive(Clone)]
pub struct SigningKey {
    key: PKey<Private>,
    key_der: Vec<u8>,
    certificate: Certificate,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("certificate", &self.certificate)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from a PEM private key (PKCS#1 or PKCS#8) and its PEM certificate.
    pub fn from_pem(private_key_pem: &str, certificate_pem: &str) -> Result<Self, KeyError> {
        let key = PKey::private_key_from_pem(private_key_pem.as_bytes())
            .map_err(|_| KeyError::InvalidPrivateKey)?;
        let certificate = Certificate::from_pem(certificate_pem)?;
        let rsa = key.rsa().map_err(|_| KeyError::WeakKey)?;
        if rsa.size() < 256 {
            return Err(KeyError::WeakKey);
        }
        let public = certificate
            .public_key()
            .ok_or(KeyError::InvalidCertificate)?;
        if !key.public_eq(&public) {
            return Err(KeyError::KeyMismatch);
        }
        let key_der = key
            .private_key_to_der()
            .map_err(|_| KeyError::InvalidPrivateKey)?;
        Ok(Self {
            key,
            key_der,
            certificate,
        })
    }

    /// The certificate published for this key.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// A raw RSA-SHA256 (PKCS#1 v1.5) signature over `data`.
    pub(crate) fn sign_raw(&self, data: &[u8]) -> Result<Vec<u8>, SignFailure> {
        let mut signer =
            Signer::new(MessageDigest::sha256(), &self.key).map_err(|_| SignFailure)?;
        signer.update(data).map_err(|_| SignFailure)?;
        signer.sign_to_vec().map_err(|_| SignFailure)
    }
}

/// Signing failed inside xmlsec or OpenSSL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SignFailure;

/// An enveloped-signature template for the element whose `ID` is `id`, RSA-SHA256 over a
/// SHA-256 digest with exclusive canonicalization; xmlsec fills in the values.
pub(crate) fn signature_template(id: &str, certificate: &Certificate) -> String {
    signature_template_with(id, certificate, RSA_SHA256, SHA256)
}

/// A template with the given algorithms (tests use it to forge SHA-1 signatures).
pub(crate) fn signature_template_with(
    id: &str,
    certificate: &Certificate,
    signature_method: &str,
    digest_method: &str,
) -> String {
    format!(
        "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/>\
         <ds:SignatureMethod Algorithm=\"{signature_method}\"/>\
         <ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"{ENVELOPED}\"/><ds:Transform Algorithm=\"{EXC_C14N}\"/>\
         </ds:Transforms><ds:DigestMethod Algorithm=\"{digest_method}\"/>\
         <ds:DigestValue></ds:DigestValue></ds:Reference></ds:SignedInfo>\
         <ds:SignatureValue></ds:SignatureValue>\
         <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate>\
         </ds:X509Data></ds:KeyInfo></ds:Signature>",
        id = xml::escape(id),
        cert = certificate.to_base64(),
    )
}

/// Signs the first signature template in `document` (document order) with `key`, and returns
/// the document without its XML declaration.
pub(crate) fn sign_enveloped(document: &str, key: &SigningKey) -> Result<String, SignFailure> {
    let signed = XmlSec::sign_xml(document, &key.key_der).map_err(|_| SignFailure)?;
    Ok(strip_declaration(&signed).to_owned())
}

fn strip_declaration(document: &str) -> &str {
    let trimmed = document.trim_start();
    if trimmed.starts_with("<?xml") {
        trimmed
            .find("?>")
            .map_or(trimmed, |end| trimmed[end + 2..].trim_start())
    } else {
        trimmed
    }
}

/// Signature and digest algorithms accepted on verification.
const ALLOWED_SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
const ALLOWED_DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
/// Canonicalization and transforms accepted: no XPath, no XSLT, no base64 or external ones.
const ALLOWED_TRANSFORMS: &[&str] = &[
    ENVELOPED,
    EXC_C14N,
    "http://www.w3.org/2001/10/xml-exc-c14n#WithComments",
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    "http://www.w3.org/2006/12/xml-c14n11",
];

/// What a document's signatures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureScan {
    /// No `ds:Signature` at all.
    None,
    /// A signature, digest, canonicalization or transform algorithm outside the allowlist, or
    /// a reference that is not a same-document `#id`.
    Disallowed,
    /// Signatures present, all within the allowlist.
    Allowed,
}

/// Checks every signature's algorithms before any cryptography runs (xmlsec would otherwise
/// execute whatever transforms an attacker names).
pub(crate) fn signature_algorithms(doc: &roxmltree::Document<'_>) -> SignatureScan {
    let mut any = false;
    for sig in doc
        .descendants()
        .filter(|n| xml::is(n, xml::NS_DSIG, "Signature"))
    {
        any = true;
        for n in sig.descendants().filter(|n| n.is_element()) {
            let allowed = match n.tag_name().name() {
                "SignatureMethod" => ALLOWED_SIGNATURE_METHODS,
                "DigestMethod" => ALLOWED_DIGEST_METHODS,
                "Transform" | "CanonicalizationMethod" => ALLOWED_TRANSFORMS,
                "Reference" => {
                    if !n
                        .attribute("URI")
                        .is_some_and(|u| u.starts_with('#') && u.len() > 1)
                    {
                        return SignatureScan::Disallowed;
                    }
                    continue;
                }
                _ => continue,
            };
            if !n
                .attribute("Algorithm")
                .is_some_and(|a| allowed.contains(&a))
            {
                return SignatureScan::Disallowed;
            }
        }
    }
    if any {
        SignatureScan::Allowed
    } else {
        SignatureScan::None
    }
}

/// Verifies every signature in `document` against `trusted` (the configured certificates only:
/// a certificate carried in `KeyInfo` is ignored), refuses any algorithm outside the allowlist,
/// and returns a document holding only what the signatures cover, rooted at the signed element.
pub(crate) fn verify_and_reduce(document: &str, trusted: &[Certificate]) -> Option<String> {
    if trusted.is_empty() {
        return None;
    }
    let scanned = xml::parse(document).map(|doc| signature_algorithms(&doc));
    if scanned != Some(SignatureScan::Allowed) {
        return None;
    }
    let certs: Vec<CertificateDer> = trusted
        .iter()
        .map(|c| CertificateDer::from(c.der.clone()))
        .collect();
    XmlSec::reduce_xml_to_signed_with_allowed_algorithms(
        document,
        &certs,
        ReduceMode::ValidateAndMarkNoAncestors,
        Some(ALLOWED),
    )
    .ok()
}

/// Verifies a detached Redirect-binding signature over `octets` with one of `trusted`.
pub(crate) fn verify_detached(
    octets: &[u8],
    sig_alg: &str,
    signature: &[u8],
    trusted: &[Certificate],
) -> bool {
    let digest = match sig_alg {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
        | "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512" => MessageDigest::sha512(),
        _ => return false,
    };
    let wants_rsa = sig_alg.contains("#rsa-");
    trusted.iter().any(|cert| {
        let Some(public) = cert.public_key() else {
            return false;
        };
        if wants_rsa != public.rsa().is_ok() {
            return false;
        }
        let Ok(mut verifier) = Verifier::new(digest, &public) else {
            return false;
        };
        // ECDSA signatures in XML-DSig are raw r||s; OpenSSL wants DER.
        let der_sig;
        let sig = if wants_rsa {
            signature
        } else {
            match ecdsa_raw_to_der(signature) {
                Some(d) => {
                    der_sig = d;
                    &der_sig
                }
                None => return false,
            }
        };
        verifier.update(octets).is_ok() && verifier.verify(sig).unwrap_or(false)
    })
}

fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || raw.len() % 2 != 0 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let r = openssl::bn::BigNum::from_slice(r).ok()?;
    let s = openssl::bn::BigNum::from_slice(s).ok()?;
    openssl::ecdsa::EcdsaSig::from_private_components(r, s)
        .ok()?
        .to_der()
        .ok()
}

/// Where [`sign_canonical`] puts the `ds:Signature` element.
pub(crate) const SIGNATURE_SLOT: &str = "<ciam-signature-slot/>";

/// Replaces characters XML 1.0 cannot carry.
fn xml_char(c: char) -> char {
    match c {
        '\t' | '\n' | '\r' => c,
        c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
        c => c,
    }
}

/// Text escaped as exclusive canonicalization writes it.
pub(crate) fn c14n_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// An attribute value escaped as exclusive canonicalization writes it.
pub(crate) fn c14n_attr(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().map(xml_char) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
    out
}

/// Signs an element written directly in exclusive canonical form (sorted attributes, no
/// self-closing tags, namespaces declared where exclusive C14N renders them, C14N escaping)
/// with [`SIGNATURE_SLOT`] where its enveloped signature goes: the SHA-256 digest is taken over
/// the element without the slot (what the enveloped-signature and exc-c14n transforms yield),
/// and the canonical `SignedInfo` is signed with RSA-SHA256. No XML parser or xmlsec is involved
/// on this hot path; the tests prove xmlsec and pysaml2 (xmlsec1) verify the result.
pub(crate) fn sign_canonical(
    element_with_slot: &str,
    id: &str,
    key: &SigningKey,
) -> Result<String, SignFailure> {
    let without = element_with_slot.replacen(SIGNATURE_SLOT, "", 1);
    let digest = xml::encode_base64(&openssl::sha::sha256(without.as_bytes()));
    let inner = format!(
        "<ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"></ds:CanonicalizationMethod>\
         <ds:SignatureMethod Algorithm=\"{RSA_SHA256}\"></ds:SignatureMethod>\
         <ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"{ENVELOPED}\"></ds:Transform>\
         <ds:Transform Algorithm=\"{EXC_C14N}\"></ds:Transform></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"{SHA256}\"></ds:DigestMethod>\
         <ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>",
        id = c14n_attr(id),
    );
    let canonical_signed_info = format!(
        "<ds:SignedInfo xmlns:ds=\"{}\">{inner}</ds:SignedInfo>",
        xml::NS_DSIG
    );
    let signature = xml::encode_base64(&key.sign_raw(canonical_signed_info.as_bytes())?);
    let element = format!(
        "<ds:Signature xmlns:ds=\"{}\"><ds:SignedInfo>{inner}</ds:SignedInfo>\
         <ds:SignatureValue>{signature}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>\
         <ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
         </ds:Signature>",
        xml::NS_DSIG,
        cert = key.certificate.to_base64(),
    );
    Ok(element_with_slot.replacen(SIGNATURE_SLOT, &element, 1))
}
