//! Fuzz target `guest_protocol`: arbitrary bytes as a guest agent's control connection,
//! read the way the host reads it (`hcs-guest-protocol`'s frames: a `Hello`, then
//! `GuestMessage`s until the stream ends or a frame is refused). Guests are hostile input.
//!
//! Invariants (a violation panics; libFuzzer reports it with the input):
//! * reading never panics and never allocates past the frame limit (`MAX_FRAME`, 1 MiB):
//!   a longer declared length is refused before anything is read;
//! * a message that parses writes back to a frame that reads to the same message;
//! * version negotiation picks a version both sides speak, or none.
#![no_main]

use hcs_guest_protocol::{self as proto, GuestMessage, Hello, MAX_FRAME, SUPPORTED_VERSIONS};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fn round_trip<T>(message: &T)
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    let mut frame = Vec::new();
    proto::write_frame(&mut frame, message).expect("a parsed message writes back");
    let again: T = proto::read_frame(&mut Cursor::new(frame)).expect("and reads again");
    assert_eq!(&again, message);
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor::new(data);
    let hello: Hello = match proto::read_frame(&mut input) {
        Ok(hello) => hello,
        Err(_) => return,
    };
    round_trip(&hello);
    if let Some(version) = proto::negotiate(SUPPORTED_VERSIONS, &hello.versions) {
        assert!(SUPPORTED_VERSIONS.contains(&version) && hello.versions.contains(&version));
    }
    loop {
        let position = input.position();
        let declared = data
            .get(position as usize..position as usize + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
        match proto::read_frame_bytes(&mut input) {
            Ok(body) => {
                assert!(body.len() <= MAX_FRAME);
                if let Ok(message) = serde_json::from_slice::<GuestMessage>(&body) {
                    round_trip(&message);
                }
            }
            Err(proto::FrameError::TooLarge(len)) => {
                assert!(len > MAX_FRAME);
                assert_eq!(declared, Some(len));
                return;
            }
            Err(_) => return,
        }
    }
});
