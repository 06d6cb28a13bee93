//! The messages between a client and `hcsd`, and the handshake that opens a connection.
//!
//! ```text
//!  client                                   hcsd
//!  Hello { versions, client } ────────────>  checks the peer (SO_PEERCRED, group)
//!        <──────────── Welcome { version } | Refused { result, message } (then closes)
//!  Request ───────────────────────────────>  (hcs_host::Request, as the embedded host takes)
//!        <──────────── Host(Reply | Notification), in order per compute system
//!        <──────────── Closing { result, message } before the service drops a connection
//! ```
//!
//! A reply to `CreateProcess` carries the process's std handles as descriptors attached
//! to its frame, in the order stdin, stdout, stderr; the message says only which are there
//! (`hcs_protocol::StdHandles`, detached before sending and attached after receiving).

use hcs_protocol::{HostMessage, Request};
use hcs_schema::HResult;
use serde::{Deserialize, Serialize};

/// The version of this protocol; a client lists the versions it speaks in its `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// From a client to the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// The first message of a connection.
    Hello {
        /// Protocol versions the client speaks.
        versions: Vec<u32>,
        /// What the client is (program name), for the service's log.
        client: String,
    },
    /// A request, exactly as the embedded host takes it.
    Request(Request),
}

/// From the service to a client.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum ServiceMessage {
    /// The handshake succeeded.
    Welcome {
        /// The version both speak.
        version: u32,
        /// The service's name and version.
        service: String,
        /// The service's process id.
        pid: u32,
    },
    /// The handshake failed (no common version, or the peer may not use the service);
    /// the service closes the connection after it.
    Refused {
        /// Why, as an HRESULT (`E_ACCESSDENIED`, `HCS_E_UNSUPPORTED_PROTOCOL_VERSION`).
        result: HResult,
        /// A sentence a person can act on.
        message: String,
    },
    /// A reply or a notification, exactly as the embedded host delivers it.
    Host(HostMessage),
    /// The service is about to close this connection (a malformed or oversized message,
    /// or the service stopping).
    Closing {
        /// Why, as an HRESULT.
        result: HResult,
        /// A sentence a person can act on.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_json() {
        let messages = [
            ServiceMessage::Welcome {
                version: 1,
                service: "hcsd 0.1.0".into(),
                pid: 7,
            },
            ServiceMessage::Refused {
                result: HResult::E_ACCESSDENIED,
                message: "no".into(),
            },
            ServiceMessage::Closing {
                result: HResult::HCS_E_INVALID_JSON,
                message: "bad".into(),
            },
        ];
        for m in messages {
            let text = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<ServiceMessage>(&text).unwrap(), m);
        }
        let hello = ClientMessage::Hello {
            versions: vec![PROTOCOL_VERSION],
            client: "test".into(),
        };
        let text = serde_json::to_string(&hello).unwrap();
        assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), hello);
    }
}
