//! Test harness: the guest kernel and modules, a tiny initramfs built per test (busybox and
//! an /init script), serial-port readers and an exit recorder.

#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use hcs_qemu::{Accel, Exit, ExitHandler, SerialPort, VmConfig};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A guest file from `$var`, else `<repo>/.cache/guest/<name>`; panics naming both if absent.
fn guest_path(var: &str, name: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/guest").join(name));
    assert!(
        path.exists(),
        "guest {name} not found at {} (set {var} or run scripts/setup)",
        path.display()
    );
    path
}

/// Debian's cloud kernel: `$HCS_GUEST_KERNEL`, else `<repo>/.cache/guest/vmlinuz`.
pub fn kernel() -> PathBuf {
    guest_path("HCS_GUEST_KERNEL", "vmlinuz")
}

/// The project's guest image (busybox, modules, the `hcs-guest` agent as /init):
/// `$HCS_GUEST_INITRD`, else `<repo>/.cache/guest/initramfs.img`.
pub fn project_initrd() -> PathBuf {
    guest_path("HCS_GUEST_INITRD", "initramfs.img")
}

/// The kernel's modules directory (`lib/modules/<version>`): `$HCS_GUEST_MODULES`, else
/// `<repo>/.cache/guest/modules`.
pub fn modules_dir() -> PathBuf {
    guest_path("HCS_GUEST_MODULES", "modules")
}

/// Finds `<name>.ko` under the modules directory (any depth).
pub fn module(name: &str) -> PathBuf {
    fn find(dir: &Path, file: &str) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if let Some(found) = find(&path, file) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|n| n == file) {
                return Some(path);
            }
        }
        None
    }
    let dir = modules_dir();
    find(&dir, &format!("{name}.ko")).unwrap_or_else(|| {
        panic!(
            "guest module {name}.ko not found under {} (run scripts/setup; scripts/build-initramfs \
             keeps only the modules in its WANTED list, which must name {name}; or set \
             HCS_GUEST_MODULES to a full lib/modules/<version> tree)",
            dir.display()
        )
    })
}

/// Modules for virtio: PCI (q35, the machine hcs-qemu picks) and MMIO (microvm, with
/// `HCS_QEMU_MACHINE=microvm`); the one without devices loads harmlessly.
pub const VIRTIO: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "virtio_mmio",
];
/// Modules for a virtio-blk disk (after [`VIRTIO`]).
pub const BLK: &[&str] = &["virtio_blk"];
/// Modules for virtio-vsock (after [`VIRTIO`]).
pub const VSOCK: &[&str] = &[
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
];
/// Modules for pvpanic reports.
pub const PVPANIC: &[&str] = &["pvpanic", "pvpanic-mmio"];
/// Modules for reading the ACPI power button.
pub const BUTTON: &[&str] = &["button", "evdev"];

/// A per-test scratch directory under the target directory, emptied first.
pub fn scratch(name: &str) -> PathBuf {
    // Short: Unix socket paths inside must fit in 107 bytes.
    let dir = std::env::temp_dir().join(format!("hq-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes an initramfs (uncompressed newc cpio) with busybox, `modules` (loaded in order
/// by /init) and `/init` running `body` after mounting /proc, /sys and /dev.
pub fn initramfs(dir: &Path, modules: &[&str], body: &str) -> PathBuf {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "/bin/busybox not found (install busybox-static: run scripts/setup)"
    );
    let mut init = String::from(
        "#!/bin/busybox sh\n\
         /bin/busybox mount -t proc proc /proc\n\
         /bin/busybox mount -t sysfs sys /sys\n\
         /bin/busybox mount -t devtmpfs dev /dev\n",
    );
    for m in modules {
        init.push_str(&format!(
            "insmod /lib/modules/{m}.ko || echo \"HCS-TEST insmod {m} failed\" > /dev/ttyS0\n"
        ));
    }
    init.push_str(body);
    init.push('\n');
    let mut cpio = Cpio::default();
    for d in ["bin", "proc", "sys", "dev", "lib", "lib/modules", "tmp"] {
        cpio.dir(d);
    }
    cpio.file("bin/busybox", 0o755, &std::fs::read(busybox).unwrap());
    for applet in [
        "sh", "mount", "cat", "echo", "insmod", "ls", "poweroff", "reboot", "sleep", "dd",
        "blockdev", "grep", "head", "tr", "cut", "seq", "true", "false", "stat", "hexdump",
    ] {
        cpio.symlink(&format!("bin/{applet}"), "busybox");
    }
    for m in modules {
        cpio.file(
            &format!("lib/modules/{m}.ko"),
            0o644,
            &std::fs::read(module(m)).unwrap(),
        );
    }
    cpio.file("init", 0o755, init.as_bytes());
    let path = dir.join("initramfs.cpio");
    std::fs::write(&path, cpio.finish()).unwrap();
    path
}

/// A newc ("070701") cpio archive being written.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let name_len = name.len() + 1;
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name_len as u32,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while self.out.len() % 4 != 0 {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040755, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100000 | perm, data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120777, target.as_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

/// A slot to run a VM in: at most as many test VMs at once as the host has CPUs, so that
/// TCG boots on a small machine do not starve each other into timeouts.
pub struct VmSlot;

/// Waits for a [`VmSlot`]; the slot is freed when dropped.
pub fn vm_slot() -> VmSlot {
    let limit = std::thread::available_parallelism().map_or(2, |n| n.get());
    let (lock, cv) = &SLOTS;
    let mut used = lock.lock().unwrap();
    while *used >= limit {
        used = cv.wait(used).unwrap();
    }
    *used += 1;
    VmSlot
}

static SLOTS: (Mutex<usize>, std::sync::Condvar) = (Mutex::new(0), std::sync::Condvar::new());

impl Drop for VmSlot {
    fn drop(&mut self) {
        let (lock, cv) = &SLOTS;
        *lock.lock().unwrap() -= 1;
        cv.notify_one();
    }
}

/// A VM config for tests: TCG, 256 MiB, 1 vCPU, COM1 on `<dir>/com1` (the console).
pub fn config(dir: &Path, initrd: PathBuf) -> VmConfig {
    VmConfig {
        memory_mb: 256,
        vcpus: 1,
        kernel: kernel(),
        initrd: Some(initrd),
        cmdline: "console=ttyS0 quiet panic=-1".into(),
        serial_ports: vec![SerialPort {
            index: 0,
            socket: Some(dir.join("com1")),
        }],
        disks: Vec::new(),
        vsock: None,
        accel: Accel::Tcg,
        on_reset: hcs_qemu::OnReset::Exit,
        runtime_dir: dir.join("run"),
    }
}

/// Records the exits a VM reports, and how many.
#[derive(Clone)]
pub struct Exits {
    rx: Arc<Mutex<mpsc::Receiver<Exit>>>,
    count: Arc<AtomicUsize>,
}

impl Exits {
    /// A recorder and the handler that feeds it.
    pub fn new() -> (Exits, ExitHandler) {
        let (tx, rx) = mpsc::channel();
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let handler: ExitHandler = Box::new(move |exit| {
            c.fetch_add(1, Ordering::SeqCst);
            let _ = tx.send(exit);
        });
        (
            Exits {
                rx: Arc::new(Mutex::new(rx)),
                count,
            },
            handler,
        )
    }

    /// The first exit, within `timeout`; panics with `context` if none comes.
    pub fn wait(&self, timeout: Duration, context: &str) -> Exit {
        self.rx
            .lock()
            .unwrap()
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("no VM exit within {timeout:?}; {context}"))
    }

    /// How many times the handler has been called.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// What a serial port said, read by a thread.
#[derive(Clone)]
pub struct Serial {
    text: Arc<Mutex<String>>,
    stream: Arc<Mutex<Option<UnixStream>>>,
}

impl Serial {
    /// Connects to a serial socket (retrying briefly) and reads it in a thread.
    pub fn connect(path: &Path) -> Serial {
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("cannot connect to serial socket {}: {e}", path.display()),
            }
        };
        let text = Arc::new(Mutex::new(String::new()));
        let t = text.clone();
        let reader = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => t.lock().unwrap().push_str(&String::from_utf8_lossy(&line)),
                }
            }
        });
        Serial {
            text,
            stream: Arc::new(Mutex::new(Some(stream))),
        }
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until the output contains `marker`; panics with the output so far if not.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.text().contains(marker) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!(
                    "serial output has no {marker:?} after {timeout:?}; it was:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends bytes to the guest.
    pub fn write(&self, bytes: &[u8]) {
        if let Some(s) = self.stream.lock().unwrap().as_mut() {
            s.write_all(bytes).unwrap();
        }
    }

    /// Disconnects (the reader thread ends).
    pub fn disconnect(&self) {
        if let Some(s) = self.stream.lock().unwrap().take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Whether a process exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The marker tests print: a line starting with this.
pub const MARK: &str = "HCS-TEST";
