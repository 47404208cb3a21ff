//! Interoperability with pysaml2 (see tests/interop/).
