//! The synchronization primitives of the operation state machine: parking_lot normally,
//! loom's model-checked ones when built with `RUSTFLAGS="--cfg loom"` (see the loom
//! tests in `operation.rs`). Both are used through one small parking_lot-shaped API.

#[cfg(not(loom))]
pub(crate) use parking_lot::{Condvar, Mutex};

#[cfg(not(loom))]
pub(crate) fn current_thread() -> std::thread::ThreadId {
    std::thread::current().id()
}

#[cfg(not(loom))]
pub(crate) type ThreadId = std::thread::ThreadId;

#[cfg(loom)]
pub(crate) use self::model::{current_thread, Condvar, Mutex, ThreadId};

#[cfg(loom)]
mod model {
    use std::ops::{Deref, DerefMut};

    pub(crate) type ThreadId = loom::thread::ThreadId;

    pub(crate) fn current_thread() -> ThreadId {
        loom::thread::current().id()
    }

    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    pub(crate) struct MutexGuard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Self {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(|e| e.into_inner())))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard present")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard present")
        }
    }

    pub(crate) struct Condvar(loom::sync::Condvar);

    /// Deadline waits are not modelled: loom explores untimed interleavings only.
    pub(crate) struct Timeout;

    impl Timeout {
        pub fn timed_out(&self) -> bool {
            false
        }
    }

    impl Condvar {
        pub fn new() -> Self {
            Condvar(loom::sync::Condvar::new())
        }

        pub fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard present");
            guard.0 = Some(self.0.wait(inner).unwrap_or_else(|e| e.into_inner()));
        }

        pub fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            _deadline: std::time::Instant,
        ) -> Timeout {
            self.wait(guard);
            Timeout
        }

        pub fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}
