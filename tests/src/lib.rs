//! Integration tests live in tests/.

#![warn(missing_docs)]
