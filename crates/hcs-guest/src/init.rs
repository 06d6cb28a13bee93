//! PID 1 duties: the file systems, the console, hostname, loopback, panic settings and
//! kernel modules at boot; sync, unmount and power-off at the end. Every step logs its
//! failure and goes on: PID 1 must never stop.

use crate::log::log;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The module list the image build writes: one path per line, relative to `/lib/modules`,
/// in load order.
pub const MODULE_LIST: &str = "/lib/modules/hcs-modules.list";

/// What is mounted at boot, in order (unmounted in reverse at power-off).
const MOUNTS: &[(&str, &str, &str, u64, &str)] = &[
    // (source, target, type, flags, data)
    ("proc", "/proc", "proc", NOSUID | NODEV | NOEXEC, ""),
    ("sysfs", "/sys", "sysfs", NOSUID | NODEV | NOEXEC, ""),
    ("devtmpfs", "/dev", "devtmpfs", NOSUID, "mode=0755"),
    (
        "devpts",
        "/dev/pts",
        "devpts",
        NOSUID | NOEXEC,
        "mode=0620,ptmxmode=0666",
    ),
    ("shm", "/dev/shm", "tmpfs", NOSUID | NODEV, "mode=1777"),
    ("tmpfs", "/tmp", "tmpfs", NOSUID | NODEV, "mode=1777"),
    ("tmpfs", "/run", "tmpfs", NOSUID | NODEV, "mode=0755"),
];
const NOSUID: u64 = libc::MS_NOSUID;
const NODEV: u64 = libc::MS_NODEV;
const NOEXEC: u64 = libc::MS_NOEXEC;

/// Prepares the guest; called once, as PID 1, before anything else runs.
pub fn setup() {
    for (source, target, fstype, flags, data) in MOUNTS {
        if let Err(e) = std::fs::create_dir_all(target) {
            log!("mkdir {target}: {e}");
        }
        let data = (!data.is_empty()).then_some(*data);
        match mount(
            Some(*source),
            *target,
            Some(*fstype),
            MsFlags::from_bits_truncate(*flags),
            data,
        ) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => log!("mount {fstype} on {target}: {e}"),
        }
    }
    ensure_console();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let hostname = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("hcs.hostname="))
        .unwrap_or("hcs-guest");
    if let Err(e) = nix::unistd::sethostname(hostname) {
        log!("sethostname: {e}");
    }
    loopback_up();
    for (knob, value) in [
        // The host's crash NMI must panic the guest whatever the NMI reason port says
        // (microvm has no port 0x61: the reason reads as SERR + IOCHK, not "unknown").
        ("/proc/sys/kernel/unknown_nmi_panic", "1"),
        ("/proc/sys/kernel/panic_on_unrecovered_nmi", "1"),
        ("/proc/sys/kernel/panic_on_io_nmi", "1"),
        ("/proc/sys/kernel/panic_on_oops", "1"),
    ] {
        if let Err(e) = std::fs::write(knob, value) {
            log!("{knob}: {e}");
        }
    }
    load_modules(Path::new(MODULE_LIST));
}

/// Makes fds 0, 1 and 2 the console when the kernel could not (no /dev/console in the
/// image): logs must go somewhere.
fn ensure_console() {
    // SAFETY: F_GETFD on a descriptor number has no memory effects.
    let open = unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0;
    if open {
        return;
    }
    let console = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        Ok(f) => f,
        Err(_) => return,
    };
    for fd in 0..3 {
        // SAFETY: dup2 onto 0..3, which are closed (the check above) or ours; `console`
        // stays open for the call.
        unsafe { libc::dup2(console.as_raw_fd(), fd) };
    }
}

/// `ip link set lo up`, with the SIOCSIFFLAGS ioctl.
fn loopback_up() {
    // SAFETY: socket() takes plain integers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        log!("lo: socket: {}", nix::errno::Errno::last());
        return;
    }
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the ioctls read and write one ifreq, `req`, which lives across both calls;
    // `fd` is the socket made above, closed right after.
    let ok = unsafe {
        libc::ioctl(fd, libc::SIOCGIFFLAGS as libc::Ioctl, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS as libc::Ioctl, &req) == 0
        }
    };
    if !ok {
        log!("lo: {}", nix::errno::Errno::last());
    }
    // SAFETY: `fd` is ours and not used after this.
    unsafe { libc::close(fd) };
}

/// Loads each module of the list, in order, with `finit_module`. A module already present
/// (built in, or loaded) is skipped; a failure is logged and the next one tried.
fn load_modules(list: &Path) {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) => {
            log!("{}: {e}", list.display());
            return;
        }
    };
    let base = list.parent().unwrap_or(Path::new("/lib/modules"));
    let params = CString::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let path = base.join(line);
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .replace('-', "_");
        if Path::new("/sys/module").join(&name).exists() {
            continue;
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                log!("module {}: {e}", path.display());
                continue;
            }
        };
        match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => log!("module {name}: {e}"),
        }
    }
}

/// Syncs and unmounts what [`setup`] mounted (lazily: a busy one goes when freed).
pub fn unmount_all() {
    nix::unistd::sync();
    for (_, target, _, _, _) in MOUNTS.iter().rev() {
        if *target == "/proc" || *target == "/sys" || *target == "/dev" {
            // Still needed for the power-off itself and harmless to keep.
            continue;
        }
        let _ = umount2(*target, MntFlags::MNT_DETACH);
    }
    nix::unistd::sync();
}

/// Powers the VM off (or resets it). Never returns; if the kernel refuses, parks forever.
pub fn power_off(reboot: bool) -> ! {
    nix::unistd::sync();
    let mode = if reboot {
        nix::sys::reboot::RebootMode::RB_AUTOBOOT
    } else {
        nix::sys::reboot::RebootMode::RB_POWER_OFF
    };
    let Err(e) = nix::sys::reboot::reboot(mode);
    log!("reboot: {e}");
    loop {
        std::thread::park();
    }
}
