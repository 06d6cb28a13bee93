//! HCS JSON documents (placeholder, being written).
