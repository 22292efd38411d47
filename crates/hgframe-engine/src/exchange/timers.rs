//! The clocks of one exchange. Each runs only in the state it guards, and restarts only
//! when the peer makes progress (handlers at work do not keep a stalled peer's exchange
//! alive):
//!
//! | state | clock | when it runs out |
//! |---|---|---|
//! | the peer owes input, or output waits for it | `idle_timeout` | abort: [`Outcome::TimedOut`] |
//! | the peer owes input for a whole `rate_window` | `min_input_rate` | abort: [`Outcome::TooSlow`] |
//! | a connection before its first command | `first_command_timeout` | close it, as if the client half-closed |
//! | a connection with nothing under way | `connection_idle_timeout` | close it, as if the client half-closed |
//!
//! The exchange runs on its own task, so these hold whatever the transport polls (a
//! half-duplex HTTP exchange runs inside its request's service future until its response
//! starts: hyper polls that future until then, as nothing is written yet).
//!
//! [`Outcome::TimedOut`]: crate::Outcome::TimedOut
//! [`Outcome::TooSlow`]: crate::Outcome::TooSlow

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::config::EngineConfig;

/// What the exchange waits for, which decides the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Handlers are at work: no clock.
    Work,
    /// The peer owes input or has output waiting.
    Peer,
    /// A connection that has not sent a command yet.
    FirstCommand,
    /// A connection with nothing under way.
    Quiet,
}

/// A clock ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No progress from the peer for `idle_timeout`.
    Idle,
    /// The peer sent less than `min_input_rate` over a window.
    TooSlow,
    /// A connection stayed without a command (first or next) too long.
    Quiet,
}

pub(crate) struct Timers {
    idle: Option<Duration>,
    first_command: Option<Duration>,
    quiet: Option<Duration>,
    min_rate: Option<u64>,
    window: Duration,
    state: Wait,
    deadline: Pin<Box<Sleep>>,
    armed: bool,
    /// The rate window: when it ends, and the bytes received in it.
    window_end: Pin<Box<Sleep>>,
    window_armed: bool,
    window_bytes: u64,
}

impl Timers {
    pub(crate) fn new(config: &EngineConfig) -> Self {
        let quiet = config.connection_idle_timeout();
        Self {
            idle: config.idle_timeout(),
            first_command: config.first_command_timeout().or(quiet),
            quiet,
            min_rate: config.min_input_rate(),
            window: config.rate_window(),
            state: Wait::Work,
            deadline: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
            window_end: Box::pin(tokio::time::sleep(Duration::ZERO)),
            window_armed: false,
            window_bytes: 0,
        }
    }

    /// The exchange now waits for `state`; `owes_input`: the peer owes input. A change
    /// of state restarts the clock.
    pub(crate) fn set_state(&mut self, state: Wait, owes_input: bool) {
        if state != self.state {
            self.state = state;
            self.restart();
        }
        match (owes_input, self.window_armed, self.min_rate) {
            (true, false, Some(_)) => {
                self.window_armed = true;
                self.window_bytes = 0;
                self.window_end.as_mut().reset(Instant::now() + self.window);
            }
            (false, true, _) => self.window_armed = false,
            _ => {}
        }
    }

    /// The peer made progress (`bytes` of input, or output taken with 0).
    pub(crate) fn progress(&mut self, bytes: usize) {
        self.window_bytes = self.window_bytes.saturating_add(bytes as u64);
        if self.state == Wait::Peer {
            self.restart();
        }
    }

    /// A command arrived: a connection's quiet clocks restart.
    pub(crate) fn command(&mut self) {
        if matches!(self.state, Wait::FirstCommand | Wait::Quiet) {
            self.restart();
        }
    }

    fn restart(&mut self) {
        let limit = match self.state {
            Wait::Work => None,
            Wait::Peer => self.idle,
            Wait::FirstCommand => self.first_command,
            Wait::Quiet => self.quiet,
        };
        self.armed = limit.is_some();
        if let Some(limit) = limit {
            self.deadline.as_mut().reset(Instant::now() + limit);
        }
    }

    /// Completes when a clock runs out.
    pub(crate) async fn expired(&mut self) -> Expired {
        let Self {
            state,
            deadline,
            armed,
            window_end,
            window_armed,
            window_bytes,
            min_rate,
            window,
            ..
        } = self;
        loop {
            let window_ends = async {
                if *window_armed {
                    window_end.as_mut().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            let deadline_passes = async {
                if *armed {
                    deadline.as_mut().await;
                } else {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = deadline_passes => {
                    *armed = false;
                    return match state {
                        Wait::Peer | Wait::Work => Expired::Idle,
                        Wait::FirstCommand | Wait::Quiet => Expired::Quiet,
                    };
                }
                () = window_ends => {
                    let rate = u128::from(min_rate.unwrap_or(0));
                    let needed = rate * window.as_millis() / 1000;
                    if u128::from(*window_bytes) < needed {
                        *window_armed = false;
                        return Expired::TooSlow;
                    }
                    // Fast enough: a new window starts.
                    *window_bytes = 0;
                    window_end.as_mut().reset(Instant::now() + *window);
                }
            }
        }
    }
}
