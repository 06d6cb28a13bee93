//! The ACPI power button, as acpid or systemd-logind would watch it: the `button` module
//! makes it an input device ("Power Button"), `evdev` gives it a `/dev/input/eventN`; a
//! press (`EV_KEY`, `KEY_POWER`, value 1) calls back, and the agent powers off gracefully.
//! This is how a host without a guest connection shuts a guest down (QMP
//! `system_powerdown`).
//!
//! The devices can appear after the watcher starts (the modules load at boot, devtmpfs
//! makes the nodes), so `/dev/input` is scanned again every half second at first and every
//! 10 s after that; a device is watched if its `capabilities/key` in sysfs has `KEY_POWER`
//! (the ACPI "Power Button", and, as systemd-logind does, a keyboard's power key).

use crate::log::log;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// `EV_KEY`, the event type of keys and buttons.
pub const EV_KEY: u16 = 1;
/// `KEY_POWER`, the code the ACPI button driver reports.
pub const KEY_POWER: u16 = 116;
/// The size of one `struct input_event` (24 bytes on x86_64: a 16-byte timeval, then type
/// u16, code u16, value i32).
pub const EVENT_SIZE: usize = std::mem::size_of::<libc::input_event>();
const TIME_SIZE: usize = std::mem::size_of::<libc::timeval>();

/// Where the device nodes are.
const DEV_INPUT: &str = "/dev/input";
/// Where their capabilities are (`<dir>/eventN/device/capabilities/key`, `.../name`).
const SYS_INPUT: &str = "/sys/class/input";
/// Rescans every half second for this long after the start, then every [`SLOW_RESCAN`].
const FAST_PERIOD: Duration = Duration::from_secs(30);
const FAST_RESCAN: Duration = Duration::from_millis(500);
const SLOW_RESCAN: Duration = Duration::from_secs(10);

/// One `struct input_event`, without its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub kind: u16,
    pub code: u16,
    pub value: i32,
}

impl Event {
    /// A press (not a release, 0, nor an autorepeat, 2) of the power button.
    pub fn is_power_press(&self) -> bool {
        self.kind == EV_KEY && self.code == KEY_POWER && self.value == 1
    }
}

/// The events in what a read of an event device returned (whole events only; a partial
/// one at the end is ignored, which evdev never returns).
pub fn parse_events(bytes: &[u8]) -> impl Iterator<Item = Event> + '_ {
    bytes.chunks_exact(EVENT_SIZE).map(|e| Event {
        kind: u16::from_ne_bytes([e[TIME_SIZE], e[TIME_SIZE + 1]]),
        code: u16::from_ne_bytes([e[TIME_SIZE + 2], e[TIME_SIZE + 3]]),
        value: i32::from_ne_bytes([
            e[TIME_SIZE + 4],
            e[TIME_SIZE + 5],
            e[TIME_SIZE + 6],
            e[TIME_SIZE + 7],
        ]),
    })
}

/// Whether a sysfs capability bitmap (`capabilities/key`: hex words of the kernel's
/// `unsigned long`, most significant first, separated by spaces, e.g. `10000000000000 0`
/// for KEY_POWER alone) has bit `bit`.
pub fn has_bit(bitmap: &str, bit: u16) -> bool {
    // The agent is built for the kernel's architecture: its usize is the kernel's long.
    let word_bits = usize::BITS as usize;
    let (index, shift) = (bit as usize / word_bits, bit as usize % word_bits);
    bitmap
        .split_whitespace()
        .rev()
        .nth(index)
        .and_then(|w| usize::from_str_radix(w, 16).ok())
        .is_some_and(|w| (w >> shift) & 1 == 1)
}

/// Starts the watcher thread; `on_press` is called for every press of a power button.
pub fn watch(on_press: impl Fn() + Send + 'static) {
    let started = std::thread::Builder::new()
        .name("power-button".into())
        .stack_size(128 * 1024)
        .spawn(move || run(Path::new(DEV_INPUT), Path::new(SYS_INPUT), &on_press));
    if let Err(e) = started {
        log!("power button: cannot start its thread: {e}");
    }
}

/// An open power button.
struct Button {
    /// `eventN`.
    name: String,
    /// `/dev/input/eventN (<device name>)`, for the log.
    label: String,
    file: File,
}

fn run(dev: &Path, sys: &Path, on_press: &dyn Fn()) {
    let start = Instant::now();
    let mut buttons: Vec<Button> = Vec::new();
    // Devices looked at (open or not a power button): each is checked once.
    let mut seen: HashSet<String> = HashSet::new();
    let mut next_scan = start;
    let mut said_none = false;
    let mut buf = vec![0u8; EVENT_SIZE * 64];
    loop {
        let now = Instant::now();
        if now >= next_scan {
            scan(dev, sys, &mut seen, &mut buttons);
            let fast = now.duration_since(start) < FAST_PERIOD;
            if buttons.is_empty() && !fast && !said_none {
                log!("power button: none found yet; looking again every 10 s");
                said_none = true;
            }
            next_scan = now + if fast { FAST_RESCAN } else { SLOW_RESCAN };
        }
        let wait = next_scan.saturating_duration_since(Instant::now());
        let timeout = PollTimeout::from(u16::try_from(wait.as_millis()).unwrap_or(u16::MAX));
        let mut fds: Vec<PollFd<'_>> = buttons
            .iter()
            .map(|b| PollFd::new(b.file.as_fd(), PollFlags::POLLIN))
            .collect();
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log!("power button: poll: {e}");
                std::thread::sleep(FAST_RESCAN);
                continue;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut gone = Vec::new();
        for (i, button) in buttons.iter_mut().enumerate() {
            if !ready[i] {
                continue;
            }
            match button.file.read(&mut buf) {
                Ok(n) if n > 0 => {
                    for event in parse_events(&buf[..n]) {
                        if event.is_power_press() {
                            log!("power button pressed: {}", button.label);
                            on_press();
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // ENODEV (unplugged) or end of file: forget it; a new one is found by a scan.
                result => {
                    let why = result.err().map_or("end of file".into(), |e| e.to_string());
                    log!("power button: {} is gone ({why})", button.label);
                    gone.push(i);
                }
            }
        }
        for i in gone.into_iter().rev() {
            let button = buttons.remove(i);
            seen.remove(&button.name);
        }
    }
}

/// Opens the power buttons among the event devices not seen yet.
fn scan(dev: &Path, sys: &Path, seen: &mut HashSet<String>, buttons: &mut Vec<Button>) {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return; // no evdev yet
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.starts_with("event") || seen.contains(&name) {
            continue;
        }
        let device = sys.join(&name).join("device");
        let Ok(keys) = std::fs::read_to_string(device.join("capabilities/key")) else {
            continue; // sysfs not there yet: look again next time
        };
        seen.insert(name.clone());
        if !has_bit(&keys, KEY_POWER) {
            continue;
        }
        let label = std::fs::read_to_string(device.join("name")).unwrap_or_default();
        let label = format!("{} ({})", dev.join(&name).display(), label.trim());
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(entry.path());
        match opened {
            Ok(file) => {
                log!("power button: watching {label}");
                buttons.push(Button { name, label, file });
            }
            Err(e) => {
                log!("power button: {label}: {e}");
                seen.remove(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut bytes = vec![0xeeu8; TIME_SIZE]; // the time is not looked at
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.extend_from_slice(&value.to_ne_bytes());
        bytes
    }

    #[test]
    fn an_input_event_is_24_bytes_on_x86_64() {
        #[cfg(target_arch = "x86_64")]
        assert_eq!(EVENT_SIZE, 24);
        assert_eq!(event(0, 0, 0).len(), EVENT_SIZE);
    }

    #[test]
    fn a_press_is_found_among_the_events_of_one_read() {
        // What the ACPI button driver reports for one press: key down, sync, key up, sync.
        let mut bytes = Vec::new();
        for (kind, code, value) in [(1, 116, 1), (0, 0, 0), (1, 116, 0), (0, 0, 0)] {
            bytes.extend(event(kind, code, value));
        }
        let events: Vec<Event> = parse_events(&bytes).collect();
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[0],
            Event {
                kind: EV_KEY,
                code: KEY_POWER,
                value: 1
            }
        );
        let presses: Vec<bool> = events.iter().map(Event::is_power_press).collect();
        assert_eq!(presses, [true, false, false, false]);
        // A partial event at the end is not an event.
        bytes.extend(&event(1, 116, 1)[..EVENT_SIZE - 1]);
        assert_eq!(parse_events(&bytes).count(), 4);
    }

    #[test]
    fn releases_repeats_and_other_keys_are_not_presses() {
        for (kind, code, value) in [
            (1, 116, 0),  // release
            (1, 116, 2),  // autorepeat
            (1, 142, 1),  // KEY_SLEEP
            (4, 116, 1),  // EV_MSC
            (0, 116, 1),  // EV_SYN
            (1, 117, -1), // nonsense
        ] {
            let bytes = event(kind, code, value);
            let e = parse_events(&bytes).next().expect("one event");
            assert!(!e.is_power_press(), "{e:?}");
        }
        let bytes = event(1, 116, 1);
        assert!(parse_events(&bytes)
            .next()
            .expect("one event")
            .is_power_press());
    }

    #[test]
    fn key_capabilities_are_read_as_sysfs_prints_them() {
        // The ACPI power button (LNXPWRBN) of a QEMU q35 guest: KEY_POWER alone.
        assert!(has_bit("10000000000000 0\n", KEY_POWER));
        // The sleep button: KEY_SLEEP (142) alone, in the third word.
        assert!(!has_bit("4000 0 0", KEY_POWER));
        assert!(has_bit("4000 0 0", 142));
        assert!(!has_bit("4000 0", 142));
        // An AT keyboard: many keys, KEY_POWER among them.
        let keyboard = "402000000 3803078f800d001 feffffdfffefffff fffffffffffffffe";
        assert!(has_bit(keyboard, KEY_POWER));
        assert!(has_bit(keyboard, 1)); // KEY_ESC
        assert!(!has_bit(keyboard, 0));
        // No keys at all, a short bitmap, junk.
        assert!(!has_bit("0", KEY_POWER));
        assert!(!has_bit("", KEY_POWER));
        assert!(!has_bit("zz 0", KEY_POWER));
    }
}
