//! The idiomatic Rust API: owned handles that close themselves, operations that can be
//! waited for or awaited, and event streams.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hcs::Error> {
//! let doc = r#"{"SchemaVersion":{"Major":2,"Minor":1},"VirtualMachine":{
//!     "Chipset":{"Uefi":{}},"ComputeTopology":{"Memory":{"SizeInMB":64}}}}"#;
//! let system = hcs::ComputeSystem::create("demo", doc).wait()?;
//! let events = system.events()?;
//! system.start().await?;
//! system.terminate().await?;
//! let exited = events.recv().unwrap();
//! assert_eq!(exited.event_type, hcs::EventType::SystemExited);
//! # Ok(()) }
//! ```

use crate::api;
use crate::error::{check, Error};
use crate::types::{event_options, Event, HcsOperation, HcsSystem, INFINITE};
use crossbeam_channel::Receiver;
use hcs_schema::HResult;
use parking_lot::Mutex;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

/// A timeout in the flat API's form: `None` is `INFINITE`; longer than `INFINITE` ms is
/// capped just below it.
pub(crate) fn timeout_ms(timeout: Option<Duration>) -> u32 {
    timeout
        .map(|t| u32::try_from(t.as_millis()).unwrap_or(INFINITE - 1))
        .unwrap_or(INFINITE)
}

/// An owned operation handle; dropping it closes the operation.
#[derive(Debug)]
pub struct Operation {
    handle: HcsOperation,
}

impl Operation {
    /// A new operation without a callback.
    pub fn new() -> Operation {
        Operation {
            handle: api::create_operation(0, None),
        }
    }

    /// A new operation whose callback runs once per tracked call, on a dispatcher thread.
    pub fn with_callback(callback: impl Fn(HcsOperation) + Send + Sync + 'static) -> Operation {
        Operation {
            handle: api::create_operation(0, Some(Arc::new(move |op, _| callback(op)))),
        }
    }

    /// The raw handle, for the flat API.
    pub fn handle(&self) -> HcsOperation {
        self.handle
    }

    /// Waits for the tracked call (`None` = no limit) and returns its document.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Option<String>, Error> {
        let ms = timeout_ms(timeout);
        let (hresult, document) = api::wait_for_operation_result(self.handle, ms);
        check(hresult, document)
    }

    /// The result without blocking: `HCS_E_OPERATION_PENDING` while running.
    pub fn result(&self) -> Result<Option<String>, Error> {
        let (hresult, document) = api::get_operation_result(self.handle);
        check(hresult, document)
    }
}

impl Default for Operation {
    fn default() -> Self {
        Operation::new()
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        api::close_operation(self.handle);
    }
}

/// A started call: `.wait()` blocks for it, `.await` waits asynchronously.
#[must_use = "a Pending does nothing unless waited for or awaited"]
pub struct Pending<T> {
    operation: Operation,
    started: Result<(), Error>,
    finish: fn(Option<String>) -> T,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("operation", &self.operation)
            .finish()
    }
}

impl<T> Pending<T> {
    pub(crate) fn new(
        operation: Operation,
        started: HResult,
        finish: fn(Option<String>) -> T,
    ) -> Pending<T> {
        Pending {
            operation,
            started: check(started, None).map(|_| ()),
            finish,
        }
    }

    /// Blocks until the call completes.
    pub fn wait(self) -> Result<T, Error> {
        self.started.clone()?;
        self.operation.wait(None).map(self.finish)
    }

    /// Blocks up to `timeout`; `Err(HCS_E_OPERATION_TIMEOUT)` if still running (the call
    /// goes on).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, Error> {
        self.started.clone()?;
        self.operation.wait(Some(timeout)).map(self.finish)
    }

    /// The operation tracking the call.
    pub fn operation(&self) -> &Operation {
        &self.operation
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        if let Err(error) = &self.started {
            return Poll::Ready(Err(error.clone()));
        }
        let client = crate::client::client();
        let Some(op) = client.operation(self.operation.handle) else {
            return Poll::Ready(Err(Error::from_hresult(HResult::E_HANDLE)));
        };
        match op.poll_result(cx.waker()) {
            Some((hresult, document)) => Poll::Ready(check(hresult, document).map(self.finish)),
            None => Poll::Pending,
        }
    }
}

pub(crate) fn nothing(_: Option<String>) {}

pub(crate) fn document(doc: Option<String>) -> String {
    doc.unwrap_or_default()
}

/// An owned compute-system handle; dropping it closes the handle (which terminates the
/// system if its document set `ShouldTerminateOnLastHandleClosed`).
#[derive(Debug)]
pub struct ComputeSystem {
    handle: HcsSystem,
    id: String,
}

/// The result of [`ComputeSystem::create`]: the handle, usable at once, and the pending
/// create.
pub struct Creating {
    system: Option<ComputeSystem>,
    pending: Pending<()>,
}

impl Creating {
    /// Blocks until the create completes; on failure the handle is closed.
    pub fn wait(self) -> Result<ComputeSystem, Error> {
        let Creating { system, pending } = self;
        pending.wait()?;
        system.ok_or(Error::from_hresult(HResult::E_HANDLE))
    }

    /// The handle, before the create has completed (HCS-API rule 20).
    pub fn system(&self) -> Option<&ComputeSystem> {
        self.system.as_ref()
    }
}

impl Future for Creating {
    type Output = Result<ComputeSystem, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.pending).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Ready(Ok(())) => Poll::Ready(
                self.system
                    .take()
                    .ok_or(Error::from_hresult(HResult::E_HANDLE)),
            ),
        }
    }
}

impl ComputeSystem {
    /// Creates a compute system from a `ComputeSystem` document.
    pub fn create(id: &str, configuration: &str) -> Creating {
        let operation = Operation::new();
        match api::create_compute_system(id, configuration, operation.handle, None) {
            Ok(handle) => Creating {
                system: Some(ComputeSystem {
                    handle,
                    id: id.to_owned(),
                }),
                pending: Pending::new(operation, HResult::S_OK, nothing),
            },
            Err(hresult) => Creating {
                system: None,
                pending: Pending::new(operation, hresult, nothing),
            },
        }
    }

    /// Opens an existing compute system by id.
    pub fn open(id: &str) -> Result<ComputeSystem, Error> {
        let handle =
            api::open_compute_system(id, crate::types::GENERIC_ALL).map_err(Error::from_hresult)?;
        Ok(ComputeSystem {
            handle,
            id: id.to_owned(),
        })
    }

    /// The system's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The raw handle, for the flat API.
    pub fn handle(&self) -> HcsSystem {
        self.handle
    }

    fn call(&self, issue: impl FnOnce(HcsSystem, HcsOperation) -> HResult) -> Pending<()> {
        let operation = Operation::new();
        let started = issue(self.handle, operation.handle);
        Pending::new(operation, started, nothing)
    }

    /// Starts the system.
    pub fn start(&self) -> Pending<()> {
        self.call(|s, o| api::start_compute_system(s, o, None))
    }

    /// Pauses it, with optional `PauseOptions`.
    pub fn pause(&self, options: Option<&str>) -> Pending<()> {
        self.call(|s, o| api::pause_compute_system(s, o, options))
    }

    /// Resumes it.
    pub fn resume(&self) -> Pending<()> {
        self.call(|s, o| api::resume_compute_system(s, o, None))
    }

    /// Asks the guest to shut down, with optional `ShutdownOptions`.
    pub fn shutdown(&self, options: Option<&str>) -> Pending<()> {
        self.call(|s, o| api::shut_down_compute_system(s, o, options))
    }

    /// Stops it at once.
    pub fn terminate(&self) -> Pending<()> {
        self.call(|s, o| api::terminate_compute_system(s, o, None))
    }

    /// Crashes the guest (NMI), with optional `CrashOptions`.
    pub fn crash(&self, options: Option<&str>) -> Pending<()> {
        self.call(|s, o| api::crash_compute_system(s, o, options))
    }

    /// Saves it, with `SaveOptions`.
    pub fn save(&self, options: Option<&str>) -> Pending<()> {
        self.call(|s, o| api::save_compute_system(s, o, options))
    }

    /// Applies a `ModifySettingRequest`.
    pub fn modify(&self, request: &str) -> Pending<()> {
        self.call(|s, o| api::modify_compute_system(s, o, request, 0))
    }

    /// The `Properties` document, for an optional `System_PropertyQuery`.
    pub fn properties(&self, query: Option<&str>) -> Pending<String> {
        let operation = Operation::new();
        let started = api::get_compute_system_properties(self.handle, operation.handle, query);
        Pending::new(operation, started, document)
    }

    /// Blocks until the system exits (`None` = no limit); returns the `SystemExitStatus`.
    pub fn wait_for_exit(&self, timeout: Option<Duration>) -> Result<String, Error> {
        let ms = timeout_ms(timeout);
        let (hresult, status) = api::wait_for_compute_system_exit(self.handle, ms);
        check(hresult, status).map(document)
    }

    /// Registers this handle's event callback as a stream of events. A handle has one
    /// event callback: a second call fails with `HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET`.
    pub fn events(&self) -> Result<EventStream, Error> {
        let (sender, receiver) = crossbeam_channel::unbounded();
        let waker: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let for_callback = Arc::clone(&waker);
        let hresult = api::set_compute_system_callback(
            self.handle,
            event_options::NONE,
            0,
            Some(Arc::new(move |event: &Event, _| {
                let _ = sender.send(event.clone());
                if let Some(waker) = for_callback.lock().take() {
                    waker.wake();
                }
            })),
        );
        check(hresult, None)?;
        Ok(EventStream { receiver, waker })
    }
}

impl Drop for ComputeSystem {
    fn drop(&mut self) {
        api::close_compute_system(self.handle);
    }
}

/// Events of one compute-system handle, as a blocking receiver or a `futures::Stream`.
#[derive(Debug)]
pub struct EventStream {
    receiver: Receiver<Event>,
    waker: Arc<Mutex<Option<Waker>>>,
}

impl EventStream {
    /// Blocks for the next event; `None` once the handle is closed.
    pub fn recv(&self) -> Option<Event> {
        self.receiver.recv().ok()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.receiver.recv_timeout(timeout).ok()
    }
}

impl futures::Stream for EventStream {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Event>> {
        *self.waker.lock() = Some(cx.waker().clone());
        match self.receiver.try_recv() {
            Ok(event) => Poll::Ready(Some(event)),
            Err(crossbeam_channel::TryRecvError::Empty) => Poll::Pending,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Poll::Ready(None),
        }
    }
}

/// Lists compute systems, filtered by an optional `SystemQuery`; returns a JSON array.
pub fn enumerate(query: Option<&str>) -> Pending<String> {
    let operation = Operation::new();
    let started = api::enumerate_compute_systems(query, operation.handle);
    Pending::new(operation, started, document)
}
