//! The state of one request on the server, from its `command-name` frame to the
//! transmission of its last response frame.
//!
//! ```text
//!  command-name ──┬─ eos ───────────────────────────────────────────────┐
//!                 ├─ have-args ──> ReceivingArgs ── eoa ──┬─ no data ───┤
//!                 │                                       └─ have-data ─┐│
//!                 └─ have-data ─────────────────────────────────────────┤│
//!                                                                       ││
//!            Buffered mode: ReceivingData ── data eos ──────────────────┼┤ RunCommand
//!            Streaming mode: RunCommand ──> Streaming ── data eos ──┐   │v
//!                                                                   └─> Active
//!
//!  Streaming and Active carry the response's progress:
//!    Running ── last response frame queued ──> Finishing ── it is transmitted ──> Done
//!  Active + Done is removed: only then may the request id be used again.
//!  Streaming + Done (the command answered before its data ended) discards the rest of
//!  the data without buffering it, and is removed at data eos.
//! ```
//!
//! Bytes held by the receiving states are charged against the connection's budget
//! ([`crate::ServerConfig::max_buffered_data`]) before they are allocated.

use std::collections::BTreeMap;

use bytes::Bytes;
use hgframe_wire::payload::command_argument::ArgumentHead;
use hgframe_wire::{CommandArgumentFlags, CommandDataFlags, PayloadError, RequestId};

use crate::budget::Budget;
use crate::error::{Limit, ProtocolError};

/// Where a request is.
#[derive(Debug)]
pub(crate) enum RequestState {
    /// Argument frames are expected: `have-args` was set and `eoa` not seen yet.
    ReceivingArgs(Box<Pending>),
    /// Buffered mode: the arguments are complete and data frames are collected.
    ReceivingData(Box<Pending>),
    /// Streaming mode: the command was dispatched; its data frames still arrive.
    Streaming(Response),
    /// The command was dispatched and all its frames arrived.
    Active(Response),
}

impl RequestState {
    /// Whether frames of the request are still expected.
    pub(crate) fn is_receiving(&self) -> bool {
        !matches!(self, Self::Active(_))
    }

    /// Whether the command was dispatched and its response has not been transmitted.
    pub(crate) fn is_active(&self) -> bool {
        match self {
            Self::Streaming(r) | Self::Active(r) => *r != Response::Done,
            Self::ReceivingArgs(_) | Self::ReceivingData(_) => false,
        }
    }
}

/// Progress of a dispatched request's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Response {
    /// The application may still send response frames.
    Running,
    /// The last response frame is queued but not yet transmitted.
    Finishing,
    /// The last response frame was transmitted.
    Done,
}

/// A command whose frames are still arriving.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) name: Bytes,
    pub(crate) args: BTreeMap<Bytes, Bytes>,
    pub(crate) expecting_data: bool,
    /// An argument whose value spans frames.
    partial: Option<PartialArg>,
    /// Buffered command data; its capacity is what is charged.
    data: Vec<u8>,
    /// Bytes charged against the budget for this request.
    charged: usize,
}

#[derive(Debug)]
struct PartialArg {
    name: Bytes,
    /// Allocated at the announced length (charged up front), so it never grows.
    value: Vec<u8>,
    value_len: usize,
}

/// The limits that apply while a command is received.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArgLimits {
    pub(crate) max_args: usize,
    pub(crate) max_arg_len: usize,
}

/// What an argument frame did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgsProgress {
    /// More argument frames follow.
    More,
    /// It was the last frame of the last argument (`eoa`).
    Complete,
}

impl Pending {
    /// A command with this name (copied, and charged to `budget`).
    pub(crate) fn new(
        request_id: RequestId,
        name: &[u8],
        expecting_data: bool,
        budget: &mut Budget,
    ) -> Result<Self, ProtocolError> {
        charge(budget, request_id, name.len())?;
        Ok(Self {
            name: Bytes::copy_from_slice(name),
            args: BTreeMap::new(),
            expecting_data,
            partial: None,
            data: Vec::new(),
            charged: name.len(),
        })
    }

    /// Bytes charged for this request; give them back with [`Budget::release`] when the
    /// request is dispatched or dropped.
    pub(crate) fn charged(&self) -> usize {
        self.charged
    }

    /// Whether an argument value is half received.
    #[cfg(test)]
    pub(crate) fn has_partial_arg(&self) -> bool {
        self.partial.is_some()
    }

    /// Takes one `command-argument` frame.
    pub(crate) fn on_argument(
        &mut self,
        request_id: RequestId,
        flags: u8,
        payload: &Bytes,
        limits: ArgLimits,
        budget: &mut Budget,
    ) -> Result<ArgsProgress, ProtocolError> {
        let malformed = |reason| ProtocolError::MalformedArgument { request_id, reason };
        let Some(flags) = CommandArgumentFlags::from_bits(flags) else {
            return Err(malformed("undefined flags"));
        };
        let continuation = flags.contains(CommandArgumentFlags::CONTINUATION);
        let eoa = flags.contains(CommandArgumentFlags::EOA);
        if continuation && eoa {
            // eoa goes on the last frame of the last argument, which has no continuation.
            return Err(malformed("eoa on a frame with continuation"));
        }
        if let Some(partial) = &mut self.partial {
            // A following frame of a value: only value bytes.
            if payload.len() > partial.value_len - partial.value.len() {
                return Err(malformed("argument value longer than announced"));
            }
            // Capacity is value_len, so this never reallocates.
            partial.value.extend_from_slice(payload);
            let complete = partial.value.len() == partial.value_len;
            if continuation {
                if complete {
                    return Err(malformed("continuation flag after the whole value"));
                }
                return Ok(ArgsProgress::More);
            }
            if !complete {
                return Err(malformed("partial argument value"));
            }
            if let Some(PartialArg { name, value, .. }) = self.partial.take() {
                self.args.insert(name, Bytes::from(value));
            }
        } else {
            let head = ArgumentHead::parse(payload).map_err(|e| match e {
                PayloadError::Truncated {
                    what: "argument name",
                    ..
                } => malformed("partial argument name"),
                PayloadError::Truncated { .. } => malformed("partial argument header"),
                _ => malformed("partial argument value"),
            })?;
            let count = self.args.len() + 1;
            if count > limits.max_args {
                return Err(ProtocolError::Limit {
                    limit: Limit::ArgsPerCommand,
                    request_id: Some(request_id),
                    value: count,
                    max: limits.max_args,
                });
            }
            if head.value_len > limits.max_arg_len {
                return Err(ProtocolError::Limit {
                    limit: Limit::ArgLen,
                    request_id: Some(request_id),
                    value: head.value_len,
                    max: limits.max_arg_len,
                });
            }
            if self.args.contains_key(&head.name) {
                return Err(ProtocolError::DuplicateArgument {
                    request_id,
                    name: String::from_utf8_lossy(&head.name).into_owned(),
                });
            }
            let complete = head.is_complete();
            if complete && continuation {
                return Err(malformed("continuation flag after the whole value"));
            }
            if !complete && !continuation {
                return Err(malformed("partial argument value"));
            }
            // The announced length is charged now: the value never needs more.
            let cost = head.name.len() + head.value_len;
            charge(budget, request_id, cost)?;
            self.charged += cost;
            let name = Bytes::copy_from_slice(&head.name);
            if complete {
                self.args
                    .insert(name, Bytes::copy_from_slice(&head.value_part));
            } else {
                let mut value = Vec::with_capacity(head.value_len);
                value.extend_from_slice(&head.value_part);
                self.partial = Some(PartialArg {
                    name,
                    value,
                    value_len: head.value_len,
                });
                return Ok(ArgsProgress::More);
            }
        }
        Ok(if eoa {
            ArgsProgress::Complete
        } else {
            ArgsProgress::More
        })
    }

    /// Appends one `command-data` frame's payload; returns whether it was the last.
    ///
    /// The buffer grows geometrically, but never past what the budget has left, and
    /// its whole capacity is charged before it is allocated.
    pub(crate) fn on_data(
        &mut self,
        request_id: RequestId,
        flags: u8,
        payload: &[u8],
        budget: &mut Budget,
    ) -> Result<bool, ProtocolError> {
        let eos = data_flags(request_id, flags)?;
        let needed = self.data.len().saturating_add(payload.len());
        if needed > self.data.capacity() {
            let old = self.data.capacity();
            let room = old.saturating_add(budget.remaining());
            if needed > room {
                return Err(ProtocolError::Limit {
                    limit: Limit::BufferedData,
                    request_id: Some(request_id),
                    value: budget.used() - old + needed,
                    max: budget.used() + budget.remaining(),
                });
            }
            let new_cap = needed.max(old.saturating_mul(2)).min(room);
            charge(budget, request_id, new_cap - old)?;
            self.charged += new_cap - old;
            self.data.reserve_exact(new_cap - self.data.len());
        }
        self.data.extend_from_slice(payload);
        Ok(eos)
    }

    /// The buffered data, taken out (no copy).
    pub(crate) fn take_data(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.data))
    }
}

/// Checks a `command-data` frame's flags; returns whether it is the last frame.
pub(crate) fn data_flags(request_id: RequestId, flags: u8) -> Result<bool, ProtocolError> {
    let bad = ProtocolError::BadDataFlags { request_id, flags };
    let Some(f) = CommandDataFlags::from_bits(flags) else {
        return Err(bad);
    };
    if f.is_empty() {
        return Err(ProtocolError::DataWithoutFlags(request_id));
    }
    if f.is_all() {
        return Err(bad);
    }
    Ok(f == CommandDataFlags::EOS)
}

fn charge(budget: &mut Budget, request_id: RequestId, n: usize) -> Result<(), ProtocolError> {
    budget.charge(n).map_err(|e| ProtocolError::Limit {
        limit: Limit::BufferedData,
        request_id: Some(request_id),
        value: e.would_be,
        max: e.max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: RequestId = RequestId(1);
    const LIMITS: ArgLimits = ArgLimits {
        max_args: 4,
        max_arg_len: 100,
    };

    fn arg_payload(name: &[u8], value_len: u16, part: &[u8]) -> Bytes {
        let mut p = Vec::new();
        p.extend_from_slice(&(name.len() as u16).to_le_bytes());
        p.extend_from_slice(&value_len.to_le_bytes());
        p.extend_from_slice(name);
        p.extend_from_slice(part);
        Bytes::from(p)
    }

    fn reason(e: ProtocolError) -> &'static str {
        match e {
            ProtocolError::MalformedArgument { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn continuation_assembles_the_value_and_charges_it_up_front() {
        let mut budget = Budget::new(1000);
        let mut p = Pending::new(R, b"cmd", false, &mut budget).unwrap();
        let first = arg_payload(b"k", 6, b"ab");
        assert_eq!(
            p.on_argument(R, 0x01, &first, LIMITS, &mut budget).unwrap(),
            ArgsProgress::More
        );
        assert!(p.has_partial_arg());
        assert_eq!(budget.used(), 3 + 1 + 6);
        let mid = Bytes::from_static(b"cd");
        assert_eq!(
            p.on_argument(R, 0x01, &mid, LIMITS, &mut budget).unwrap(),
            ArgsProgress::More
        );
        let last = Bytes::from_static(b"ef");
        assert_eq!(
            p.on_argument(R, 0x02, &last, LIMITS, &mut budget).unwrap(),
            ArgsProgress::Complete
        );
        assert_eq!(&p.args[&Bytes::from_static(b"k")][..], b"abcdef");
        assert_eq!(p.charged(), budget.used());
    }

    #[test]
    fn malformed_argument_sequences() {
        let mut budget = Budget::new(1000);
        let p = || Pending::new(R, b"c", false, &mut Budget::new(1000)).unwrap();
        let whole = arg_payload(b"k", 1, b"v");
        let err = |p: &mut Pending, flags, payload: &Bytes, budget: &mut Budget| {
            reason(
                p.on_argument(R, flags, payload, LIMITS, budget)
                    .unwrap_err(),
            )
        };
        assert_eq!(err(&mut p(), 0x04, &whole, &mut budget), "undefined flags");
        assert_eq!(
            err(&mut p(), 0x03, &whole, &mut budget),
            "eoa on a frame with continuation"
        );
        assert_eq!(
            err(&mut p(), 0x01, &whole, &mut budget),
            "continuation flag after the whole value"
        );
        assert_eq!(
            err(&mut p(), 0x02, &arg_payload(b"k", 3, b"v"), &mut budget),
            "partial argument value"
        );
        assert_eq!(
            err(&mut p(), 0x02, &arg_payload(b"k", 0, b"vv"), &mut budget),
            "partial argument value"
        );
        assert_eq!(
            err(
                &mut p(),
                0,
                &Bytes::from_static(b"\x05\x00\x00\x00ab"),
                &mut budget
            ),
            "partial argument name"
        );
        assert_eq!(
            err(&mut p(), 0, &Bytes::from_static(b"\x05"), &mut budget),
            "partial argument header"
        );
        // A following frame overrunning the announced length.
        let mut q = p();
        q.on_argument(R, 0x01, &arg_payload(b"k", 3, b"a"), LIMITS, &mut budget)
            .unwrap();
        assert_eq!(
            err(&mut q, 0, &Bytes::from_static(b"bcd"), &mut budget),
            "argument value longer than announced"
        );
        // A following frame ending the argument too early.
        let mut q = p();
        q.on_argument(R, 0x01, &arg_payload(b"k", 3, b"a"), LIMITS, &mut budget)
            .unwrap();
        assert_eq!(
            err(&mut q, 0, &Bytes::from_static(b"b"), &mut budget),
            "partial argument value"
        );
    }

    #[test]
    fn argument_limits() {
        let mut budget = Budget::new(1000);
        let mut p = Pending::new(R, b"c", false, &mut budget).unwrap();
        for name in [b"a", b"b", b"c", b"d"] {
            p.on_argument(R, 0, &arg_payload(name, 0, b""), LIMITS, &mut budget)
                .unwrap();
        }
        assert!(matches!(
            p.on_argument(R, 0, &arg_payload(b"e", 0, b""), LIMITS, &mut budget),
            Err(ProtocolError::Limit {
                limit: Limit::ArgsPerCommand,
                value: 5,
                max: 4,
                ..
            })
        ));
        let mut p = Pending::new(R, b"c", false, &mut budget).unwrap();
        assert!(matches!(
            p.on_argument(R, 0x01, &arg_payload(b"e", 101, b""), LIMITS, &mut budget),
            Err(ProtocolError::Limit {
                limit: Limit::ArgLen,
                value: 101,
                max: 100,
                ..
            })
        ));
        assert!(matches!(
            p.on_argument(R, 0, &arg_payload(b"a", 0, b""), LIMITS, &mut budget)
                .and_then(|_| p.on_argument(R, 0, &arg_payload(b"a", 0, b""), LIMITS, &mut budget)),
            Err(ProtocolError::DuplicateArgument { .. })
        ));
        // The budget is checked on the announced length, before anything is stored.
        let mut small = Budget::new(10);
        let mut p = Pending::new(R, b"c", false, &mut small).unwrap();
        let used = small.used();
        assert!(matches!(
            p.on_argument(R, 0x01, &arg_payload(b"k", 50, b"x"), LIMITS, &mut small),
            Err(ProtocolError::Limit {
                limit: Limit::BufferedData,
                ..
            })
        ));
        assert_eq!(small.used(), used);
    }

    #[test]
    fn data_capacity_never_exceeds_the_budget() {
        let mut budget = Budget::new(1000);
        let mut p = Pending::new(R, b"", true, &mut budget).unwrap();
        let chunk = [7u8; 300];
        for _ in 0..3 {
            assert!(!p.on_data(R, 0x01, &chunk, &mut budget).unwrap());
            assert!(p.data.capacity() <= 1000);
            assert_eq!(budget.used(), p.data.capacity());
        }
        let err = p.on_data(R, 0x01, &chunk, &mut budget).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Limit {
                limit: Limit::BufferedData,
                value: 1200,
                max: 1000,
                ..
            }
        ));
        assert!(p.on_data(R, 0x02, &chunk[..100], &mut budget).unwrap());
        assert_eq!(p.take_data().len(), 1000);
    }

    #[test]
    fn data_flag_rules() {
        assert!(!data_flags(R, 0x01).unwrap());
        assert!(data_flags(R, 0x02).unwrap());
        assert!(matches!(
            data_flags(R, 0),
            Err(ProtocolError::DataWithoutFlags(R))
        ));
        assert!(matches!(
            data_flags(R, 0x03),
            Err(ProtocolError::BadDataFlags { .. })
        ));
        assert!(matches!(
            data_flags(R, 0x08),
            Err(ProtocolError::BadDataFlags { .. })
        ));
    }
}
