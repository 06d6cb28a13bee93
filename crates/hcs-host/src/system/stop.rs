//! Stopping a system: a terminate, the last handle closing, or the guest ending itself.
//!
//! The VM is stopped on a thread of its own at once, never behind the request queue
//! (HCS-API rule 54). Then the exit is recorded, the id freed, every handle told
//! (`SystemExited`, after the guest connection's end), and only then is the stop's own
//! request answered, so that a wait for the exit right after it returns at once (rule 53).

use super::queue::JobKind;
use super::System;
use crate::lifecycle::{Life, StopCause};
use crate::peer::Requester;
use crate::properties;
use crate::refusals;
use hcs_protocol::{HostMessage, Notification};
use hcs_schema::HResult;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl System {
    /// Begins a stop. The VM is stopped on a thread of its own so that neither the caller
    /// nor the worker waits for it; `requester` is answered once the exit is recorded and
    /// told to every handle.
    pub fn request_stop(self: &Arc<Self>, cause: StopCause, requester: Option<Requester>) {
        let vm = {
            let mut state = self.state.lock();
            match state.life {
                Life::Creating => {
                    // Stop after the create, in order.
                    let kind = JobKind::Stop(cause);
                    self.enqueue(&mut state, requester, kind);
                    return;
                }
                Life::Stopping | Life::Stopped | Life::Failed => {
                    drop(state);
                    if let Some(requester) = requester {
                        requester
                            .reply_outcome(Err(refusals::already_stopped(&self.id)), "Terminate");
                    }
                    return;
                }
                Life::Created | Life::Running | Life::Paused => {}
            }
            state.life = Life::Stopping;
            state.cut_before = state.next_seq;
            state.stop_cause = Some(cause.clone());
            state.vm.clone()
        };
        let system = Arc::clone(self);
        let stopper: Box<dyn FnOnce() + Send> = Box::new(move || {
            if let Some(vm) = vm {
                vm.stop();
            }
            system.finish_stop(cause, requester);
        });
        // Keep the task reachable so that it can run inline if no thread can be had.
        let task = Arc::new(Mutex::new(Some(stopper)));
        let for_thread = Arc::clone(&task);
        let spawned = std::thread::Builder::new()
            .name("hcs-stop".into())
            .spawn(move || {
                if let Some(stop) = for_thread.lock().take() {
                    stop();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no thread for the stop; stopping inline");
            if let Some(stop) = task.lock().take() {
                stop();
            }
        }
    }

    /// Records the exit, frees the id, tells every handle, then answers the requester.
    fn finish_stop(self: &Arc<Self>, cause: StopCause, requester: Option<Requester>) {
        let (status, exit_type) = properties::exit_status(&cause, self.settings.stop_on_reset);
        let (targets, had_vm, guests) = {
            let mut state = self.state.lock();
            state.life = Life::Stopped;
            state.exit_type = Some(exit_type);
            state.control = None;
            let had_vm = state.vm.take().is_some();
            let mut guests = std::mem::take(&mut state.stale_guests);
            guests.extend(state.guest.take());
            (state.handles.clone(), had_vm, guests)
        };
        for guest in guests {
            guest.close();
        }
        // The connection's end before the exit, whichever thread sees it first; nothing
        // of it after the exit.
        self.tell_guest_closed(&mut self.guest_close.lock());
        let lost = cause.pending_result(None, self.settings.stop_on_reset);
        self.processes.lose_all(if lost.succeeded() {
            HResult::HCS_E_CONNECTION_CLOSED
        } else {
            lost
        });
        if let Some(dir) = &self.plan.runtime_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some(registrar) = self.registrar.upgrade() {
            registrar.forget(self, had_vm);
        }
        tracing::info!(id = %self.id, ?cause, exit_type, "compute system exited");
        for (peer, _, handle) in targets {
            if let Some(peer) = peer.upgrade() {
                peer.deliver(HostMessage::Notification(Notification::SystemExited {
                    handle,
                    status: status.clone(),
                }));
            }
        }
        {
            let mut state = self.state.lock();
            state.exit_told = true;
            self.exit_told.notify_all();
        }
        if let Some(requester) = requester {
            requester.reply(HResult::S_OK, None);
        }
        self.quit();
    }

    /// Waits until the exit is recorded and told, or the guest has reset itself since
    /// boot `boot`, at most `timeout`. Whether either happened.
    pub(super) fn wait_exit_or_reset(&self, boot: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while !state.exit_told && state.boot == boot {
            if self.exit_told.wait_until(&mut state, deadline).timed_out() {
                break;
            }
        }
        state.exit_told || state.boot != boot
    }

    /// Waits until the exit is recorded and told to every handle, at most `timeout`.
    pub(super) fn wait_exit_told(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while !state.exit_told {
            if self.exit_told.wait_until(&mut state, deadline).timed_out() {
                return state.exit_told;
            }
        }
        true
    }
}
