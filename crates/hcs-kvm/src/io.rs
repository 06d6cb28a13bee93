//! The port I/O and MMIO bus: the few ports a guest uses to end itself; everything else reads
//! as all ones (no device) and ignores writes.
//!
//! | port | access | meaning |
//! |---|---|---|
//! | `0x604` | 16-bit write with SLP_EN (bit 13) set and SLP_TYP 0, e.g. `0x2000` | power off (QEMU's PIIX4 PM1a control) |
//! | `0x64` | write `0xFE` | reset (i8042 pulse reset line) |
//! | `0xCF9` | write with RST_CPU (bit 2), e.g. `0x06`, `0x0E` | reset (PIIX reset control) |

use crate::vm::VmExitReason;

/// The ACPI PM1a control port (QEMU's PIIX4 PM layout).
pub const SHUTDOWN_PORT: u16 = 0x604;
/// The i8042 keyboard controller's command port.
pub const I8042_COMMAND_PORT: u16 = 0x64;
/// The PIIX reset control register.
pub const RESET_CONTROL_PORT: u16 = 0xcf9;

/// PM1 control: SLP_EN.
const PM1_SLP_EN: u16 = 1 << 13;
/// PM1 control: SLP_TYP field.
const PM1_SLP_TYP_MASK: u16 = 0x7 << 10;
/// i8042 command: pulse the reset line.
const I8042_CMD_RESET: u8 = 0xfe;
/// Reset control: RST_CPU.
const RCR_RST_CPU: u8 = 1 << 2;

/// A guest `out` to `port`; returns how the guest ends itself, if this write does that.
pub(crate) fn port_write(port: u16, data: &[u8]) -> Option<VmExitReason> {
    match (port, data) {
        (SHUTDOWN_PORT, [lo, hi, ..]) => {
            let value = u16::from_le_bytes([*lo, *hi]);
            if value & PM1_SLP_EN != 0 && value & PM1_SLP_TYP_MASK == 0 {
                return Some(VmExitReason::PowerOff);
            }
        }
        (I8042_COMMAND_PORT, [I8042_CMD_RESET]) => return Some(VmExitReason::Reset),
        (RESET_CONTROL_PORT, [value]) if value & RCR_RST_CPU != 0 => {
            return Some(VmExitReason::Reset)
        }
        _ => {}
    }
    tracing::trace!(port, ?data, "ignored port write");
    None
}

/// A guest `in` from `port`: no device answers, so the bus floats high.
pub(crate) fn port_read(port: u16, data: &mut [u8]) {
    tracing::trace!(port, len = data.len(), "port read of an absent device");
    data.fill(0xff);
}

/// A guest read from an MMIO address with no memory or device: all ones.
pub(crate) fn mmio_read(address: u64, data: &mut [u8]) {
    tracing::trace!(address, len = data.len(), "MMIO read of an absent device");
    data.fill(0xff);
}

/// A guest write to an MMIO address with no memory or device: ignored.
pub(crate) fn mmio_write(address: u64, data: &[u8]) {
    tracing::trace!(address, ?data, "ignored MMIO write");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_port_powers_off() {
        assert_eq!(
            port_write(SHUTDOWN_PORT, &0x2000u16.to_le_bytes()),
            Some(VmExitReason::PowerOff)
        );
        // Sleep states (SLP_TYP != 0) and writes without SLP_EN are not a power-off.
        assert_eq!(port_write(SHUTDOWN_PORT, &0x2400u16.to_le_bytes()), None);
        assert_eq!(port_write(SHUTDOWN_PORT, &0x0000u16.to_le_bytes()), None);
        assert_eq!(port_write(SHUTDOWN_PORT, &[0x20]), None);
    }

    #[test]
    fn reset_ports_reset() {
        assert_eq!(port_write(0x64, &[0xfe]), Some(VmExitReason::Reset));
        assert_eq!(port_write(0x64, &[0xd1]), None);
        assert_eq!(port_write(0xcf9, &[0x06]), Some(VmExitReason::Reset));
        assert_eq!(port_write(0xcf9, &[0x0e]), Some(VmExitReason::Reset));
        assert_eq!(port_write(0xcf9, &[0x02]), None);
    }

    #[test]
    fn absent_devices_read_all_ones() {
        let mut data = [0u8; 4];
        port_read(0x3f8, &mut data);
        assert_eq!(data, [0xff; 4]);
        let mut data = [0u8; 2];
        mmio_read(0xfee0_0000, &mut data);
        assert_eq!(data, [0xff; 2]);
        assert_eq!(port_write(0x80, &[0x12]), None);
    }
}
