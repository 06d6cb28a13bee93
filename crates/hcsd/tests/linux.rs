//! A Linux guest through the service: its QEMU and its guest connection live in the
//! worker, so they survive a restart of `hcsd`; the std handles of a guest process cross
//! two sockets (worker -> hcsd -> client) as descriptors.

mod common;

use common::*;
use hcs_protocol::{RequestBody, SystemRequest};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// A guest image as `scripts/setup` leaves it (or `$var`); fails loudly when missing.
fn image(var: &str, name: &str) -> String {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/guest").join(name));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup; this test boots a real Linux guest and is never \
         skipped",
        path.display()
    );
    path.canonicalize().unwrap().to_string_lossy().into_owned()
}

fn linux_vm() -> String {
    serde_json::json!({
        "SchemaVersion": { "Major": 2, "Minor": 2 },
        "Owner": "hcsd-linux-tests",
        "VirtualMachine": {
            "Chipset": { "LinuxKernelDirect": {
                "KernelFilePath": image("HCS_GUEST_KERNEL", "vmlinuz"),
                "InitRdPath": image("HCS_GUEST_INITRD", "initramfs.img"),
                "KernelCmdLine": "console=ttyS0 quiet"
            } },
            "ComputeTopology": { "Memory": { "SizeInMB": 512 }, "Processor": { "Count": 2 } },
            "GuestConnection": {},
            "StopOnReset": true
        }
    })
    .to_string()
}

/// Runs `command` in the guest through `client` and returns its stdout.
fn run(client: &TestClient, system: u64, process: u64, command: &str) -> String {
    let parameters = serde_json::json!({
        "CommandLine": command,
        "CreateStdOutPipe": true,
    })
    .to_string();
    let id = client.send(RequestBody::System {
        handle: system,
        request: SystemRequest::CreateProcess {
            process,
            parameters,
        },
    });
    let (mut reply, fds) = client.wait(id);
    assert!(reply.result.succeeded(), "CreateProcess: {reply:?}");
    // The reply says which std handles came; their descriptors ride beside it.
    let mut handles = reply
        .process
        .take()
        .expect("a started process in the reply")
        .std_handles;
    assert!(handles.attach(fds).is_empty(), "no stray descriptor");
    let [_, stdout, _] = handles.into_fds();
    let stdout: OwnedFd = stdout.expect("the stdout descriptor came with the reply");
    let mut text = String::new();
    std::fs::File::from(stdout)
        .read_to_string(&mut text)
        .unwrap();
    client.ok(RequestBody::CloseProcess { handle: process });
    text
}

/// A Linux guest keeps running across a SIGKILL of `hcsd`: the restarted service finds
/// it, a new client reopens it and runs a process in it (its stdout a descriptor passed
/// from the worker through hcsd), and terminates it; its QEMU is then gone.
#[test]
fn a_linux_guest_survives_an_hcsd_restart_and_runs_processes_after_it() {
    require_kvm();
    let dir = scratch("linux");
    let mut hcsd = Hcsd::start(&dir);
    let client = hcsd.client();
    client.ok(create(1, "linux-restart", linux_vm()));
    client.ok(on(1, SystemRequest::Start));
    assert_eq!(run(&client, 1, 100, "echo before"), "before\n");
    let worker = hcsd.worker_pids();
    let qemu = processes_mentioning("qemu-system", "linux-restart");
    assert_eq!(qemu.len(), 1, "one QEMU for the guest");

    hcsd.kill(libc::SIGKILL);
    drop(client);
    hcsd.restart();
    assert_eq!(hcsd.worker_pids(), worker);
    assert_eq!(processes_mentioning("qemu-system", "linux-restart"), qemu);

    let client = hcsd.client();
    client.ok(open(5, "linux-restart"));
    assert_eq!(run(&client, 5, 200, "uname -s"), "Linux\n");
    client.ok(on(5, SystemRequest::Terminate));
    client.ok(close(5));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !hcsd.worker_pids().is_empty()
        || !processes_mentioning("qemu-system", "linux-restart").is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker and QEMU did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
