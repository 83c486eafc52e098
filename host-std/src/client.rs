//! Chat client (in progress).

/// Runs the chat client.
pub fn run(_a: crate::cli::ChatArgs) -> i32 {
    1
}
