//! Junction's script runtimes: Node.js and Python.
//!
//! Architecture invariant: this crate knows nothing of runs, queues or the
//! store. It is handed source code and answers about it (and, from the
//! runtimes issue on, executes it).
//!
//! Today it does introspection on upload: a JavaScript step must parse as a
//! script (`node --check`), a Python step must parse and define the class
//! its name promises.

mod introspect;

pub use introspect::{check_source, IntrospectError, Introspection, RuntimeConfig};
