//! The checks before a VM is launched: the machine type, the configuration, the kernel,
//! initrd and disk files, the Unix socket paths, and the wait for the vsock backend to
//! listen before QEMU connects to it.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Machine, VmConfig};
use crate::error::Error;
use crate::process::Process;
use crate::vm::{MACHINE_ENV, TAIL_LINES};

/// The longest Unix socket path (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// [`Machine::for_config`], unless the setting `HCS_QEMU_MACHINE` (`named`) names one
/// (that fits the VM).
pub(crate) fn choose_machine(config: &VmConfig, named: Option<&str>) -> Result<Machine, Error> {
    let auto = Machine::for_config(config);
    let Some(name) = named.filter(|v| !v.is_empty()) else {
        return Ok(auto);
    };
    let machine = match name {
        "microvm" => Machine::Microvm,
        "q35" => Machine::Q35,
        _ => {
            return Err(Error::InvalidConfig(format!(
                "{MACHINE_ENV}={name} (microvm or q35)"
            )))
        }
    };
    if !machine.fits(config) {
        return Err(Error::InvalidConfig(format!(
            "{MACHINE_ENV}=microvm but the VM has more than {} virtio devices",
            Machine::MICROVM_VIRTIO_SLOTS
        )));
    }
    Ok(machine)
}

/// Rejects what QEMU would refuse less clearly.
pub(crate) fn validate(config: &VmConfig) -> Result<(), Error> {
    let invalid = |m: String| Err(Error::InvalidConfig(m));
    if config.vcpus == 0 {
        return invalid("at least one vCPU is needed".into());
    }
    if config.memory_mb < 16 {
        return invalid(format!(
            "{} MiB of memory is too little (at least 16 MiB)",
            config.memory_mb
        ));
    }
    let mut seen = [false; 4];
    for port in &config.serial_ports {
        let Some(slot) = seen.get_mut(port.index as usize) else {
            return invalid(format!("serial port index {} (0 to 3 only)", port.index));
        };
        if std::mem::replace(slot, true) {
            return invalid(format!("serial port {} given twice", port.index));
        }
    }
    if let Some(vsock) = &config.vsock {
        if vsock.guest_cid < 3 {
            return invalid(format!(
                "vsock guest CID {} (0-2 are reserved; use 3 or more)",
                vsock.guest_cid
            ));
        }
    }
    Ok(())
}

/// Checks that the kernel, initrd and disks can be opened as QEMU will; says per disk
/// whether it is a block device.
pub(crate) fn check_files(config: &VmConfig) -> Result<Vec<bool>, Error> {
    let file_error = |what: &str, path: &Path, source| Error::File {
        what: what.to_owned(),
        path: path.to_owned(),
        source,
    };
    let readable_file = |what: &str, path: &Path| -> Result<(), Error> {
        let file = File::open(path).map_err(|e| file_error(what, path, e))?;
        let meta = file.metadata().map_err(|e| file_error(what, path, e))?;
        if meta.is_file() {
            Ok(())
        } else {
            Err(file_error(
                what,
                path,
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"),
            ))
        }
    };
    readable_file("kernel", &config.kernel)?;
    if let Some(initrd) = &config.initrd {
        readable_file("initrd", initrd)?;
    }
    config
        .disks
        .iter()
        .enumerate()
        .map(|(n, disk)| {
            let what = format!("disk {n}");
            let file = File::options()
                .read(true)
                .write(!disk.read_only)
                .open(&disk.path)
                .map_err(|e| file_error(&what, &disk.path, e))?;
            let kind = file
                .metadata()
                .map_err(|e| file_error(&what, &disk.path, e))?
                .file_type();
            if kind.is_block_device() {
                Ok(true)
            } else if kind.is_file() {
                Ok(false)
            } else {
                Err(file_error(
                    &what,
                    &disk.path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "neither a regular file nor a block device",
                    ),
                ))
            }
        })
        .collect()
}

/// Unix socket paths must fit in `sun_path`.
pub(crate) fn check_socket_paths(config: &VmConfig, vhost_socket: &Path) -> Result<(), Error> {
    let mut sockets: Vec<(String, &Path, usize)> = Vec::new();
    for port in &config.serial_ports {
        if let Some(path) = &port.socket {
            sockets.push((format!("serial port {} socket", port.index), path, 0));
        }
    }
    if let Some(vsock) = &config.vsock {
        sockets.push(("vhost-user socket (in runtime_dir)".into(), vhost_socket, 0));
        // "_<port>" is appended for guest-initiated connections: keep room for 10 digits.
        sockets.push(("vsock uds_path".into(), &vsock.uds_path, 11));
    }
    for (what, path, extra) in sockets {
        let len = path.as_os_str().len() + extra;
        if len > MAX_SOCKET_PATH {
            return Err(Error::InvalidConfig(format!(
                "{what} {} is too long for a Unix socket ({len} bytes, at most \
                 {MAX_SOCKET_PATH}); use a shorter path",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Waits until the backend listens on `socket` (it binds, then listens), or fails with its
/// stderr tail if it ends first.
pub(crate) fn wait_listening(backend: &Process, socket: &Path) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = backend.try_wait() {
            return Err(Error::StartFailed {
                program: "vhost-device-vsock",
                detail: format!(
                    "{status}; its stderr ends with:\n{}",
                    backend.log_tail(TAIL_LINES)
                ),
            });
        }
        if is_listening(socket) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::StartFailed {
                program: "vhost-device-vsock",
                detail: format!(
                    "it did not listen on {} within 10 s; its stderr ends with:\n{}",
                    socket.display(),
                    backend.log_tail(TAIL_LINES)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether a listening Unix socket is bound at `path` (from /proc/net/unix, without
/// connecting to it: the backend would take a probe for its one frontend).
fn is_listening(path: &Path) -> bool {
    let is_socket = std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if !is_socket {
        return false;
    }
    let Ok(table) = std::fs::read("/proc/net/unix") else {
        return true; // no /proc: the socket file is the best sign there is
    };
    let want = path.as_os_str().as_encoded_bytes();
    String::from_utf8_lossy(&table).lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path; Flags 00010000 = __SO_ACCEPTCON.
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8 && fields[3] == "00010000" && fields[7..].join(" ").as_bytes() == want
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_socket_is_seen() {
        let dir = std::env::temp_dir().join(format!("hcs-qemu-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s");
        assert!(!is_listening(&path));
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(is_listening(&path));
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
