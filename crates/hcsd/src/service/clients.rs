//! The client side of the router: the handshake and access check, and the routing of
//! each request to the worker of the system it names (or to the answer that needs none).

use super::workers::stopped_reply;
use super::*;
use crate::link::WorkerLink;
use hcs_host::refusals;

impl Router {
    pub(super) fn allowed(&self, peer: &PeerCredentials) -> bool {
        if peer.uid == 0 || peer.uid == nix::unistd::geteuid().as_raw() {
            return true;
        }
        match &self.config.group {
            Some((_, gid)) => peer.gid == *gid || hcs_wire::peer::process_in_group(peer.pid, *gid),
            None => false,
        }
    }

    pub(super) fn serve_client(self: Arc<Self>, stream: UnixStream) {
        let peer = match hcs_wire::peer_credentials(&stream) {
            Ok(peer) => peer,
            Err(error) => {
                tracing::warn!(%error, "cannot identify a client: closing");
                return;
            }
        };
        let Ok((mut reader, mut writer)) = hcs_wire::frame::split(stream) else {
            return;
        };
        let _ = reader.stream().set_read_timeout(Some(HELLO_TIMEOUT));
        let refuse = |writer: &mut FrameWriter, result: HResult, message: String| {
            tracing::warn!(uid = peer.uid, pid = peer.pid, %message, "client refused");
            let _ = writer.send(&ServiceMessage::Refused { result, message }, &[]);
        };
        let client_name = match reader.recv::<ClientMessage>() {
            Ok(Some((ClientMessage::Hello { versions, client }, _))) => {
                if !versions.contains(&hcs_wire::PROTOCOL_VERSION) {
                    return refuse(
                        &mut writer,
                        HResult::HCS_E_UNSUPPORTED_PROTOCOL_VERSION,
                        format!(
                            "this hcsd speaks protocol version {}; the client offered {versions:?}",
                            hcs_wire::PROTOCOL_VERSION
                        ),
                    );
                }
                client
            }
            Ok(Some(_)) => {
                return refuse(
                    &mut writer,
                    HResult::HCS_E_PROTOCOL_ERROR,
                    "the first message must be Hello".into(),
                )
            }
            Ok(None) => return,
            Err(error) => {
                return refuse(
                    &mut writer,
                    HResult::HCS_E_PROTOCOL_ERROR,
                    format!("bad hello: {error}"),
                )
            }
        };
        if !self.allowed(&peer) {
            let group = self
                .config
                .group
                .as_ref()
                .map(|(name, _)| name.as_str())
                .unwrap_or("hcs");
            return refuse(
                &mut writer,
                HResult::HCS_E_ACCESS_DENIED,
                format!(
                    "user {} (pid {}) may not use hcsd: only root and members of the group \
                     '{group}' may (add the user with `usermod -aG {group} USER`, then log in \
                     again)",
                    peer.uid, peer.pid
                ),
            );
        }
        let _ = reader.stream().set_read_timeout(None);
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let Ok(out) = ClientOut::start(writer, CLIENT_QUEUE) else {
            return;
        };
        let client = Arc::new(Client {
            session,
            peer,
            out,
            state: Mutex::new(ClientState::default()),
        });
        client.push(
            ServiceMessage::Welcome {
                version: hcs_wire::PROTOCOL_VERSION,
                service: format!("hcsd {}", env!("CARGO_PKG_VERSION")),
                pid: std::process::id(),
            },
            Vec::new(),
        );
        self.clients.lock().insert(session, Arc::clone(&client));
        tracing::info!(session, uid = peer.uid, pid = peer.pid, client = %client_name, "client connected");
        loop {
            match reader.recv::<ClientMessage>() {
                Ok(Some((ClientMessage::Request(request), _fds))) => {
                    tracing::info!(
                        target: "hcsd::request",
                        session,
                        uid = peer.uid,
                        pid = peer.pid,
                        id = request.id,
                        request = request.body.phase(),
                    );
                    self.route(&client, request);
                }
                Ok(Some((ClientMessage::Hello { .. }, _))) => {
                    self.drop_client(&client, HResult::HCS_E_PROTOCOL_ERROR, "a second Hello");
                    break;
                }
                Ok(None) => break,
                Err(WireError::Io(_)) => break,
                Err(error) => {
                    self.drop_client(&client, HResult::HCS_E_PROTOCOL_ERROR, &error.to_string());
                    break;
                }
            }
        }
        self.end_client(&client);
    }

    pub(super) fn drop_client(&self, client: &Client, result: HResult, why: &str) {
        tracing::warn!(
            session = client.session,
            uid = client.peer.uid,
            pid = client.peer.pid,
            why,
            "closing a client connection"
        );
        client.push(
            ServiceMessage::Closing {
                result,
                message: format!("hcsd closed this connection: {why}"),
            },
            Vec::new(),
        );
    }

    /// A client left: every worker it reached closes its handles (rule 28).
    pub(super) fn end_client(&self, client: &Arc<Client>) {
        self.clients.lock().remove(&client.session);
        let touched: Vec<Arc<WorkerLink>> = std::mem::take(&mut client.state.lock().touched)
            .into_values()
            .collect();
        for link in touched {
            link.send(&ToWorker::EndSession {
                session: client.session,
            });
        }
        tracing::info!(
            session = client.session,
            pid = client.peer.pid,
            "client disconnected"
        );
        // The writer thread ends when the last reference to the client is dropped.
    }

    /// Sends `request` to `link` for `client`, remembering it as pending.
    pub(super) fn forward(
        &self,
        client: &Client,
        link: &Arc<WorkerLink>,
        request: Request,
        pending: Pending,
    ) {
        let id = request.id;
        {
            let mut state = client.state.lock();
            state.pending.insert(id, (Arc::clone(link), pending));
            state.touched.insert(link.pid, Arc::clone(link));
        }
        let sent = link.send(&ToWorker::Request {
            session: client.session,
            request,
        });
        if !sent {
            // The worker is gone: answer as for a stopped system, unless the link's own
            // end already did.
            let pending = client.state.lock().pending.remove(&id);
            if let Some((_, pending)) = pending {
                client.host(stopped_reply(id, &pending, link));
            }
        }
    }

    pub(super) fn route(self: &Arc<Self>, client: &Arc<Client>, request: Request) {
        let Request { id, body } = request;
        match body {
            RequestBody::CreateSystem {
                handle,
                id: system_id,
                configuration,
            } => self.create(client, id, handle, system_id, configuration),
            RequestBody::OpenSystem {
                handle,
                id: system_id,
            } => {
                let link = match self.registry.lock().get(&system_id) {
                    Some(Entry::Live(link)) => Some(Arc::clone(link)),
                    _ => None,
                };
                match link {
                    Some(link) => {
                        client
                            .state
                            .lock()
                            .systems
                            .insert(handle, Some(Arc::clone(&link)));
                        let body = RequestBody::OpenSystem {
                            handle,
                            id: system_id,
                        };
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::OpenSystem(handle),
                        );
                    }
                    None => client.reply(id, Err(refusals::no_such_system(&system_id)), "Open"),
                }
            }
            RequestBody::CloseSystem { handle } => {
                let bound = client.state.lock().systems.remove(&handle);
                match bound {
                    Some(Some(link)) if !link.dead.load(Ordering::SeqCst) => {
                        let body = RequestBody::CloseSystem { handle };
                        self.forward(client, &link, Request { id, body }, Pending::Other("Close"));
                    }
                    _ => client.reply(id, Ok(None), "Close"),
                }
            }
            RequestBody::System { handle, request } => {
                let bound = client.state.lock().systems.get(&handle).cloned();
                match bound {
                    Some(Some(link)) => {
                        let pending = match &request {
                            SystemRequest::CreateProcess { process, .. } => {
                                client.state.lock().processes.insert(
                                    *process,
                                    ProcessBinding {
                                        link: Arc::clone(&link),
                                        pid: None,
                                        exited: false,
                                    },
                                );
                                Pending::CreateProcess(*process)
                            }
                            other => Pending::Other(other.phase()),
                        };
                        if link.dead.load(Ordering::SeqCst) {
                            client.host(stopped_reply(id, &pending, &link));
                            return;
                        }
                        let body = RequestBody::System { handle, request };
                        self.forward(client, &link, Request { id, body }, pending);
                    }
                    Some(None) => client.reply(id, Err(refusals::never_created()), request.phase()),
                    None => client.reply(
                        id,
                        Err(refusals::unknown_system_handle(handle)),
                        request.phase(),
                    ),
                }
            }
            RequestBody::OpenProcess {
                system,
                process,
                pid,
            } => {
                let bound = client.state.lock().systems.get(&system).cloned();
                match bound {
                    Some(Some(link)) if !link.dead.load(Ordering::SeqCst) => {
                        client.state.lock().processes.insert(
                            process,
                            ProcessBinding {
                                link: Arc::clone(&link),
                                pid: Some(pid),
                                exited: false,
                            },
                        );
                        let body = RequestBody::OpenProcess {
                            system,
                            process,
                            pid,
                        };
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::OpenProcess(process),
                        );
                    }
                    Some(_) => client.reply(id, Err(hcs_host::gone::open_process()), "OpenProcess"),
                    None => client.reply(
                        id,
                        Err(refusals::unknown_system_handle(system)),
                        "OpenProcess",
                    ),
                }
            }
            RequestBody::CloseProcess { handle } => {
                let bound = client.state.lock().processes.remove(&handle);
                match bound {
                    Some(binding) if !binding.link.dead.load(Ordering::SeqCst) => {
                        let body = RequestBody::CloseProcess { handle };
                        self.forward(
                            client,
                            &binding.link,
                            Request { id, body },
                            Pending::Other("CloseProcess"),
                        );
                    }
                    _ => client.reply(id, Ok(None), "CloseProcess"),
                }
            }
            RequestBody::Process { handle, request } => {
                let bound = client
                    .state
                    .lock()
                    .processes
                    .get(&handle)
                    .map(|b| (Arc::clone(&b.link), b.pid));
                match bound {
                    Some((link, _)) if !link.dead.load(Ordering::SeqCst) => {
                        let phase = request.phase();
                        let body = RequestBody::Process { handle, request };
                        self.forward(client, &link, Request { id, body }, Pending::Other(phase));
                    }
                    Some((_, pid)) => client.reply(
                        id,
                        hcs_host::gone::process_request(&request, pid),
                        request.phase(),
                    ),
                    None => client.reply(id, Err(refusals::no_process(handle)), request.phase()),
                }
            }
            RequestBody::Diagnostic(Diagnostic::HoldSystem { handle, hold })
                if self.config.host.test_hooks =>
            {
                let bound = client.state.lock().systems.get(&handle).cloned().flatten();
                match bound {
                    Some(link) if !link.dead.load(Ordering::SeqCst) => {
                        client.state.lock().holds.insert(hold, Arc::clone(&link));
                        let body = RequestBody::Diagnostic(Diagnostic::HoldSystem { handle, hold });
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::Other("HoldSystem"),
                        );
                    }
                    _ => client.reply(id, Err(refusals::nothing_to_hold()), "HoldSystem"),
                }
            }
            RequestBody::Diagnostic(Diagnostic::ReleaseHold { hold })
                if self.config.host.test_hooks =>
            {
                let link = client.state.lock().holds.remove(&hold);
                match link {
                    Some(link) if !link.dead.load(Ordering::SeqCst) => {
                        let body = RequestBody::Diagnostic(Diagnostic::ReleaseHold { hold });
                        self.forward(
                            client,
                            &link,
                            Request { id, body },
                            Pending::Other("ReleaseHold"),
                        );
                    }
                    _ => client.reply(id, Ok(None), "ReleaseHold"),
                }
            }
            RequestBody::Enumerate { query } => {
                let outcome = self.enumerate(query);
                client.reply(id, outcome, "Enumerate");
            }
            RequestBody::Diagnostic(Diagnostic::LiveCounts) if self.config.host.test_hooks => {
                let outcome = self.live_counts();
                client.reply(id, outcome, "LiveCounts");
            }
            RequestBody::Diagnostic(diagnostic) => client.reply(
                id,
                Err(hcs_host::refusals::test_hooks_disabled(diagnostic.phase())),
                diagnostic.phase(),
            ),

            // What concerns no system is answered by a host with the workers' settings,
            // exactly as a worker (or the embedded host) answers it.
            body @ (RequestBody::ValidateDocument { .. }
            | RequestBody::ComPortSocket { .. }
            | RequestBody::GetServiceProperties { .. }
            | RequestBody::ModifyServiceSettings { .. }
            | RequestBody::SubmitWerReport { .. }) => {
                if let Some(outcome) = self.host.answer_at_once(&body) {
                    client.reply(id, outcome, body.phase());
                }
            }
        }
    }

    pub(super) fn create(
        self: &Arc<Self>,
        client: &Arc<Client>,
        id: u64,
        handle: SystemHandle,
        system_id: String,
        configuration: String,
    ) {
        // What can be refused without a worker is refused here, in the embedded host's
        // order (JSON, then id in use): a bad document never costs a process. Host
        // limits are checked by the worker's engine.
        // The host's own first checks (hcsd reads no document itself), parsed without the
        // registry's lock so that concurrent creates do not queue behind each other's
        // parse; the id is then reserved under the lock, checked again there.
        let refused = (|| -> Result<(), Failure> {
            hcs_host::check_document_and_id(&configuration, &system_id, || {
                self.registry.lock().contains_key(&system_id)
            })?;
            let mut registry = self.registry.lock();
            if registry.contains_key(&system_id) {
                return Err(hcs_host::refusals::already_exists(&system_id));
            }
            registry.insert(system_id.clone(), Entry::Reserved);
            Ok(())
        })();
        if let Err(failure) = refused {
            client.state.lock().systems.insert(handle, None);
            client.reply(id, Err(failure), "Construct");
            return;
        }
        let link = match WorkerLink::spawn(&self.config.state, &self.config.host, &system_id) {
            Ok((link, reader)) => {
                link.system_alive.store(true, Ordering::SeqCst);
                self.adopt(Arc::clone(&link), reader);
                link
            }
            Err(error) => {
                self.registry.lock().remove(&system_id);
                client.state.lock().systems.insert(handle, None);
                client.reply(
                    id,
                    Err(Failure::new(
                        HResult::E_FAIL,
                        format!("hcsd could not start a worker process for '{system_id}': {error}"),
                    )),
                    "Construct",
                );
                return;
            }
        };
        tracing::info!(id = %system_id, worker = link.pid, "worker started");
        client
            .state
            .lock()
            .systems
            .insert(handle, Some(Arc::clone(&link)));
        let body = RequestBody::CreateSystem {
            handle,
            id: system_id.clone(),
            configuration,
        };
        // Registered before the create is forwarded, so that a failed create's reply
        // always finds the entry to remove. An enumeration that reaches the worker
        // before the create finds no system there (and does not end the worker).
        self.registry
            .lock()
            .insert(system_id, Entry::Live(Arc::clone(&link)));
        self.forward(client, &link, Request { id, body }, Pending::CreateSystem);
    }

    pub(super) fn live_links(&self) -> Vec<Arc<WorkerLink>> {
        self.registry
            .lock()
            .values()
            .filter_map(|e| match e {
                Entry::Live(link) => Some(Arc::clone(link)),
                Entry::Reserved => None,
            })
            .collect()
    }

    /// `HcsEnumerateComputeSystems`: each live worker answers for its system.
    pub(super) fn enumerate(&self, query: Option<String>) -> Result<Option<String>, Failure> {
        hcs_host::gone::check_query(query.as_deref())?;
        let calls: Vec<_> = self
            .live_links()
            .into_iter()
            .map(|link| {
                let rx = link.call(RequestBody::Enumerate {
                    query: query.clone(),
                });
                (link, rx)
            })
            .collect();
        let mut answers = Vec::new();
        for (link, rx) in calls {
            match rx.recv_timeout(WORKER_CALL_TIMEOUT) {
                Ok(reply) if reply.result.succeeded() => answers.extend(reply.document),
                Ok(_) => {}
                Err(_) => tracing::warn!(?link, "worker did not answer an enumeration"),
            }
        }
        hcs_host::gone::merge_enumerations(&answers)
    }

    /// Diagnostics: systems and VMs summed over the workers.
    pub(super) fn live_counts(&self) -> Result<Option<String>, Failure> {
        let links: Vec<Arc<WorkerLink>> = self.workers.lock().values().cloned().collect();
        let calls: Vec<_> = links
            .iter()
            .map(|link| link.call(RequestBody::Diagnostic(Diagnostic::LiveCounts)))
            .collect();
        let answers: Vec<String> = calls
            .into_iter()
            .filter_map(|rx| rx.recv_timeout(WORKER_CALL_TIMEOUT).ok())
            .filter_map(|reply| reply.document)
            .collect();
        Ok(Some(hcs_host::gone::sum_live_counts(&answers)))
    }
}
