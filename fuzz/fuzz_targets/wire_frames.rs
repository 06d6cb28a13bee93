//! Fuzz target `wire_frames`: arbitrary bytes written by a peer into a Unix socket, with up to
//! four descriptors attached to the first write (SCM_RIGHTS), read by `hcs-wire`'s
//! `FrameReader` as `hcsd` reads a client (`ClientMessage` frames until the end of the stream
//! or the first refused frame). Clients are hostile input.
//!
//! Invariants (a violation panics; libFuzzer reports it with the input):
//! * reading never panics and never hangs (the writer's end is shut before reading);
//! * a frame that declares more than `MAX_FRAME_LEN` bytes or more descriptors than came is
//!   refused as such;
//! * every descriptor that came, used or not, is closed once the reader and the frames are
//!   dropped (`/proc/self/fd` counted before and after).
#![no_main]

use hcs_wire::{ClientMessage, FrameReader, WireError, MAX_FDS_PER_FRAME, MAX_FRAME_LEN};
use libfuzzer_sys::fuzz_target;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    if bytes.is_empty() || bytes.len() > 64 << 10 {
        return; // the socket buffer takes it whole: no writer thread needed
    }
    let before = open_fds();
    {
        let (writer, reader) = UnixStream::pair().expect("socketpair");
        let fds: Vec<OwnedFd> = (0..first % 5)
            .filter_map(|_| std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
            .collect();
        let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let control = [ControlMessage::ScmRights(&raw)];
        let control: &[ControlMessage] = if raw.is_empty() { &[] } else { &control };
        let sent = sendmsg::<()>(
            writer.as_raw_fd(),
            &[IoSlice::new(bytes)],
            control,
            MsgFlags::empty(),
            None,
        );
        drop(fds); // the receiver has its own copies now
        if sent.is_err() {
            return;
        }
        writer.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut frames = FrameReader::new(reader);
        loop {
            match frames.recv::<ClientMessage>() {
                Ok(Some((_message, fds))) => assert!(fds.len() <= MAX_FDS_PER_FRAME),
                Ok(None) => break,
                Err(WireError::TooLarge { len }) => {
                    assert!(len > MAX_FRAME_LEN);
                    break;
                }
                Err(WireError::BadDescriptors { declared, available }) => {
                    assert!(declared > MAX_FDS_PER_FRAME || declared > available);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert_eq!(open_fds(), before, "a descriptor leaked");
});
