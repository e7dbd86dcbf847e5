//! gluon's automatic names: `dense0_`, `dense1_`, and `sequential0_dense0_` inside a scope.
//!
//! Each block kind gets a counter per scope prefix; a container opens a scope with its own
//! prefix while its children are created, so parameter names come out as in MXNet
//! (`sequential0_dense0_weight`). Re-entering a container's scope continues its counts.

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    /// The open scopes' prefixes, innermost last; the root scope is "".
    static SCOPES: RefCell<Vec<String>> = RefCell::new(vec![String::new()]);
    /// Blocks of each kind created so far under each scope prefix.
    static COUNTS: RefCell<HashMap<(String, String), usize>> = RefCell::new(HashMap::new());
}

/// The next prefix for a block of `kind` (`"dense"` → `"dense0_"`, then `"dense1_"`, ...),
/// inside the current scope.
///
/// ```
/// use kiln_frontend::gluon::name::{name_scope, unique_prefix};
/// name_scope("model0_", || {
///     assert_eq!(unique_prefix("dense"), "model0_dense0_");
///     assert_eq!(unique_prefix("dense"), "model0_dense1_");
/// });
/// name_scope("model0_", || assert_eq!(unique_prefix("dense"), "model0_dense2_"));
/// ```
pub fn unique_prefix(kind: &str) -> String {
    let scope = SCOPES.with(|s| s.borrow().last().cloned().unwrap_or_default());
    let n = COUNTS.with(|c| {
        let mut c = c.borrow_mut();
        let n = c.entry((scope.clone(), kind.to_string())).or_insert(0);
        let current = *n;
        *n += 1;
        current
    });
    format!("{scope}{kind}{n}_")
}

/// Runs `f` with `prefix` as the current name scope: blocks created inside get names under it.
pub fn name_scope<R>(prefix: &str, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SCOPES.with(|s| {
                let mut s = s.borrow_mut();
                if s.len() > 1 {
                    s.pop();
                }
            });
        }
    }
    SCOPES.with(|s| s.borrow_mut().push(prefix.to_string()));
    let _pop = Pop;
    f()
}
