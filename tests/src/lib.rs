//! Test-only crate: end-to-end tests live in tests/.
