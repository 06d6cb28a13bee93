//! The guest session: the agent's connection, made at Start and, for a guest that reboots
//! in place, lost at each reset and made again when the new boot's agent connects.
//!
//! `GuestConnectionClosed` is told once per connection, to every handle bound then, and
//! always before the exit of a stop that ends it. Processes are keyed by the guest boot as
//! well as the pid, since a new boot reuses pids.

use super::System;
use crate::guest::{ControlListener, GuestConnection, GuestEvents};
use crate::lifecycle::{Life, StopCause};
use crate::processes::{Ending, ProcessKey};
use hcs_engine::EngineExit;
use hcs_protocol::{Failure, HostMessage, Notification};
use hcs_schema::HResult;
use std::sync::{Arc, Weak};
use std::time::Instant;

/// The end of the agent's connection as the handles are told of it
/// (`GuestConnectionClosed`, once per connection: a guest that reboots in place connects
/// again, and this starts afresh for its new connection).
#[derive(Default)]
pub(crate) struct GuestClose {
    /// Start made the agent's connection the system's.
    connected: bool,
    /// The connection's reader saw it end.
    ended: bool,
    /// Told, or the system has stopped: never (again).
    done: bool,
}

/// Routes what the agent's reader thread hears to the system.
struct SystemGuestEvents {
    system: Weak<System>,
    /// The guest boot this connection belongs to.
    boot: u64,
}

impl GuestEvents for SystemGuestEvents {
    fn process_exited(&self, pid: u32, exit_code: i32) {
        if let Some(system) = self.system.upgrade() {
            let key = ProcessKey {
                boot: self.boot,
                pid,
            };
            system.processes.ended(key, Ending::Exited(exit_code));
        }
    }

    fn connection_closed(&self) {
        if let Some(system) = self.system.upgrade() {
            tracing::debug!(id = %system.id, "guest connection closed");
            if !system.guest_connection_ended(self.boot) {
                return;
            }
            // A stopping system reports its processes lost with the stop's own code.
            if matches!(system.life(), Life::Running | Life::Paused) {
                // Processes cannot report their exits any more.
                system.processes.lose_all(HResult::HCS_E_CONNECTION_CLOSED);
            }
        }
    }
}

impl System {
    /// After the VM started: with `GuestConnection`, waits for the agent (HCS-API §3.3:
    /// Start completes once the guest connection is up). A guest that never connects
    /// fails the start and is stopped.
    pub(super) fn connect_guest(self: &Arc<Self>) -> Result<Option<String>, Failure> {
        let listener = self.state.lock().control.take();
        let Some(listener) = listener else {
            return Ok(None);
        };
        let boot = self.guest_boot();
        let events = Arc::new(SystemGuestEvents {
            system: Arc::downgrade(self),
            boot,
        });
        let deadline = Instant::now() + self.guest_connect_timeout;
        // A guest that reboots before its agent connects ends this wait too: the reset's
        // thread then takes the new boot's agent.
        let gone = || {
            let state = self.state.lock();
            !matches!(state.life, Life::Running | Life::Paused) || state.boot != boot
        };
        match listener.accept(self.guest_connect_timeout, &gone, events) {
            Ok(guest) => {
                self.keep_guest(guest, boot);
                Ok(None)
            }
            Err(_) if self.guest_boot() != boot && self.wait_guest(deadline) => Ok(None),
            Err(failure) => {
                let failure = if self.guest_boot() != boot && self.life() == Life::Running {
                    Failure::new(
                        HResult::HCS_E_CONNECTION_TIMEOUT,
                        "the guest rebooted during its start and its agent did not connect in \
                         time",
                    )
                } else {
                    failure
                };
                tracing::warn!(id = %self.id, error = %failure.message, "guest agent not connected");
                self.state.lock().stop_after_reply = Some(StopCause::Guest(EngineExit::Failed(
                    format!("the guest connection failed at start: {}", failure.message),
                )));
                Err(failure)
            }
        }
    }

    /// Makes `guest`, the agent's connection in boot `boot`, the system's, unless the
    /// system has stopped or the guest has rebooted since (then it is closed).
    fn keep_guest(&self, guest: Arc<GuestConnection>, boot: u64) {
        // Under `guest_close`, so that a stop that takes this connection also sees it as
        // the system's and tells its end before the exit.
        let mut close = self.guest_close.lock();
        let kept = {
            let mut state = self.state.lock();
            let running = matches!(state.life, Life::Running | Life::Paused);
            let kept = running && state.boot == boot;
            if kept {
                state.guest = Some(Arc::clone(&guest));
                self.exit_told.notify_all();
            }
            kept
        };
        if kept {
            close.connected = true;
            // An agent that left at once, before its connection was kept.
            if close.ended {
                self.tell_guest_closed(&mut close);
            }
            drop(close);
            // The new boot's device is up: earlier boots' connections may go now.
            self.close_stale_guests();
        } else {
            drop(close);
            guest.close();
        }
    }

    /// Waits until an agent connection is the system's, at most until `deadline`; false
    /// when none is by then or the system stops.
    fn wait_guest(&self, deadline: Instant) -> bool {
        let mut state = self.state.lock();
        while state.guest.is_none() && matches!(state.life, Life::Running | Life::Paused) {
            if self.exit_told.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.guest.is_some()
    }

    /// Closes the agent connections of earlier boots (see `State::stale_guests`).
    fn close_stale_guests(&self) {
        let stale = std::mem::take(&mut self.state.lock().stale_guests);
        for guest in stale {
            guest.close();
        }
    }

    /// The guest reset itself and is rebooting in place (`StopOnReset` false or absent; the
    /// engine reported it, on a thread of its own): the system stays as it is, but its
    /// guest connection has ended, as have the guest's processes. With `GuestConnection`,
    /// waits in the background (this thread) for the agent of the new boot, as Start
    /// does; a guest that does not connect within the guest-connect timeout leaves the
    /// system running without an agent.
    pub(super) fn guest_reset(self: &Arc<Self>) {
        let boot = {
            let mut close = self.guest_close.lock();
            let (guest, boot) = {
                let mut state = self.state.lock();
                if !matches!(state.life, Life::Running | Life::Paused) {
                    return;
                }
                state.boot += 1;
                self.exit_told.notify_all();
                let guest = state.guest.take();
                state.stale_guests.extend(guest.clone());
                (guest, state.boot)
            };
            // The old agent is gone with the old boot, but its connection through the
            // vsock backend does not end by itself and must not be closed yet (see
            // `stale_guests`): its requests fail now.
            if let Some(guest) = guest {
                guest.abandon();
            }
            self.tell_guest_closed(&mut close);
            *close = GuestClose::default();
            boot
        };
        tracing::info!(id = %self.id, boot, "the guest reset itself; it reboots in place");
        self.processes.lose_all(HResult::HCS_E_CONNECTION_CLOSED);
        if !self.settings.guest_connection {
            return;
        }
        let Some(uds) = self.plan.vsock_uds() else {
            return;
        };
        // One reboot is several resets in quick succession, each on a thread of its own:
        // only the current boot's may bind (a later bind replaces an earlier one's socket).
        let relisten = self.relisten.lock();
        if self.guest_boot() != boot {
            return;
        }
        let bound = ControlListener::bind(&uds);
        drop(relisten);
        let listener = match bound {
            Ok(listener) => listener,
            Err(failure) => {
                tracing::warn!(
                    id = %self.id,
                    error = %failure.message,
                    "cannot listen for the guest agent after the reboot"
                );
                return;
            }
        };
        let events = Arc::new(SystemGuestEvents {
            system: Arc::downgrade(self),
            boot,
        });
        // Another reset or a stop ends this wait.
        let gone = || {
            let state = self.state.lock();
            !matches!(state.life, Life::Running | Life::Paused) || state.boot != boot
        };
        match listener.accept(self.guest_connect_timeout, &gone, events) {
            Ok(guest) => {
                tracing::info!(
                    id = %self.id,
                    boot,
                    "guest agent connected again after the reboot"
                );
                self.keep_guest(guest, boot);
            }
            Err(_) if gone() => {}
            Err(failure) => {
                tracing::warn!(
                    id = %self.id,
                    error = %failure.message,
                    "the guest agent did not connect again after the guest rebooted; the \
                     system keeps running without a guest connection"
                );
                self.close_stale_guests();
            }
        }
    }

    pub(super) fn guest(&self) -> Option<Arc<GuestConnection>> {
        self.state.lock().guest.clone()
    }

    /// The agent's connection with the guest boot it belongs to.
    pub(super) fn guest_in_boot(&self) -> Option<(Arc<GuestConnection>, u64)> {
        let state = self.state.lock();
        state.guest.clone().map(|guest| (guest, state.boot))
    }

    /// The guest's current boot (how many times it has reset itself and rebooted).
    pub fn guest_boot(&self) -> u64 {
        self.state.lock().boot
    }
}

impl System {
    /// Tells every handle bound now that the agent's connection ended, if it was the
    /// system's and this was not told yet; called with `guest_close` held. Marks it done
    /// either way, so that nothing follows a stop.
    pub(super) fn tell_guest_closed(&self, close: &mut GuestClose) {
        if std::mem::replace(&mut close.done, true) || !close.connected {
            return;
        }
        let targets = self.state.lock().handles.clone();
        for (peer, _, handle) in targets {
            if let Some(peer) = peer.upgrade() {
                peer.deliver(HostMessage::Notification(
                    Notification::GuestConnectionClosed { handle },
                ));
            }
        }
    }

    /// The reader of the agent's connection of `boot` saw it end; false (and nothing
    /// done) when the guest has rebooted since: that end was told at the reset.
    fn guest_connection_ended(&self, boot: u64) -> bool {
        let mut close = self.guest_close.lock();
        if self.state.lock().boot != boot {
            return false;
        }
        close.ended = true;
        if close.connected {
            self.tell_guest_closed(&mut close);
        }
        true
    }
}
