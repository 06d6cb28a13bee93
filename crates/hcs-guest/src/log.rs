//! The agent's log: short lines prefixed `hcs-guest:` on stderr (the console, ttyS0, as PID 1).

/// Writes one log line. Never panics, even with no console (unlike `eprintln!`).
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log::line(format_args!($($arg)*))
    };
}
pub(crate) use log;

/// Writes `hcs-guest: <message>\n` in one write so that lines of threads do not mix.
pub fn line(message: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let text = format!("hcs-guest: {message}\n");
    let _ = std::io::stderr().write_all(text.as_bytes());
}
