//! HCS service core (placeholder).
