//! The worker side of the router: relaying each worker's replies and notifications to the
//! client session they belong to (descriptors untouched), and what every client is told
//! when a worker ends, cleanly or not.

use super::*;
use crate::link::WorkerLink;

impl Router {
    pub(super) fn serve_worker(self: Arc<Self>, link: Arc<WorkerLink>, mut reader: FrameReader) {
        loop {
            match reader.recv::<FromWorker>() {
                Ok(Some((FromWorker::Message { session, message }, fds))) => {
                    self.on_worker_message(&link, session, message, fds)
                }
                Ok(Some((FromWorker::SystemGone, _))) => {
                    link.system_alive.store(false, Ordering::SeqCst);
                    self.unregister(&link);
                }
                Ok(Some((FromWorker::Idle, _))) => {
                    link.idle.store(true, Ordering::SeqCst);
                }
                Ok(Some((FromWorker::Hello { .. }, _))) => {}
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(?link, %error, "worker connection failed");
                    break;
                }
            }
        }
        self.worker_ended(&link);
    }

    pub(super) fn unregister(&self, link: &Arc<WorkerLink>) {
        let mut registry = self.registry.lock();
        if matches!(registry.get(&link.id), Some(Entry::Live(l)) if Arc::ptr_eq(l, link)) {
            registry.remove(&link.id);
        }
    }

    pub(super) fn on_worker_message(
        &self,
        link: &Arc<WorkerLink>,
        session: u64,
        message: HostMessage,
        fds: Vec<OwnedFd>,
    ) {
        if session == SERVICE_SESSION {
            if let HostMessage::Reply(reply) = message {
                link.internal_reply(reply);
            }
            return;
        }
        let Some(client) = self.clients.lock().get(&session).cloned() else {
            return; // The client left; its descriptors close here.
        };
        let mut create_failed = false;
        {
            let mut state = client.state.lock();
            match &message {
                HostMessage::Reply(reply) => {
                    if let Some((_, pending)) = state.pending.remove(&reply.id) {
                        let failed = reply.result.failed();
                        match pending {
                            Pending::CreateSystem if failed => create_failed = true,
                            Pending::OpenSystem(handle) if failed => {
                                state.systems.remove(&handle);
                            }
                            Pending::OpenProcess(process) if failed => {
                                state.processes.remove(&process);
                            }
                            Pending::CreateProcess(process) if !failed => {
                                let pid = reply.process.as_ref().map(|p| p.pid);
                                if let Some(binding) = state.processes.get_mut(&process) {
                                    binding.pid = pid;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                HostMessage::Notification(Notification::ProcessExited { handle, .. }) => {
                    if let Some(binding) = state.processes.get_mut(handle) {
                        binding.exited = true;
                    }
                }
                HostMessage::Notification(
                    Notification::SystemExited { .. } | Notification::GuestConnectionClosed { .. },
                ) => {}
            }
        }
        if create_failed {
            // The id is free again (the worker leaves once the handle is closed).
            self.unregister(link);
        }
        client.push(ServiceMessage::Host(message), fds);
    }

    /// A worker's connection ended: cleanly after `Idle`, or because it died.
    pub(super) fn worker_ended(&self, link: &Arc<WorkerLink>) {
        let was_alive = link.system_alive.swap(false, Ordering::SeqCst);
        let how = link.end();
        self.workers.lock().remove(&link.pid);
        self.unregister(link);
        self.config.state.remove(link.pid);
        let crashed = !link.idle.load(Ordering::SeqCst);
        if crashed {
            tracing::warn!(
                ?link,
                how = how.as_deref().unwrap_or("lost its connection"),
                "worker process ended unexpectedly: its compute system is gone"
            );
        } else {
            tracing::debug!(?link, "worker exited");
        }
        let clients: Vec<Arc<Client>> = self.clients.lock().values().cloned().collect();
        for client in clients {
            let (notifications, replies) = {
                let mut state = client.state.lock();
                let mut notifications = Vec::new();
                if crashed && was_alive {
                    for (handle, bound) in &state.systems {
                        if bound.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                            notifications.push(Notification::SystemExited {
                                handle: *handle,
                                status: hcs_host::worker_lost_exit_status(),
                            });
                        }
                    }
                }
                for (handle, binding) in state.processes.iter_mut() {
                    if Arc::ptr_eq(&binding.link, link) && !binding.exited {
                        if let Some(pid) = binding.pid {
                            binding.exited = true;
                            notifications.push(Notification::ProcessExited {
                                handle: *handle,
                                status: hcs_host::lost_status_document(
                                    pid,
                                    HResult::HCS_E_UNEXPECTED_EXIT,
                                ),
                            });
                        }
                    }
                }
                let ids: Vec<u64> = state
                    .pending
                    .iter()
                    .filter(|(_, (l, _))| Arc::ptr_eq(l, link))
                    .map(|(id, _)| *id)
                    .collect();
                let mut replies = Vec::new();
                for id in ids {
                    if let Some((_, pending)) = state.pending.remove(&id) {
                        replies.push(if crashed {
                            crashed_reply(id, &pending, link, how.as_deref())
                        } else {
                            stopped_reply(id, &pending, link)
                        });
                    }
                }
                state.touched.remove(&link.pid);
                (notifications, replies)
            };
            // Exits first: a request's reply comes after the exit it caused (rule 53).
            for notification in notifications {
                client.host(HostMessage::Notification(notification));
            }
            for reply in replies {
                client.host(reply);
            }
        }
    }
}

/// The phase of a pending request, for its answer.
fn phase(pending: &Pending) -> &'static str {
    match pending {
        Pending::Other(phase) => phase,
        Pending::CreateSystem => "Construct",
        Pending::OpenSystem(_) => "Open",
        Pending::CreateProcess(_) => "CreateProcess",
        Pending::OpenProcess(_) => "OpenProcess",
    }
}

/// The answer to a request on a system whose worker has exited cleanly (rule 27), in the
/// host's words.
pub(super) fn stopped_reply(id: u64, pending: &Pending, link: &WorkerLink) -> HostMessage {
    let phase = phase(pending);
    let outcome = hcs_host::gone::answer(phase, &link.id, hcs_host::gone::Gone::Stopped);
    HostMessage::Reply(Reply::outcome(id, outcome, phase))
}

/// The answer to a request pending when its system's worker died, in the host's words.
pub(super) fn crashed_reply(
    id: u64,
    pending: &Pending,
    link: &WorkerLink,
    how: Option<&str>,
) -> HostMessage {
    let phase = phase(pending);
    let gone = hcs_host::gone::Gone::Died { pid: link.pid, how };
    let outcome = hcs_host::gone::answer(phase, &link.id, gone);
    HostMessage::Reply(Reply::outcome(id, outcome, phase))
}
