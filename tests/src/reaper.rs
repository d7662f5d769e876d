//! One owner for everything a test run starts: every server, fake and temp dir is stopped and
//! removed however the test process ends (success, failure, panic, `std::process::exit`,
//! Ctrl-C, SIGKILL).
//!
//! Destructors cannot promise that: `exit` and signals skip them, and the fakes start their
//! servers in new sessions, so a process group misses them too. Instead every process the
//! tests start carries this run's marker in its environment ([`Owned::owned`]), which its own
//! children inherit, and a guardian (`reaper.py`, started once per test binary) waits for the
//! test process to end, then stops every process carrying the marker and removes the run's
//! temp root. It learns of the end through a pipe only the test process holds open, which the
//! kernel closes whatever way the process dies.

use crate::{python, workspace_root};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that marks a process as started by this run (`<pid>-<hex>`: the
/// test process's pid and a clock reading).
pub const MARKER: &str = "EVENTBUS_TEST_RUN";

/// This test binary's run: its id, its temp root, and the guardian watching it.
struct Run {
    id: String,
    root: PathBuf,
    /// The writing end of the guardian's stdin and the reading end of its stdout; taken at a
    /// normal exit to close the one and wait for the other to close (see [`finish`]).
    guardian: Mutex<Option<(ChildStdin, ChildStdout)>>,
}

static RUN: OnceLock<Run> = OnceLock::new();

fn run() -> &'static Run {
    RUN.get_or_init(Run::start)
}

impl Run {
    fn start() -> Run {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        // Short (paths below the root hold unix sockets); the pid makes it unique among live runs.
        let id = format!("{}-{:08x}", std::process::id(), nanos as u32);
        let root = std::env::temp_dir().join(format!("eventbus-test-{id}"));
        std::fs::create_dir_all(&root).unwrap_or_else(|e| {
            panic!("cannot create the run's temp root {}: {e}", root.display())
        });
        let guardian = spawn_guardian(&id, &root);
        // Safety: `finish` only takes a lock and waits for a child; it is safe at any exit.
        unsafe { libc::atexit(finish) };
        Run {
            id,
            root,
            guardian: Mutex::new(Some(guardian)),
        }
    }
}

/// `python tests/src/reaper.py ID ROOT` with its stdin a pipe that only we hold (std opens
/// it close-on-exec, so no child inherits it). It forks into a new session and its parent
/// returns; until then its own process group keeps Ctrl-C (sent to the terminal's foreground
/// group) away from it.
fn spawn_guardian(id: &str, root: &Path) -> (ChildStdin, ChildStdout) {
    let script = workspace_root().join("tests/src/reaper.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(id)
        .arg(root)
        .env_remove(MARKER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start the test guardian {} with {}: {e}",
                script.display(),
                python().display()
            )
        });
    let stdin = child.stdin.take().expect("the guardian's stdin is piped");
    let stdout = child.stdout.take().expect("the guardian's stdout is piped");
    // Its parent, once the guardian has forked away.
    let _ = child.wait();
    (stdin, stdout)
}

/// At a normal exit (also `std::process::exit` and a panic ending `main`): close the pipe now
/// and wait for the guardian to end (its stdout closes), so that the next suite (and a
/// leftovers check) starts clean. Signals skip this; the guardian then acts alone when the
/// kernel closes the pipe.
extern "C" fn finish() {
    let Some(run) = RUN.get() else { return };
    let Ok(mut guardian) = run.guardian.try_lock() else {
        return;
    };
    if let Some((stdin, mut stdout)) = guardian.take() {
        drop(stdin);
        let _ = stdout.read_to_end(&mut Vec::new());
    }
}

/// `Command::owned`: every process a test starts goes through it, just before `spawn`.
pub trait Owned {
    /// Marks the command as started by this run: the guardian stops it (and whatever it
    /// starts) when the test process ends, and its temp files (`TMPDIR`) land in the run's
    /// root.
    fn owned(&mut self) -> &mut Self;
}

impl Owned for Command {
    fn owned(&mut self) -> &mut Self {
        let run = run();
        self.env(MARKER, &run.id).env("TMPDIR", &run.root)
    }
}

/// The run's temp root, `<temp dir>/eventbus-test-<id>/`, removed when the test process ends
/// (kept with `EVENTBUS_TEST_KEEP`).
pub fn temp_root() -> &'static Path {
    &run().root
}
