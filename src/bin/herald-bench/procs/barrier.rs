//! The child's side of the `--procs` barriers.
//!
//! A child announces that it reached a barrier with one line on stdout,
//! `@@herald-bench barrier NAME`, and waits for the parent's `go NAME` on stdin. The parent
//! answers once every child still running has arrived, after it has read the server
//! processes (so the readings between two barriers cover every child's measured phase).

use std::io::{BufRead, Write};

use tokio::sync::{mpsc, Mutex};

/// What a child writes on stdout when it reaches a barrier (followed by the barrier's name).
pub const BARRIER_PREFIX: &str = "@@herald-bench barrier ";

/// The barrier names, in the order the scenarios reach them: before the measured phase, after
/// publishing (publishing scenarios only), and after the measured phase.
pub const MEASURE: &str = "measure";
pub const PUBLISHED: &str = "published";
pub const DONE: &str = "done";

/// The parent's answer to barrier `name`.
pub fn go_line(name: &str) -> String {
    format!("go {name}")
}

/// A child's link to its parent: barrier lines out, `go` lines in.
pub struct Barrier {
    rx: Mutex<mpsc::UnboundedReceiver<String>>,
}

impl Barrier {
    /// Reads the parent's answers from stdin (on a thread of its own).
    pub fn from_stdin() -> Barrier {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Barrier { rx: Mutex::new(rx) }
    }

    /// Announces barrier `name` and waits for the parent's `go`.
    pub async fn wait(&self, name: &str) -> Result<(), String> {
        {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{BARRIER_PREFIX}{name}")
                .and_then(|_| out.flush())
                .map_err(|e| format!("barrier {name}: cannot write to the parent: {e}"))?;
        }
        let mut rx = self.rx.lock().await;
        match rx.recv().await {
            Some(l) if l.trim() == go_line(name) => Ok(()),
            Some(l) => Err(format!(
                "barrier {name}: unexpected answer from the parent: {l:?}"
            )),
            None => Err(format!("barrier {name}: the parent process is gone")),
        }
    }
}

/// The barrier named by a child's stdout line, if it is a barrier line.
pub fn parse_barrier(line: &str) -> Option<&str> {
    line.strip_prefix(BARRIER_PREFIX).map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_lines() {
        assert_eq!(
            parse_barrier("@@herald-bench barrier measure"),
            Some(MEASURE)
        );
        assert_eq!(parse_barrier("{\"scenario\":\"idle\"}"), None);
        assert_eq!(go_line(DONE), "go done");
    }
}
