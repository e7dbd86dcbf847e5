//! gluon's automatic names: `dense0_`, `dense1_`, and `sequential0_dense0_` inside a scope.
//!
//! Each block kind gets a counter per scope; a container opens a scope with its own prefix
//! while its children are created, so parameter names come out as in MXNet
//! (`sequential0_dense0_weight`).

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static SCOPES: RefCell<Vec<(String, HashMap<String, usize>)>> =
        RefCell::new(vec![(String::new(), HashMap::new())]);
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
/// ```
pub fn unique_prefix(kind: &str) -> String {
    SCOPES.with(|s| {
        let mut s = s.borrow_mut();
        let (prefix, counts) = s.last_mut().expect("the root scope is never popped");
        let n = counts.entry(kind.to_string()).or_insert(0);
        let p = format!("{prefix}{kind}{n}_");
        *n += 1;
        p
    })
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
    SCOPES.with(|s| s.borrow_mut().push((prefix.to_string(), HashMap::new())));
    let _pop = Pop;
    f()
}
