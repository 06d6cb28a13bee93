//! A scripted guest agent for [`crate::FakeEngine`]'s VMs: it dials the host's control
//! socket as `hcs-guest` does over vsock (`<runtime dir>/vsock.sock_<CONTROL_PORT>`), says
//! hello, answers `ListProcesses` with nothing and `Shutdown` with `Ok` (then the fake
//! guest powers off or resets), and refuses what it does not model (processes).

use hcs_guest_protocol::{
    self as proto, GuestMessage, Hello, HostMessage, Request, Response, ResponseBody, CONTROL_PORT,
};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the agent asks its VM to do after answering a shutdown.
pub(crate) enum AgentAction {
    PowerOff,
    Reset,
}

/// Connects to the control socket of the VM whose vsock host side is `uds`, retrying for
/// up to 5 s (the host binds it at create), and serves the connection until it closes.
/// `act` is called after a shutdown's answer.
pub(crate) fn serve(uds: &Path, act: impl Fn(AgentAction)) {
    let mut path = uds.as_os_str().to_owned();
    path.push(format!("_{CONTROL_PORT}"));
    let deadline = Instant::now() + Duration::from_secs(5);
    let stream = loop {
        match UnixStream::connect(&path) {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return,
        }
    };
    let (Ok(mut reader), mut writer) = (stream.try_clone(), stream) else {
        return;
    };
    let hello = Hello {
        versions: proto::SUPPORTED_VERSIONS.to_vec(),
        agent: "fake-agent".into(),
        kernel: "fake".into(),
    };
    if proto::write_frame(&mut writer, &hello).is_err() {
        return;
    }
    if !matches!(
        proto::read_frame::<_, HostMessage>(&mut reader),
        Ok(HostMessage::Welcome { .. })
    ) {
        return;
    }
    while let Ok(HostMessage::Request { id, body }) = proto::read_frame(&mut reader) {
        let (answer, then) = match body {
            Request::ListProcesses => (ResponseBody::Processes { processes: vec![] }, None),
            Request::Shutdown { reboot, .. } => (
                ResponseBody::Ok,
                Some(if reboot {
                    AgentAction::Reset
                } else {
                    AgentAction::PowerOff
                }),
            ),
            _ => (
                ResponseBody::Error {
                    code: proto::E_FAIL,
                    message: "the fake agent runs no processes".into(),
                },
                None,
            ),
        };
        let response = GuestMessage::Response(Response { id, body: answer });
        if proto::write_frame(&mut writer, &response).is_err() {
            return;
        }
        if let Some(action) = then {
            act(action);
            return;
        }
    }
}
