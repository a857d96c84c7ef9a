//! SIGTERM and SIGINT turned into a [`CancellationToken`] that the daemon's tasks watch.
//!
//! The first signal asks for a clean shutdown. A second one exits at once with status 130, so
//! a daemon stuck while shutting down can still be stopped from a terminal.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Exit status used when a second signal arrives during shutdown (128 + SIGINT).
const FORCED_EXIT_STATUS: i32 = 130;

/// Returns a token cancelled on the first SIGTERM or SIGINT.
///
/// Must be called inside a tokio runtime. The handlers are installed before this returns, so
/// a signal sent right after start-up is never lost to the default action.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let sigterm = install(SignalKind::terminate(), "SIGTERM");
    let sigint = install(SignalKind::interrupt(), "SIGINT");
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut sigterm = sigterm;
        let mut sigint = sigint;
        let first = next_signal(&mut sigterm, &mut sigint).await;
        tracing::info!(signal = first, "shutdown requested");
        cancel.cancel();
        let second = next_signal(&mut sigterm, &mut sigint).await;
        tracing::warn!(
            signal = second,
            "second signal during shutdown, exiting now"
        );
        std::process::exit(FORCED_EXIT_STATUS);
    });
    token
}

fn install(kind: SignalKind, name: &'static str) -> Option<Signal> {
    match signal(kind) {
        Ok(stream) => Some(stream),
        Err(error) => {
            tracing::error!(signal = name, %error, "cannot install signal handler");
            None
        }
    }
}

/// Waits for the next signal on either stream; a stream that could not be installed never
/// fires.
async fn next_signal(sigterm: &mut Option<Signal>, sigint: &mut Option<Signal>) -> &'static str {
    // `Signal::recv` is cancellation safe, so losing the race in `select!` drops nothing.
    tokio::select! {
        Some(()) = recv(sigterm) => "SIGTERM",
        Some(()) = recv(sigint) => "SIGINT",
        else => std::future::pending().await,
    }
}

async fn recv(stream: &mut Option<Signal>) -> Option<()> {
    match stream {
        Some(stream) => stream.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = shutdown_on_signals();
        assert!(!token.is_cancelled());
        // SAFETY: raising a signal to our own process; the handler installed above catches it.
        let rc = unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(rc, 0);
        tokio::time::timeout(std::time::Duration::from_secs(10), token.cancelled())
            .await
            .expect("token cancelled within 10 s of SIGTERM");
    }
}
