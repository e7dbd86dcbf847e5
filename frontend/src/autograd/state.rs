//! The thread-local recording and training flags, and the scopes that set them.
//!
//! Each scope saves the flags on entry and a guard restores them on exit, so they are right
//! again after an early return, a `?` or a panic unwinding through the closure.

use std::cell::Cell;

/// The two flags MXNet keeps per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mode {
    recording: bool,
    training: bool,
}

thread_local! {
    static MODE: Cell<Mode> = const {
        Cell::new(Mode {
            recording: false,
            training: false,
        })
    };
}

fn current() -> Mode {
    MODE.with(Cell::get)
}

/// Restores the flags it saved when dropped.
struct ModeGuard {
    saved: Mode,
}

impl Drop for ModeGuard {
    fn drop(&mut self) {
        MODE.with(|m| m.set(self.saved));
    }
}

fn enter(mode: Mode) -> ModeGuard {
    let saved = MODE.with(|m| m.replace(mode));
    ModeGuard { saved }
}

/// Runs `f` with recording paused and training mode off, restoring the flags afterwards.
///
/// Used by backward so that the ops it runs leave no tape.
pub(crate) fn paused<R>(f: impl FnOnce() -> R) -> R {
    pause(f)
}

/// True inside [`record`] (and not inside [`pause`]): ops run now are taped for `backward`.
pub fn is_recording() -> bool {
    current().recording
}

/// True when layers should behave as in training: dropout drops, batch norm uses the batch's
/// statistics. On inside [`record`] (unless `record_with(false, ..)`) and [`train_mode`].
pub fn is_training() -> bool {
    current().training
}

/// Runs `f` recording every op for `backward`, in training mode (MXNet's
/// `autograd.record()`); returns what `f` returns.
///
/// Nested `record` scopes simply continue recording. The previous flags come back when `f`
/// returns or unwinds.
///
/// ```
/// use kiln_frontend::autograd;
/// assert!(!autograd::is_recording());
/// let inside = autograd::record(|| (autograd::is_recording(), autograd::is_training()));
/// assert_eq!(inside, (true, true));
/// assert!(!autograd::is_recording() && !autograd::is_training());
/// ```
pub fn record<R>(f: impl FnOnce() -> R) -> R {
    record_with(true, f)
}

/// [`record`] with the training flag given (`record_with(false, ..)` records in predict mode,
/// MXNet's `record(train_mode=False)`).
pub fn record_with<R>(train_mode: bool, f: impl FnOnce() -> R) -> R {
    let _guard = enter(Mode {
        recording: true,
        training: train_mode,
    });
    f()
}

/// Runs `f` without recording, in predict mode (MXNet's `autograd.pause()`): ops run inside
/// are not taped, and their results carry no history.
///
/// ```
/// use kiln_frontend::autograd;
/// autograd::record(|| {
///     autograd::pause(|| assert!(!autograd::is_recording() && !autograd::is_training()));
///     assert!(autograd::is_recording());
/// });
/// ```
pub fn pause<R>(f: impl FnOnce() -> R) -> R {
    pause_with(false, f)
}

/// [`pause`] with the training flag given (MXNet's `pause(train_mode=True)`).
pub fn pause_with<R>(train_mode: bool, f: impl FnOnce() -> R) -> R {
    let _guard = enter(Mode {
        recording: false,
        training: train_mode,
    });
    f()
}

/// Runs `f` in training mode, leaving the recording flag as it is.
pub fn train_mode<R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter(Mode {
        training: true,
        ..current()
    });
    f()
}

/// Runs `f` in predict mode (dropout off, batch norm on running statistics), leaving the
/// recording flag as it is.
pub fn predict_mode<R>(f: impl FnOnce() -> R) -> R {
    let _guard = enter(Mode {
        training: false,
        ..current()
    });
    f()
}
