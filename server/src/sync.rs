//! Locks that outlive a panic. A thread that panicked while holding one of our mutexes
//! leaves data that is still whole (every critical section writes whole values), so the
//! rest of the server goes on with it instead of panicking in turn.

use std::sync::{Mutex, MutexGuard};

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
