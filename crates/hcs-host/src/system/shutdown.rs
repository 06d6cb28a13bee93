//! Graceful shutdown and reboot (HCS-API §7.8 `ShutdownOptions`): through the guest agent
//! when there is one, else the ACPI power button, pressed again until the guest powers off.

use super::System;
use hcs_guest_protocol as proto;
use hcs_protocol::Failure;
use hcs_schema::HResult;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a graceful shutdown may take before the operation gives up on it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a shutdown without a guest agent presses the power button again.
const BUTTON_REPEAT: Duration = Duration::from_secs(3);

impl System {
    /// A graceful shutdown (HCS-API §7.8 `ShutdownOptions`): through the agent when there
    /// is one, else the ACPI power button. Completes once the exit is recorded and told,
    /// or, for a reboot of a guest that reboots in place (no `StopOnReset`), once the
    /// guest has reset (the system stays Running; its agent connects again later).
    pub(super) fn shut_down(
        self: &Arc<Self>,
        options: Option<&str>,
    ) -> Result<Option<String>, Failure> {
        let linux = matches!(self.plan.firmware, hcs_engine::Firmware::LinuxDirect { .. });
        if !self.settings.guest_connection && !linux {
            return Err(Failure::new(
                HResult::HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION,
                format!(
                    "compute system '{}' has no guest to shut down: it has no \
                     GuestConnection and its firmware has no power button; use \
                     HcsTerminateComputeSystem to stop it",
                    self.id
                ),
            ));
        }
        let options = match options {
            Some(o) => hcs_schema::parse::<hcs_schema::ShutdownOptions>(o)?,
            None => hcs_schema::ShutdownOptions::default(),
        };
        let reboot = match options.r#type {
            Some(hcs_schema::ShutdownType::Hibernate) => {
                return Err(Failure::at(
                    HResult::ERROR_NOT_SUPPORTED,
                    "$.Type",
                    "hibernating a Linux guest is not supported",
                ))
            }
            Some(hcs_schema::ShutdownType::Reboot) => true,
            _ => false,
        };
        let in_place = reboot && self.plan.reboot_in_place && self.engine.reboots_in_place();
        let boot = self.guest_boot();
        let done = |timeout| {
            if in_place {
                self.wait_exit_or_reset(boot, timeout)
            } else {
                self.wait_exit_told(timeout)
            }
        };
        let grace_ms = if options.force.unwrap_or(false) {
            0
        } else {
            5000
        };
        let mut button = false;
        let asked = match self.guest() {
            Some(guest) => guest
                .request(proto::Request::Shutdown { reboot, grace_ms })
                .map(|_| ()),
            None if self.settings.guest_connection => Err(Failure::new(
                HResult::HCS_E_CONNECTION_CLOSED,
                "the guest agent is not connected: terminate the system instead",
            )),
            None => {
                button = true;
                self.press_power_button()
            }
        };
        // The connection may close under the agent's answer as the guest powers off.
        if let Err(failure) = asked {
            let powering_off = failure.hresult == HResult::HCS_E_CONNECTION_CLOSED
                && done(Duration::from_secs(10));
            if !powering_off {
                return Err(failure);
            }
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let mut exited = false;
        while !exited && Instant::now() < deadline {
            exited = done(if button {
                BUTTON_REPEAT
            } else {
                SHUTDOWN_TIMEOUT
            });
            // A press that comes before the guest watches the button is lost, as on
            // hardware (a start without a guest connection does not wait for the boot):
            // press again until the guest powers off.
            if !exited && button {
                let _ = self.press_power_button();
            }
        }
        if exited {
            // `run` answers through the cut path: a graceful exit gives S_OK (rule 53); a
            // reboot in place is answered S_OK at once.
            Ok(None)
        } else if in_place {
            Err(Failure::new(
                HResult::HCS_E_CONNECTION_TIMEOUT,
                format!(
                    "the guest did not reboot within {} s; terminate it instead",
                    SHUTDOWN_TIMEOUT.as_secs()
                ),
            ))
        } else {
            Err(Failure::new(
                HResult::HCS_E_CONNECTION_TIMEOUT,
                format!(
                    "the guest did not power off within {} s; terminate it instead",
                    SHUTDOWN_TIMEOUT.as_secs()
                ),
            ))
        }
    }

    /// Presses the VM's ACPI power button.
    fn press_power_button(&self) -> Result<(), Failure> {
        let vm = self.vm().ok_or_else(|| self.not_found())?;
        vm.power_button()
            .map_err(|e| self.engine_failure("shut down", e))
    }
}
