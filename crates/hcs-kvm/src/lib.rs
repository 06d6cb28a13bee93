//! The built-in VMM (placeholder, being written).
