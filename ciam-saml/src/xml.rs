//! XML, encoding and binding helpers shared by the IdP and SP sides (crate-private).

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;

/// SAML 2.0 assertion namespace.
pub(crate) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
/// SAML 2.0 protocol namespace.
pub(crate) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
/// SAML 2.0 metadata namespace.
pub(crate) const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
/// XML digital signature namespace.
pub(crate) const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
/// The success status code.
pub(crate) const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
/// The bearer subject confirmation method.
pub(crate) const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Largest accepted base64 message (before decoding).
pub(crate) const MAX_ENCODED_LEN: usize = 512 * 1024;
/// Largest accepted XML document after decoding or inflating.
pub(crate) const MAX_XML_LEN: usize = 256 * 1024;

/// Why an encoded message could not be turned into XML text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeFailure {
    /// Over the size bound (encoded or inflated).
    TooLarge,
    /// Not base64, not deflate or not UTF-8.
    Malformed,
    /// A document type declaration or entity declaration.
    Doctype,
}

/// Escapes text for an element body or an attribute value.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    // Runs of ordinary characters are copied whole (a response's base64 form is one run); the
    // escaped characters are all ASCII, so cutting at their byte positions keeps UTF-8 whole.
    let mut run = 0;
    for (at, byte) in text.bytes().enumerate() {
        let replacement = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&apos;",
            b'\r' => "&#13;",
            b'\n' => "&#10;",
            b'\t' => "&#9;",
            _ => continue,
        };
        out.push_str(text.get(run..at).unwrap_or_default());
        out.push_str(replacement);
        run = at + 1;
    }
    out.push_str(text.get(run..).unwrap_or_default());
    out
}

/// An `xs:dateTime` in UTC with second precision, as SAML uses.
pub(crate) fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an `xs:dateTime`.
pub(crate) fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Refuses a document type or entity declaration anywhere in the text, before any parser sees it.
pub(crate) fn refuse_doctype(xml: &str) -> Result<(), DecodeFailure> {
    let upper_hit = xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY");
    // Any other `<!` that is neither a comment nor CDATA is a declaration too.
    let other = xml
        .match_indices("<!")
        .any(|(i, _)| !(xml[i..].starts_with("<!--") || xml[i..].starts_with("<![CDATA[")));
    if upper_hit || other {
        Err(DecodeFailure::Doctype)
    } else {
        Ok(())
    }
}

/// Decodes base64 (whitespace tolerated) within the size bound.
pub(crate) fn decode_base64(encoded: &str) -> Result<Vec<u8>, DecodeFailure> {
    if encoded.len() > MAX_ENCODED_LEN {
        return Err(DecodeFailure::TooLarge);
    }
    let compact: String = encoded
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| DecodeFailure::Malformed)
}

/// Encodes unpadded base64url.
pub(crate) fn encode_base64_url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url.
pub(crate) fn decode_base64_url(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
}

/// Base64 without line breaks.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Inflates raw DEFLATE data, refusing output larger than [`MAX_XML_LEN`].
pub(crate) fn inflate_bounded(data: &[u8]) -> Result<Vec<u8>, DecodeFailure> {
    let limit = u64::try_from(MAX_XML_LEN).unwrap_or(u64::MAX) + 1;
    let mut out = Vec::new();
    DeflateDecoder::new(data)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|_| DecodeFailure::Malformed)?;
    if out.len() > MAX_XML_LEN {
        return Err(DecodeFailure::TooLarge);
    }
    Ok(out)
}

/// Raw DEFLATE compression (for the Redirect binding).
pub(crate) fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = DeflateEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    if encoder.write_all(data).is_err() {
        return Vec::new();
    }
    encoder.finish().unwrap_or_default()
}

/// Turns decoded bytes into checked XML text.
pub(crate) fn checked_text(bytes: Vec<u8>) -> Result<String, DecodeFailure> {
    if bytes.len() > MAX_XML_LEN {
        return Err(DecodeFailure::TooLarge);
    }
    let text = String::from_utf8(bytes).map_err(|_| DecodeFailure::Malformed)?;
    refuse_doctype(&text)?;
    Ok(text)
}

/// A POST-binding message: base64, size-bounded, DOCTYPE refused.
pub(crate) fn decode_post(encoded: &str) -> Result<String, DecodeFailure> {
    checked_text(decode_base64(encoded)?)
}

/// A Redirect-binding message: base64 then inflate, both bounded, DOCTYPE refused.
pub(crate) fn decode_redirect(encoded: &str) -> Result<String, DecodeFailure> {
    checked_text(inflate_bounded(&decode_base64(encoded)?)?)
}

/// Parses checked XML text (no DTD is ever allowed).
pub(crate) fn parse(text: &str) -> Option<roxmltree::Document<'_>> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 50_000,
    };
    roxmltree::Document::parse_with_options(text, options).ok()
}

/// Whether `node` is the element `ns:name`.
pub(crate) fn is(node: &roxmltree::Node<'_, '_>, ns: &str, name: &str) -> bool {
    node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(ns)
}

/// The element children named `ns:name`.
pub(crate) fn children<'a, 'input: 'a>(
    node: roxmltree::Node<'a, 'input>,
    ns: &'a str,
    name: &'a str,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> + 'a {
    node.children().filter(move |c| is(c, ns, name))
}

/// The single element child `ns:name`; `None` when absent or repeated.
pub(crate) fn only_child<'a, 'input: 'a>(
    node: roxmltree::Node<'a, 'input>,
    ns: &'a str,
    name: &'a str,
) -> Option<roxmltree::Node<'a, 'input>> {
    let mut it = children(node, ns, name);
    let first = it.next()?;
    if it.next().is_some() {
        None
    } else {
        Some(first)
    }
}

/// The text of an element as canonicalization sees it: every descendant text node, comments
/// skipped, so that `a<!---->b` reads `ab` (never just `a`).
pub(crate) fn text_content(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<String>()
}

/// The trimmed text content of a single element child.
pub(crate) fn child_text(node: roxmltree::Node<'_, '_>, ns: &str, name: &str) -> Option<String> {
    only_child(node, ns, name).map(|c| text_content(c).trim().to_owned())
}

/// A self-submitting HTML form for the POST binding; `encoded` is the message in standard
/// base64, as [`encode_base64`] writes it.
pub(crate) fn post_form(
    action: &str,
    field: &str,
    encoded: &str,
    relay_state: Option<&str>,
) -> String {
    let relay = relay_state
        .map(|r| {
            format!(
                "<input type=\"hidden\" name=\"RelayState\" value=\"{}\"/>",
                escape(r)
            )
        })
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Signing in</title></head><body>\
         <form method=\"post\" action=\"{action}\">\
         <input type=\"hidden\" name=\"{field}\" value=\"{value}\"/>{relay}\
         <noscript><p>Your browser does not run scripts: continue to sign in.</p>\
         <button type=\"submit\">Continue</button></noscript>\
         </form><script>{POST_FORM_SCRIPT}</script></body></html>\n",
        action = escape(action),
        field = escape(field),
        // Standard base64 (A-Z, a-z, 0-9, `+`, `/`, `=`) has nothing to escape in a quoted
        // attribute; the value is the whole signed message, so it is not copied twice.
        value = encoded,
    )
}

/// The only script of the POST-binding page.
pub(crate) const POST_FORM_SCRIPT: &str = "document.forms[0].submit()";

/// The CSP source of [`POST_FORM_SCRIPT`]: `sha256-<base64>`.
pub(crate) fn post_form_script_hash() -> String {
    format!(
        "sha256-{}",
        encode_base64(&openssl::sha::sha256(POST_FORM_SCRIPT.as_bytes()))
    )
}

/// Splits a raw query string into `(name, raw value, decoded value)`; `None` on a repeated name.
pub(crate) fn split_query(query: &str) -> Option<Vec<(String, String, String)>> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut out: Vec<(String, String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = url::form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map(|(k, _)| k.into_owned())
            .unwrap_or_default();
        let value = url::form_urlencoded::parse(format!("v={raw_value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if out.iter().any(|(n, _, _)| *n == name) {
            return None;
        }
        out.push((name, raw_value.to_owned(), value));
    }
    Some(out)
}

/// Percent-encodes a query value.
pub(crate) fn query_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_replaces_markup_and_whitespace_and_keeps_everything_else() {
        assert_eq!(escape(""), "");
        assert_eq!(escape("PHNhbWxwOlJlc3BvbnNl+/="), "PHNhbWxwOlJlc3BvbnNl+/=");
        assert_eq!(
            escape("a&b<c>d\"e'f\rg\nh\ti"),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;g&#10;h&#9;i"
        );
        assert_eq!(escape("<Jürgen & Zoë>"), "&lt;Jürgen &amp; Zoë&gt;");
        assert_eq!(escape("&&"), "&amp;&amp;");
        assert_eq!(escape("ö"), "ö");
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        assert_eq!(
            refuse_doctype("<!DOCTYPE x><x/>"),
            Err(DecodeFailure::Doctype)
        );
        assert_eq!(
            refuse_doctype("<x><!ENTITY a 'b'></x>"),
            Err(DecodeFailure::Doctype)
        );
        assert_eq!(
            refuse_doctype("<!doctype x><x/>"),
            Err(DecodeFailure::Doctype)
        );
        assert_eq!(refuse_doctype("<x><!-- c --><![CDATA[y]]></x>"), Ok(()));
    }

    #[test]
    fn inflate_is_bounded() {
        let big = vec![b'a'; MAX_XML_LEN + 10];
        let deflated = deflate(&big);
        assert!(deflated.len() < 4096);
        assert_eq!(inflate_bounded(&deflated), Err(DecodeFailure::TooLarge));
        let ok = deflate(b"<x/>");
        assert_eq!(inflate_bounded(&ok).as_deref(), Ok(&b"<x/>"[..]));
    }

    #[test]
    fn text_content_skips_comments() {
        let doc = parse("<a>user@evil.com<!---->.attacker.com</a>").unwrap();
        assert_eq!(
            text_content(doc.root_element()),
            "user@evil.com.attacker.com"
        );
    }

    #[test]
    fn query_keeps_raw_values_and_refuses_repeats() {
        let q = split_query("SAMLRequest=a%2Bb&RelayState=x+y").unwrap();
        assert_eq!(q[0], ("SAMLRequest".into(), "a%2Bb".into(), "a+b".into()));
        assert_eq!(q[1].2, "x y");
        assert!(split_query("a=1&a=2").is_none());
    }
}
