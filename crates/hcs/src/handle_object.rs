//! One event-raising handle on the client side, a compute system (`HCS_SYSTEM`) or a
//! process (`HCS_PROCESS`): its event callback and event queue, and the latched exit
//! status (`SystemExitStatus` or `ProcessStatus`).
//!
//! The two kinds behave alike (HCS-API §4.2): one callback per handle, operation
//! completions under `HcsEventOptionEnableOperationCallbacks`, one exit event, exit waits.
//! They differ only in the exit event's type.
//!
//! A handle remembers the link (embedded session or service connection) it was made on.
//! When that connection is lost (HCS-API rule 36) the handle gets one
//! `HcsEventServiceDisconnect` event and its exit waits end with
//! `HCS_E_SERVICE_DISCONNECT`; it stays valid to close.
//!
//! Events of one handle are delivered one at a time and in order, on dispatcher threads
//! (HCS-API §4.2 item 9, rule 56); closing the handle waits for a callback of it running on
//! another thread, and none runs after the close returns (rule 29).

use crate::client::Link;
use crate::dispatcher::Dispatcher;
use crate::operation::Operation;
use crate::types::{event_options, Context, Event, EventCallback, EventType};
use hcs_schema::HResult;
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

struct Events {
    callback: Option<(EventCallback, Context, u32)>,
    queue: VecDeque<Event>,
    draining: bool,
    running_on: Option<ThreadId>,
    closed: bool,
    /// Callback-less operations that targeted this handle and may still have to be
    /// reported once operation callbacks are enabled (rule 55).
    tracked: Vec<Weak<Operation>>,
}

impl Events {
    fn takes_operation_completions(&self) -> bool {
        self.callback
            .as_ref()
            .is_some_and(|(_, _, options)| options & event_options::ENABLE_OPERATION_CALLBACKS != 0)
    }
}

/// The client side of one system or process handle.
pub(crate) struct HandleObject {
    /// The handle's number (`HcsSystem.0` or `HcsProcess.0`).
    pub handle: u64,
    /// The compute system's id (for a process, its system's).
    pub id: String,
    /// What the handle was made on; its requests go there.
    pub link: Link,
    /// The service connection it was made on is gone.
    disconnected: AtomicBool,
    /// `SystemExited` or `ProcessExited`.
    exit_event: EventType,
    events: Mutex<Events>,
    idle: Condvar,
    exit: Mutex<Option<String>>,
    exited: Condvar,
    /// A process handle's stdio descriptors (empty for systems).
    pub std_handles: crate::std_handles::StdHandles,
}

impl HandleObject {
    /// A compute-system handle.
    pub fn system(handle: u64, id: String, link: Link) -> HandleObject {
        HandleObject::new(handle, id, link, EventType::SystemExited)
    }

    /// A process handle in compute system `id`.
    pub fn process(handle: u64, id: String, link: Link) -> HandleObject {
        HandleObject::new(handle, id, link, EventType::ProcessExited)
    }

    fn new(handle: u64, id: String, link: Link, exit_event: EventType) -> HandleObject {
        HandleObject {
            handle,
            id,
            link,
            disconnected: AtomicBool::new(false),
            exit_event,
            events: Mutex::new(Events {
                callback: None,
                queue: VecDeque::new(),
                draining: false,
                running_on: None,
                closed: false,
                tracked: Vec::new(),
            }),
            idle: Condvar::new(),
            exit: Mutex::new(None),
            exited: Condvar::new(),
            std_handles: Default::default(),
        }
    }

    /// Whether operation completions go to this handle's event callback (§4.3).
    pub fn operation_callbacks_enabled(&self) -> bool {
        self.events.lock().takes_operation_completions()
    }

    /// Remembers a callback-less operation aimed at this handle (for rule 55).
    pub fn track(&self, operation: &Arc<Operation>) {
        let mut events = self.events.lock();
        // A reused operation is tracked once: one entry per use made the list grow with
        // every request and this sweep cost O(uses) per call.
        if events
            .tracked
            .iter()
            .any(|weak| std::ptr::eq(weak.as_ptr(), Arc::as_ptr(operation)))
        {
            return;
        }
        if events.tracked.len() >= 32 {
            events
                .tracked
                .retain(|weak| weak.upgrade().is_some_and(|op| op.may_still_report()));
        }
        events.tracked.push(Arc::downgrade(operation));
    }

    /// `HcsSetComputeSystemCallback` (rules 32, 33, 55).
    pub fn set_callback(
        self: &Arc<Self>,
        dispatcher: &Arc<Dispatcher>,
        options: u32,
        context: Context,
        callback: EventCallback,
    ) -> HResult {
        let mut events = self.events.lock();
        if events.closed {
            return HResult::E_HANDLE;
        }
        if events.callback.is_some() {
            return HResult::HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET;
        }
        events.callback = Some((callback, context, options));
        if options & event_options::ENABLE_OPERATION_CALLBACKS != 0 {
            // Completions that happened before this registration and were not read yet.
            let tracked = std::mem::take(&mut events.tracked);
            for weak in tracked {
                let Some(op) = weak.upgrade() else { continue };
                if op.take_for_event(self.handle, true) {
                    events.queue.push_back(operation_event(op.handle));
                } else if op.may_still_report() {
                    events.tracked.push(weak);
                }
            }
            self.schedule(&mut events, dispatcher);
        }
        HResult::S_OK
    }

    /// Offers a callback-less completion to the event callback (§4.3).
    pub fn offer_completion(self: &Arc<Self>, dispatcher: &Arc<Dispatcher>, op: &Operation) {
        let mut events = self.events.lock();
        if events.takes_operation_completions()
            && !events.closed
            && op.take_for_event(self.handle, false)
        {
            events.queue.push_back(operation_event(op.handle));
            self.schedule(&mut events, dispatcher);
        }
    }

    /// The system or process exited: latch the status for waiters and raise the event
    /// (rules 26, 35).
    pub fn exited(self: &Arc<Self>, dispatcher: &Arc<Dispatcher>, status: String) {
        {
            let mut exit = self.exit.lock();
            if exit.is_some() {
                return;
            }
            *exit = Some(status.clone());
        }
        self.exited.notify_all();
        let mut events = self.events.lock();
        if events.callback.is_some() && !events.closed {
            events.queue.push_back(Event {
                event_type: self.exit_event,
                event_data: Some(status),
                operation: None,
            });
            self.schedule(&mut events, dispatcher);
        }
    }

    /// The system's guest connection ended: one `SystemGuestConnectionClosed` event with
    /// no data (HCS-API §4.1), never after the exit.
    pub fn guest_connection_closed(self: &Arc<Self>, dispatcher: &Arc<Dispatcher>) {
        if self.exit.lock().is_some() {
            return;
        }
        let mut events = self.events.lock();
        if events.callback.is_some() && !events.closed {
            events.queue.push_back(Event {
                event_type: EventType::SystemGuestConnectionClosed,
                event_data: None,
                operation: None,
            });
            self.schedule(&mut events, dispatcher);
        }
    }

    /// The service connection this handle was made on is lost (rule 36): exit waiters
    /// give up, and the event callback, if any, gets one `ServiceDisconnect` event.
    pub fn service_disconnected(self: &Arc<Self>, dispatcher: &Arc<Dispatcher>) {
        if self.disconnected.swap(true, Ordering::SeqCst) {
            return;
        }
        {
            let _guard = self.exit.lock();
            self.exited.notify_all();
        }
        let mut events = self.events.lock();
        if events.callback.is_some() && !events.closed {
            events.queue.push_back(Event {
                event_type: EventType::ServiceDisconnect,
                event_data: None,
                operation: None,
            });
            self.schedule(&mut events, dispatcher);
        }
    }

    /// `HcsWaitForComputeSystemExit` / `HcsWaitForProcessExit` (rule 30): a latched
    /// broadcast. After the service is lost, a wait without an exit ends with
    /// `HCS_E_SERVICE_DISCONNECT` (rule 36).
    pub fn wait_for_exit(&self, timeout: Option<Duration>) -> (HResult, Option<String>) {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut exit = self.exit.lock();
        loop {
            if let Some(status) = exit.as_ref() {
                return (HResult::S_OK, Some(status.clone()));
            }
            if self.events.lock().closed {
                return (HResult::E_HANDLE, None);
            }
            if self.disconnected.load(Ordering::SeqCst) {
                return (HResult::HCS_E_SERVICE_DISCONNECT, None);
            }
            match deadline {
                None => self.exited.wait(&mut exit),
                Some(deadline) => {
                    if self.exited.wait_until(&mut exit, deadline).timed_out() && exit.is_none() {
                        return (HResult::HCS_E_OPERATION_TIMEOUT, None);
                    }
                }
            }
        }
    }

    fn schedule(self: &Arc<Self>, events: &mut Events, dispatcher: &Arc<Dispatcher>) {
        if events.draining || events.queue.is_empty() {
            return;
        }
        events.draining = true;
        let this = Arc::clone(self);
        dispatcher.submit(move || this.drain());
    }

    /// Delivers queued events one at a time (on a dispatcher thread).
    fn drain(&self) {
        loop {
            let (event, callback, context) = {
                let mut events = self.events.lock();
                if events.closed {
                    events.queue.clear();
                    events.draining = false;
                    return;
                }
                let Some(event) = events.queue.pop_front() else {
                    events.draining = false;
                    return;
                };
                let Some((callback, context, _)) = events.callback.clone() else {
                    events.draining = false;
                    return;
                };
                events.running_on = Some(std::thread::current().id());
                (event, callback, context)
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                callback(&event, context)
            }));
            if outcome.is_err() {
                tracing::error!(handle = self.handle, "an event callback panicked");
            }
            self.events.lock().running_on = None;
            self.idle.notify_all();
        }
    }

    /// Marks the handle closed: no callback runs after this returns (rule 29).
    pub fn close(&self) {
        let me = std::thread::current().id();
        {
            let mut events = self.events.lock();
            events.closed = true;
            events.queue.clear();
            while matches!(events.running_on, Some(thread) if thread != me) {
                self.idle.wait(&mut events);
            }
        }
        self.std_handles.close();
        // Wake exit waiters so that they see the close.
        let _guard = self.exit.lock();
        self.exited.notify_all();
    }
}

fn operation_event(operation: crate::types::HcsOperation) -> Event {
    Event {
        event_type: EventType::OperationCallback,
        event_data: None,
        operation: Some(operation),
    }
}
