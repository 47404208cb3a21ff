//! Test helpers (feature `test-support`): forge signatures with any algorithm so that tests can
//! prove what verification refuses. Never enable in production builds.

use crate::crypto::{self, Certificate, SigningKey};

/// A signature template for the element with `ID` `id`, with the given algorithm URIs.
pub fn signature_template(
    id: &str,
    certificate: &Certificate,
    signature_method: &str,
    digest_method: &str,
) -> String {
    crypto::signature_template_with(id, certificate, signature_method, digest_method)
}

/// Signs the first signature template (in document order) of `document` with `key`.
pub fn sign_first_template(document: &str, key: &SigningKey) -> Option<String> {
    crypto::sign_enveloped(document, key).ok()
}

/// A raw RSA-SHA256 signature (for forging Redirect-binding signatures).
pub fn sign_raw(key: &SigningKey, data: &[u8]) -> Option<Vec<u8>> {
    key.sign_raw(data).ok()
}
