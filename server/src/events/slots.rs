//! A count of open streams with a ceiling: the output, tails and terminal streams hold a
//! slot each for as long as they are open (event streams are counted by the broker), so a
//! client cannot open them without bound.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

pub struct StreamSlots {
    open: AtomicUsize,
    max: usize,
}

/// One open stream; its slot is freed when this is dropped.
pub struct Slot(Arc<StreamSlots>);

impl StreamSlots {
    pub fn new(max: usize) -> Arc<StreamSlots> {
        Arc::new(StreamSlots {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// A slot, or `None` when `max` streams are open.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}
