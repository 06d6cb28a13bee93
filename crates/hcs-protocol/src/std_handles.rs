//! A created process's std handles as owned descriptors, and how they cross a socket.
//!
//! In memory a [`StdHandles`] holds the host ends of the process's stdin, stdout and stderr
//! as [`OwnedFd`]s: whoever holds the message owns them, and dropping it closes them. In a
//! frame the descriptors ride beside the JSON (SCM_RIGHTS) in the order stdin, stdout,
//! stderr, and the JSON says only which of the three are there (`[true,false,true]`): the
//! sender takes them out with [`StdHandles::detach`], the receiver puts its own copies back
//! with [`StdHandles::attach`]. No descriptor number ever appears in a document.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::{AsRawFd, OwnedFd};

/// One std handle of a created process.
#[derive(Debug)]
pub enum Descriptor {
    /// The descriptor itself, owned by whoever holds the message.
    Owned(OwnedFd),
    /// Sent with the frame this message came in, not attached yet (see
    /// [`StdHandles::attach`]); also what [`StdHandles::detach`] leaves behind.
    InFrame,
}

impl Descriptor {
    /// The descriptor, if it is attached.
    pub fn into_owned(self) -> Option<OwnedFd> {
        match self {
            Descriptor::Owned(fd) => Some(fd),
            Descriptor::InFrame => None,
        }
    }
}

impl PartialEq for Descriptor {
    /// The same descriptor, or both still in a frame.
    fn eq(&self, other: &Descriptor) -> bool {
        match (self, other) {
            (Descriptor::Owned(a), Descriptor::Owned(b)) => a.as_raw_fd() == b.as_raw_fd(),
            (Descriptor::InFrame, Descriptor::InFrame) => true,
            _ => false,
        }
    }
}

/// The host ends of a process's stdin, stdout and stderr: each present only if the
/// process was created with that pipe (`CreateStdInPipe`, ...).
#[derive(Debug, Default, PartialEq)]
pub struct StdHandles {
    /// Write end of the process's stdin.
    pub stdin: Option<Descriptor>,
    /// Read end of the process's stdout.
    pub stdout: Option<Descriptor>,
    /// Read end of the process's stderr.
    pub stderr: Option<Descriptor>,
}

impl StdHandles {
    /// Handles made of attached descriptors.
    pub fn new(stdin: Option<OwnedFd>, stdout: Option<OwnedFd>, stderr: Option<OwnedFd>) -> Self {
        StdHandles {
            stdin: stdin.map(Descriptor::Owned),
            stdout: stdout.map(Descriptor::Owned),
            stderr: stderr.map(Descriptor::Owned),
        }
    }

    fn slots(&mut self) -> [&mut Option<Descriptor>; 3] {
        [&mut self.stdin, &mut self.stdout, &mut self.stderr]
    }

    /// Takes the attached descriptors out, in the order stdin, stdout, stderr, for a
    /// frame to carry; each present one is left as [`Descriptor::InFrame`].
    pub fn detach(&mut self) -> Vec<OwnedFd> {
        let mut fds = Vec::new();
        for slot in self.slots() {
            if let Some(descriptor) = slot.take() {
                if let Some(fd) = descriptor.into_owned() {
                    fds.push(fd);
                }
                *slot = Some(Descriptor::InFrame);
            }
        }
        fds
    }

    /// Attaches the descriptors a frame brought, in order, to the handles the message
    /// says are there. A handle without its descriptor (a short frame) becomes absent;
    /// descriptors left over are returned (the caller drops them: closed).
    pub fn attach(&mut self, fds: Vec<OwnedFd>) -> Vec<OwnedFd> {
        let mut fds = fds.into_iter();
        for slot in self.slots() {
            if matches!(slot, Some(Descriptor::InFrame)) {
                *slot = fds.next().map(Descriptor::Owned);
            }
        }
        fds.collect()
    }

    /// The three as owned descriptors (those still in a frame count as absent).
    pub fn into_fds(self) -> [Option<OwnedFd>; 3] {
        [self.stdin, self.stdout, self.stderr].map(|d| d.and_then(Descriptor::into_owned))
    }
}

impl Serialize for StdHandles {
    /// Which of the three are present: `[stdin, stdout, stderr]`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        [
            self.stdin.is_some(),
            self.stdout.is_some(),
            self.stderr.is_some(),
        ]
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StdHandles {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [stdin, stdout, stderr] = <[bool; 3]>::deserialize(deserializer)?;
        let slot = |present: bool| present.then_some(Descriptor::InFrame);
        Ok(StdHandles {
            stdin: slot(stdin),
            stdout: slot(stdout),
            stderr: slot(stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn fd() -> OwnedFd {
        OwnedFd::from(UnixStream::pair().unwrap().0)
    }

    #[test]
    fn detach_then_attach_moves_the_descriptors_in_order() {
        let (a, b) = (fd(), fd());
        let (raw_a, raw_b) = (a.as_raw_fd(), b.as_raw_fd());
        let mut handles = StdHandles::new(Some(a), None, Some(b));
        let fds = handles.detach();
        assert_eq!(
            fds.iter().map(AsRawFd::as_raw_fd).collect::<Vec<_>>(),
            [raw_a, raw_b]
        );
        let json = serde_json::to_string(&handles).unwrap();
        assert_eq!(json, "[true,false,true]");
        let mut received: StdHandles = serde_json::from_str(&json).unwrap();
        assert!(received.attach(fds).is_empty());
        let [stdin, stdout, stderr] = received.into_fds();
        assert_eq!(stdin.map(|f| f.as_raw_fd()), Some(raw_a));
        assert!(stdout.is_none());
        assert_eq!(stderr.map(|f| f.as_raw_fd()), Some(raw_b));
    }

    #[test]
    fn a_short_frame_leaves_handles_absent_and_extra_descriptors_are_returned() {
        let mut received: StdHandles = serde_json::from_str("[true,true,false]").unwrap();
        assert!(received.attach(vec![fd()]).is_empty());
        assert!(matches!(received.stdin, Some(Descriptor::Owned(_))));
        assert!(received.stdout.is_none());
        let mut none: StdHandles = serde_json::from_str("[false,false,false]").unwrap();
        assert_eq!(none.attach(vec![fd(), fd()]).len(), 2);
    }
}
