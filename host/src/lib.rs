//! The native host of the eventbus IaC provider: Wasmtime runtime, capabilities, the
//! standalone CLI and its state.

/// Writes to stdout like `print!`, but a reader that went away (`| head`) ends the process
/// quietly with 141 (128 + SIGPIPE) instead of a panic. SIGPIPE itself stays ignored, as Rust
/// sets it: restoring its default would also kill the process when a broker drops a socket
/// mid-write (writev on a reset connection raises it), losing the apply's error report.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` with the same broken-pipe handling as [`out!`].
#[macro_export]
macro_rules! outln {
    () => { $crate::out!("\n") };
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[doc(hidden)]
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        panic!("failed printing to stdout: {e}");
    }
}

pub mod caps;
pub mod commands;
pub mod infra;
pub mod runtime;
pub mod state;
pub mod wfctl;
