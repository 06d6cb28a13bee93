//! The agent as a plain process (`--connect unix:PATH`) against a fake host: the same code
//! paths as in a VM, minus mounts, modules and power-off.

mod common;

use common::{command, expected_hash, hash_all, read_all, scratch, write_all, FakeHost, WAIT};
use hcs_guest_protocol::{
    Request, ResponseBody, ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_NOT_FOUND,
    E_INVALIDARG, HCS_E_PROCESS_ALREADY_STOPPED, HCS_E_UNKNOWN_MESSAGE, SUPPORTED_VERSIONS,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running agent and its fake host; the agent is killed on drop.
struct Rig {
    host: FakeHost,
    agent: Child,
    dir: PathBuf,
}

impl Rig {
    fn start(name: &str) -> Self {
        let rig = Self::start_unwelcomed(name);
        let hello = rig.host.accept_and_welcome(WAIT);
        assert_eq!(hello.versions, SUPPORTED_VERSIONS);
        assert!(hello.agent.starts_with("hcs-guest "));
        assert!(!hello.kernel.is_empty());
        rig
    }

    fn start_unwelcomed(name: &str) -> Self {
        let dir = scratch(name);
        let control = dir.join("vsock.sock");
        let host = FakeHost::listen(&control, &control);
        let agent = Command::new(env!("CARGO_BIN_EXE_hcs-guest"))
            .arg("--connect")
            .arg(format!("unix:{}", control.display()))
            .stdin(Stdio::null())
            .spawn()
            .expect("start the agent");
        Self { host, agent, dir }
    }

    fn wait_agent(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.agent.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "the agent did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.agent.kill();
        let _ = self.agent.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn echo_hello_arrives_on_stdout_then_the_exit() {
    let rig = Rig::start("echo");
    let p = rig
        .host
        .create(command(&["echo", "hello"]), false, true, false)
        .expect("created");
    assert_eq!(text(read_all(p.stdout.expect("stdout"))), "hello\n");
    assert_eq!(rig.host.exit_code(p.pid), 0);
    assert!(rig.host.early_exits().is_empty());
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let rig = Rig::start("codes");
    for code in [0, 1, 3, 255] {
        let p = rig
            .host
            .create(
                command(&["sh", "-c", &format!("exit {code}")]),
                false,
                false,
                false,
            )
            .expect("created");
        assert_eq!(rig.host.exit_code(p.pid), code);
    }
    let p = rig
        .host
        .create(command(&["sh", "-c", "kill -9 $$"]), false, false, false)
        .expect("created");
    assert_eq!(rig.host.exit_code(p.pid), 128 + 9);
}

#[test]
fn stdin_reaches_cat_and_closing_it_ends_cat() {
    let rig = Rig::start("stdin");
    // End of stdin by closing the host's end of the stream.
    let p = rig
        .host
        .create(command(&["cat"]), true, true, false)
        .expect("created");
    let mut stdin = p.stdin.expect("stdin");
    write_all(&mut stdin, b"first line\nsecond");
    drop(stdin);
    assert_eq!(
        text(read_all(p.stdout.expect("stdout"))),
        "first line\nsecond"
    );
    assert_eq!(rig.host.exit_code(p.pid), 0);

    // End of stdin by CloseStdin, with the host's end still open.
    let p = rig
        .host
        .create(command(&["cat"]), true, true, false)
        .expect("created");
    let mut stdin = p.stdin.expect("stdin");
    write_all(&mut stdin, b"via CloseStdin\n");
    // Let the bytes through before closing (CloseStdin ends the relay at once).
    let mut stdout = p.stdout.expect("stdout");
    let mut got = vec![0u8; 15];
    std::io::Read::read_exact(&mut stdout, &mut got).expect("echoed");
    assert_eq!(
        rig.host.request(Request::CloseStdin { pid: p.pid }),
        ResponseBody::Ok
    );
    assert_eq!(read_all(stdout), b"");
    assert_eq!(rig.host.exit_code(p.pid), 0);
    drop(stdin);
}

#[test]
fn ten_megabytes_of_stdout_arrive_whole() {
    let rig = Rig::start("bulk");
    let total = 10 * 1024 * 1024;
    let line = "0123456789abcdefghijklmnopqrstuvwxyz";
    let p = rig
        .host
        .create(
            command(&["sh", "-c", &format!("yes {line} | head -c {total}")]),
            false,
            true,
            false,
        )
        .expect("created");
    let start = Instant::now();
    let got = hash_all(p.stdout.expect("stdout"));
    let took = start.elapsed();
    assert_eq!(got, expected_hash(format!("{line}\n").as_bytes(), total));
    assert_eq!(rig.host.exit_code(p.pid), 0);
    eprintln!(
        "10 MiB in {took:?} ({:.0} MiB/s)",
        10.0 / took.as_secs_f64()
    );
}

#[test]
fn stderr_is_apart_from_stdout() {
    let rig = Rig::start("stderr");
    let p = rig
        .host
        .create(
            command(&["sh", "-c", "echo out; echo err >&2; echo out2"]),
            false,
            true,
            true,
        )
        .expect("created");
    let err = std::thread::spawn({
        let s = p.stderr.expect("stderr");
        move || read_all(s)
    });
    assert_eq!(text(read_all(p.stdout.expect("stdout"))), "out\nout2\n");
    assert_eq!(text(err.join().expect("stderr reader")), "err\n");
    assert_eq!(rig.host.exit_code(p.pid), 0);
}

#[test]
fn the_environment_and_working_directory_are_exactly_the_requested_ones() {
    let rig = Rig::start("env");
    let mut request = command(&["env"]);
    request.env.insert("FOO".into(), "bar baz".into());
    let p = rig
        .host
        .create(request.clone(), false, true, false)
        .expect("created");
    let mut lines: Vec<String> = text(read_all(p.stdout.expect("stdout")))
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    let mut want: Vec<String> = request
        .env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    want.sort();
    assert_eq!(lines, want);

    let mut request = command(&["pwd"]);
    request.cwd = Some(rig.dir.display().to_string());
    let p = rig
        .host
        .create(request, false, true, false)
        .expect("created");
    let cwd = std::fs::canonicalize(&rig.dir).expect("canonical");
    assert_eq!(
        text(read_all(p.stdout.expect("stdout"))),
        format!("{}\n", cwd.display())
    );
}

#[test]
fn sigterm_ends_sleep_and_later_signals_find_it_stopped() {
    let rig = Rig::start("signal");
    let p = rig
        .host
        .create(command(&["sleep", "100"]), false, false, false)
        .expect("created");
    assert_eq!(
        rig.host.request(Request::Signal {
            pid: p.pid,
            signal: 15
        }),
        ResponseBody::Ok
    );
    assert_eq!(rig.host.exit_code(p.pid), 143);
    let code = |body: ResponseBody| match body {
        ResponseBody::Error { code, .. } => code,
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(
        code(rig.host.request(Request::Signal {
            pid: p.pid,
            signal: 15
        })),
        HCS_E_PROCESS_ALREADY_STOPPED
    );
    assert_eq!(
        code(rig.host.request(Request::Signal {
            pid: u32::MAX - 1,
            signal: 15
        })),
        ERROR_NOT_FOUND
    );
    assert_eq!(
        code(rig.host.request(Request::Signal {
            pid: p.pid,
            signal: 0
        })),
        E_INVALIDARG
    );
    assert_eq!(
        code(rig.host.request(Request::Signal {
            pid: p.pid,
            signal: 65
        })),
        E_INVALIDARG
    );
}

#[test]
fn a_signal_reaches_the_whole_process_group() {
    let rig = Rig::start("group");
    // sh waits for its sleep; SIGKILL to the group ends both, so stdout closes at once
    // (a signal to sh alone would leave sleep holding the pipe for the output grace).
    let p = rig
        .host
        .create(
            command(&["sh", "-c", "sleep 100; echo never"]),
            false,
            true,
            false,
        )
        .expect("created");
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    assert_eq!(
        rig.host.request(Request::Signal {
            pid: p.pid,
            signal: 9
        }),
        ResponseBody::Ok
    );
    assert_eq!(read_all(p.stdout.expect("stdout")), b"");
    assert_eq!(rig.host.exit_code(p.pid), 137);
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn an_unknown_request_is_answered_and_the_connection_goes_on() {
    let rig = Rig::start("unknown");
    match rig
        .host
        .request_raw(serde_json::json!({"type": "Teleport", "to": "mars"}))
    {
        ResponseBody::Error { code, .. } => assert_eq!(code, HCS_E_UNKNOWN_MESSAGE),
        other => panic!("expected an error, got {other:?}"),
    }
    match rig
        .host
        .request_raw(serde_json::json!({"type": "Signal", "pid": "nope"}))
    {
        ResponseBody::Error { code, .. } => assert_eq!(code, E_INVALIDARG),
        other => panic!("expected an error, got {other:?}"),
    }
    // Junk that is not a request at all is ignored.
    rig.host.send_raw(&serde_json::json!({"hello": "world"}));
    rig.host.send_raw(&serde_json::json!([1, 2, 3]));
    let p = rig
        .host
        .create(command(&["echo", "still here"]), false, true, false)
        .expect("created");
    assert_eq!(text(read_all(p.stdout.expect("stdout"))), "still here\n");
    match rig.host.request(Request::ListProcesses) {
        ResponseBody::Processes { processes } => assert!(!processes.is_empty()),
        other => panic!("expected processes, got {other:?}"),
    }
}

#[test]
fn a_refused_handshake_ends_the_agent() {
    let mut rig = Rig::start_unwelcomed("refused");
    let (mut stream, hello) = rig.host.accept(WAIT);
    assert_eq!(hello.versions, SUPPORTED_VERSIONS);
    hcs_guest_protocol::write_frame(
        &mut stream,
        &hcs_guest_protocol::HostMessage::Refused {
            versions: vec![99],
            message: "too new for you".into(),
        },
    )
    .expect("send Refused");
    assert_eq!(rig.wait_agent(WAIT), Some(1));
}

#[test]
fn failures_carry_the_right_code_and_leave_nothing_behind() {
    let rig = Rig::start("failures");
    let err = |request, streams: bool| {
        rig.host
            .create(request, streams, streams, streams)
            .err()
            .expect("should fail")
    };
    assert_eq!(
        err(command(&["no-such-program-anywhere"]), true).0,
        ERROR_FILE_NOT_FOUND
    );
    assert_eq!(
        err(command(&["/no/such/path"]), false).0,
        ERROR_FILE_NOT_FOUND
    );
    let script = rig.dir.join("not-executable");
    std::fs::write(&script, "#!/bin/sh\n").expect("write");
    assert_eq!(
        err(command(&[&script.display().to_string()]), true).0,
        ERROR_ACCESS_DENIED
    );
    let mut request = command(&["true"]);
    request.cwd = Some("/no/such/dir".into());
    let (code, message) = err(request, true);
    assert_eq!(code, ERROR_FILE_NOT_FOUND);
    assert!(message.contains("/no/such/dir"), "{message}");
    assert_eq!(err(command(&[]), true).0, E_INVALIDARG);
    // The connection still works.
    let p = rig
        .host
        .create(command(&["true"]), false, false, false)
        .expect("created");
    assert_eq!(rig.host.exit_code(p.pid), 0);
}

#[test]
fn fifty_processes_at_once_each_exit_exactly_once() {
    let rig = std::sync::Arc::new(Rig::start("fifty"));
    let workers: Vec<_> = (0..50)
        .map(|i| {
            let rig = rig.clone();
            std::thread::spawn(move || {
                let p = rig
                    .host
                    .create(
                        command(&["sh", "-c", &format!("echo {i}; exit {}", i % 7)]),
                        false,
                        true,
                        false,
                    )
                    .expect("created");
                assert_eq!(text(read_all(p.stdout.expect("stdout"))), format!("{i}\n"));
                assert_eq!(rig.host.exit_code(p.pid), i % 7);
                p.pid
            })
        })
        .collect();
    let pids: Vec<u32> = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let exits = rig.host.exits();
    for pid in &pids {
        assert_eq!(exits.get(pid).map(Vec::len), Some(1), "pid {pid}");
    }
    assert!(rig.host.early_exits().is_empty());
}

#[test]
fn a_terminal_process_has_a_tty_of_the_requested_size_and_can_be_resized() {
    let rig = Rig::start("terminal");
    let mut request = command(&["sh", "-c", "tty; stty size; read x; stty size"]);
    request.terminal = Some((24, 80));
    let p = rig
        .host
        .create(request, true, true, false)
        .expect("created");
    let mut stdout = p.stdout.expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("24 80") {
        let n = std::io::Read::read(&mut stdout, &mut buf).expect("read");
        assert!(n > 0, "early end: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&seen).contains("/dev/pts/"));
    assert_eq!(
        rig.host.request(Request::ResizeConsole {
            pid: p.pid,
            rows: 50,
            cols: 100
        }),
        ResponseBody::Ok
    );
    let mut stdin = p.stdin.expect("stdin");
    write_all(&mut stdin, b"go\n");
    let rest = text(read_all(stdout));
    assert!(rest.contains("50 100"), "{rest:?}");
    assert_eq!(rig.host.exit_code(p.pid), 0);
    match rig.host.request(Request::ResizeConsole {
        pid: p.pid,
        rows: 1,
        cols: 1,
    }) {
        ResponseBody::Error { code, .. } => assert_eq!(code, HCS_E_PROCESS_ALREADY_STOPPED),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn shutdown_ends_processes_then_answers_and_exits() {
    let mut rig = Rig::start("shutdown");
    let p = rig
        .host
        .create(command(&["sleep", "100"]), false, false, false)
        .expect("created");
    let start = Instant::now();
    assert_eq!(
        rig.host.request(Request::Shutdown {
            reboot: false,
            grace_ms: 5000
        }),
        ResponseBody::Ok
    );
    // ProcessExited came before the answer.
    assert_eq!(rig.host.exits().get(&p.pid), Some(&vec![143]));
    assert_eq!(rig.wait_agent(WAIT), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn the_agent_exits_when_the_host_closes_the_connection() {
    let mut rig = Rig::start("close");
    let _p = rig
        .host
        .create(command(&["sleep", "100"]), false, false, false)
        .expect("created");
    rig.host.close();
    assert_eq!(rig.wait_agent(WAIT), Some(0));
}

#[test]
fn a_grandchild_holding_stdout_delays_the_exit_report_by_the_grace_at_most() {
    let rig = Rig::start("grandchild");
    // The background sleep keeps the stdout pipe open after sh exits.
    let p = rig
        .host
        .create(
            command(&["sh", "-c", "sleep 4 & echo hi"]),
            false,
            true,
            false,
        )
        .expect("created");
    let start = Instant::now();
    assert_eq!(text(read_all(p.stdout.expect("stdout"))), "hi\n");
    assert_eq!(rig.host.exit_code(p.pid), 0);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "{took:?}"
    );
}
