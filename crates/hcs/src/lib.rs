//! HCS client (placeholder).
