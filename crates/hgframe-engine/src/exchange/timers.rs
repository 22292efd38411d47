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

/// The clocks are deadlines kept as plain values: progress moves a deadline, which
/// costs a clock read. The one `Sleep` (a timer-wheel entry, whose every reset takes
/// the runtime's timer lock) is set only while the exchange waits, and when it wakes
/// before the deadline that moved meanwhile, it is set again. A small exchange that
/// never waits never touches the timer wheel.
pub(crate) struct Timers {
    idle: Option<Duration>,
    first_command: Option<Duration>,
    quiet: Option<Duration>,
    min_rate: Option<u64>,
    window: Duration,
    state: Wait,
    /// When the clock of `state` runs out, if one runs.
    deadline: Option<Instant>,
    /// When the rate window ends, while the peer owes input and a rate is set.
    window_end: Option<Instant>,
    /// Bytes received in the current rate window.
    window_bytes: u64,
    /// The wheel entry behind both deadlines, made when first waited on.
    sleep: Option<Pin<Box<Sleep>>>,
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
            deadline: None,
            window_end: None,
            window_bytes: 0,
            sleep: None,
        }
    }

    /// The exchange now waits for `state`; `owes_input`: the peer owes input. A change
    /// of state restarts the clock.
    pub(crate) fn set_state(&mut self, state: Wait, owes_input: bool) {
        if state != self.state {
            self.state = state;
            self.restart();
        }
        match (owes_input, self.window_end.is_some(), self.min_rate) {
            (true, false, Some(_)) => {
                self.window_bytes = 0;
                self.window_end = Some(Instant::now() + self.window);
            }
            (false, true, _) => self.window_end = None,
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
        self.deadline = limit.map(|limit| Instant::now() + limit);
    }

    /// Completes when a clock runs out.
    pub(crate) async fn expired(&mut self) -> Expired {
        loop {
            let next = match (self.deadline, self.window_end) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => std::future::pending().await,
            };
            let sleep = match &mut self.sleep {
                Some(sleep) => sleep,
                none => none.insert(Box::pin(tokio::time::sleep_until(next))),
            };
            // A wheel entry set later than the next deadline would wake too late; one set
            // earlier only wakes early, and is set again below.
            if sleep.deadline() > next {
                sleep.as_mut().reset(next);
            }
            sleep.as_mut().await;
            let now = Instant::now();
            if self.deadline.is_some_and(|d| d <= now) {
                self.deadline = None;
                return match self.state {
                    Wait::Peer | Wait::Work => Expired::Idle,
                    Wait::FirstCommand | Wait::Quiet => Expired::Quiet,
                };
            }
            if self.window_end.is_some_and(|w| w <= now) {
                let rate = u128::from(self.min_rate.unwrap_or(0));
                let needed = rate * self.window.as_millis() / 1000;
                if u128::from(self.window_bytes) < needed {
                    self.window_end = None;
                    return Expired::TooSlow;
                }
                // Fast enough: a new window starts.
                self.window_bytes = 0;
                self.window_end = Some(now + self.window);
            }
            // Woken before a deadline that moved on: wait for the next one.
            if let Some(sleep) = &mut self.sleep {
                let next = [self.deadline, self.window_end].into_iter().flatten().min();
                if let Some(next) = next {
                    sleep.as_mut().reset(next);
                }
            }
        }
    }
}
