//! The request queue of one system and its worker thread: requests run one at a time in
//! arrival order, and a request still pending when the system begins to stop completes
//! with the code of HCS-API rule 53 instead of running.
//!
//! Every accepted job is numbered; a stop records the next number as `cut_before`, so
//! every job numbered below it (queued, or running in the engine) was pending at the stop.

use super::System;
use crate::lifecycle::{self, StopCause, Verb, Verdict};
use crate::peer::Requester;
use crate::refusals;
use crossbeam_channel::{Receiver, Sender};
use hcs_protocol::SystemRequest;
use std::sync::Arc;

pub(super) enum JobKind {
    Create,
    Request(SystemRequest),
    /// Stop asked while the system was still being created.
    Stop(StopCause),
    /// The system has stopped: answer what is left and end the worker.
    Quit,
    /// Blocks the worker until the sender is dropped (a test hold).
    Hold(Receiver<()>),
}

pub(crate) struct Job {
    /// Keeps the system alive while the job waits: every accepted request is answered.
    system: Arc<System>,
    seq: u64,
    requester: Option<Requester>,
    kind: JobKind,
}

/// The worker thread of one system.
pub(super) fn worker(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let system = Arc::clone(&job.system);
        if !system.run(job) {
            // Quit: answer whatever arrived after the stop, then end.
            while let Ok(job) = jobs.try_recv() {
                let system = Arc::clone(&job.system);
                system.run(job);
            }
            return;
        }
    }
}

impl System {
    /// Queues a job; called with the state lock held, so numbering follows arrival.
    pub(super) fn enqueue(
        self: &Arc<Self>,
        state: &mut super::State,
        requester: Option<Requester>,
        kind: JobKind,
    ) {
        let seq = state.next_seq;
        state.next_seq += 1;
        // The worker only ends after a Quit, which is sent after every other job.
        let _ = self.jobs.send(Job {
            system: Arc::clone(self),
            seq,
            requester,
            kind,
        });
    }

    /// Ends the worker once the jobs before this one are answered.
    pub(super) fn quit(self: &Arc<Self>) {
        let mut state = self.state.lock();
        self.enqueue(&mut state, None, JobKind::Quit);
    }

    /// Queues a job that keeps the worker busy until the returned sender is dropped, so
    /// that requests behind it stay pending. `None` once the system has stopped.
    pub fn hold(self: &Arc<Self>) -> Option<Sender<()>> {
        let mut state = self.state.lock();
        if !matches!(
            lifecycle::verdict(state.life, Verb::GetProperties),
            Verdict::Run(_) | Verdict::Queue
        ) {
            return None;
        }
        let (release, held) = crossbeam_channel::bounded(0);
        self.enqueue(&mut state, None, JobKind::Hold(held));
        Some(release)
    }

    pub fn submit_create(self: &Arc<Self>, requester: Requester) {
        let mut state = self.state.lock();
        self.enqueue(&mut state, Some(requester), JobKind::Create);
    }

    /// Accepts one request: queued for the worker (which decides it by the §3.3 table when
    /// its turn comes), answered at once when the state already decides it, or, for a
    /// terminate of a live system, a stop begun at once (rule 54).
    pub fn submit(self: &Arc<Self>, requester: Requester, request: SystemRequest) {
        let mut state = self.state.lock();
        match lifecycle::verdict(state.life, Verb::of(&request)) {
            Verdict::NotFound => {
                drop(state);
                requester.reply_outcome(Err(self.not_found()), request.phase());
            }
            Verdict::AlreadyStopped => {
                drop(state);
                requester.reply_outcome(Err(refusals::already_stopped(&self.id)), request.phase());
            }
            Verdict::Stop => {
                drop(state);
                self.request_stop(StopCause::Terminate, Some(requester));
            }
            Verdict::Queue | Verdict::Run(_) | Verdict::InvalidState => {
                self.enqueue(&mut state, Some(requester), JobKind::Request(request))
            }
        }
    }

    /// Runs one job on the worker thread; false once the worker is to end.
    fn run(self: &Arc<Self>, job: Job) -> bool {
        // A request that was pending when the system began to stop gets the code of rule
        // 53, whether it was still queued or the engine was working on it.
        if let (Some(cause), JobKind::Request(request)) = (self.cut_cause(job.seq), &job.kind) {
            if let Some(requester) = &job.requester {
                self.reply_cut(requester, &cause, request);
            }
            return true;
        }
        match job.kind {
            JobKind::Quit => return false,
            JobKind::Hold(held) => {
                // Returns when the hold's sender is dropped.
                let _ = held.recv();
            }
            JobKind::Create => {
                let outcome = self.create_vm();
                if let Some(requester) = job.requester {
                    requester.reply_outcome(outcome, "Construct");
                }
            }
            JobKind::Stop(cause) => self.request_stop(cause, job.requester),
            JobKind::Request(SystemRequest::Terminate) => {
                self.request_stop(StopCause::Terminate, job.requester)
            }
            JobKind::Request(SystemRequest::CreateProcess {
                process,
                parameters,
            }) => self.create_process(job.seq, job.requester, process, &parameters),
            JobKind::Request(request) => {
                let outcome = self.execute(&request);
                if let Some(requester) = job.requester {
                    // The system may have begun to stop while the engine worked. A crash
                    // that was delivered is not cut by the exit it causes: that exit is
                    // what it asked for, and it can win the race to the state lock.
                    let delivered_crash =
                        matches!(request, SystemRequest::Crash(_)) && outcome.is_ok();
                    match self.cut_cause(job.seq) {
                        Some(cause) if !delivered_crash => {
                            self.reply_cut(&requester, &cause, &request)
                        }
                        _ => requester.reply_outcome(outcome, request.phase()),
                    }
                }
                let stop = self.state.lock().stop_after_reply.take();
                if let Some(cause) = stop {
                    self.request_stop(cause, None);
                }
            }
        }
        true
    }

    /// Why job `seq` was cut short: the system began to stop after it was accepted.
    pub(super) fn cut_cause(&self, seq: u64) -> Option<StopCause> {
        let state = self.state.lock();
        if state.life.has_stopped() && seq < state.cut_before {
            state.stop_cause.clone()
        } else {
            None
        }
    }

    /// Answers a request cut short by a stop (rule 53).
    pub(super) fn reply_cut(
        &self,
        requester: &Requester,
        cause: &StopCause,
        request: &SystemRequest,
    ) {
        let result = cause.pending_result(Some(Verb::of(request)), self.settings.stop_on_reset);
        if result.succeeded() {
            requester.reply(result, None);
        } else {
            requester.reply_outcome(
                Err(hcs_protocol::Failure::new(
                    result,
                    cause.cut_message(&self.id),
                )),
                request.phase(),
            );
        }
    }
}
