//! Moving a process's std handles across a socket.
//!
//! In the embedded host, a `CreateProcess` reply's document names the std handles as
//! descriptor numbers of the client's own process (`{"ProcessId":7,"StdInput":12,...}`),
//! owned by whoever takes the reply. Across a socket those numbers mean nothing: the
//! sender takes the descriptors out ([`take`]), attaches them to the frame and writes their
//! positions in the document instead; the receiver puts its own numbers back ([`put`]).

use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

const FIELDS: [&str; 3] = ["StdInput", "StdOutput", "StdError"];

/// Takes ownership of the descriptors named in `document` and replaces each number with
/// its position in the returned list. A document without descriptors comes back as is.
pub fn take(document: &str) -> (String, Vec<OwnedFd>) {
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(document) else {
        return (document.to_owned(), Vec::new());
    };
    let mut fds = Vec::new();
    for field in FIELDS {
        if let Some(value) = object.get_mut(field) {
            if let Some(fd) = value.as_i64().and_then(|v| i32::try_from(v).ok()) {
                if fd >= 0 {
                    // SAFETY: a process-create reply passes ownership of its std handles
                    // to whoever takes the reply; here, to this function.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                    *value = serde_json::Value::from(fds.len() - 1);
                }
            }
        }
    }
    if fds.is_empty() {
        return (document.to_owned(), fds);
    }
    (serde_json::Value::Object(object).to_string(), fds)
}

/// Replaces the positions in `document` with the descriptors of `fds`, whose ownership
/// passes to whoever takes the document. Descriptors the document does not name are
/// closed.
pub fn put(document: &str, fds: Vec<OwnedFd>) -> String {
    if fds.is_empty() {
        return document.to_owned();
    }
    let Ok(serde_json::Value::Object(mut object)) = serde_json::from_str(document) else {
        return document.to_owned();
    };
    let mut fds: Vec<Option<OwnedFd>> = fds.into_iter().map(Some).collect();
    for field in FIELDS {
        if let Some(value) = object.get_mut(field) {
            if let Some(index) = value.as_u64() {
                match fds.get_mut(index as usize).and_then(Option::take) {
                    Some(fd) => *value = serde_json::Value::from(fd.into_raw_fd()),
                    None => *value = serde_json::Value::Null,
                }
            }
        }
    }
    serde_json::Value::Object(object).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn take_then_put_moves_the_descriptors() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (a, b) = (
            OwnedFd::from(a).into_raw_fd(),
            OwnedFd::from(b).into_raw_fd(),
        );
        let doc = format!(r#"{{"ProcessId":7,"StdInput":{a},"StdOutput":null,"StdError":{b}}}"#);
        let (sent, fds) = take(&doc);
        assert_eq!(fds.len(), 2);
        let sent: serde_json::Value = serde_json::from_str(&sent).unwrap();
        assert_eq!(sent["StdInput"], 0);
        assert_eq!(sent["StdError"], 1);
        assert!(sent["StdOutput"].is_null());
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let back = put(&sent.to_string(), fds);
        let back: serde_json::Value = serde_json::from_str(&back).unwrap();
        assert_eq!(back["StdInput"], raw[0]);
        assert_eq!(back["StdError"], raw[1]);
        assert_eq!(back["ProcessId"], 7);
        for fd in raw {
            // SAFETY: `put` passed these to us.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }

    #[test]
    fn documents_without_descriptors_pass_unchanged() {
        let doc = r#"{"ProcessId":7}"#;
        let (sent, fds) = take(doc);
        assert_eq!(sent, doc);
        assert!(fds.is_empty());
        assert_eq!(put(doc, Vec::new()), doc);
        assert_eq!(take("not json").0, "not json");
    }
}
