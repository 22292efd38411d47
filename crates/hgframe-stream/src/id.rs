//! Who opens which stream ids: clients odd, servers even, and an allocator of own-parity
//! ids.

use hgframe_wire::StreamId;

/// One end of a connection. Each side opens only stream ids of its own parity: the
/// client odd ids, the server even ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The side that sends commands; opens odd stream ids.
    Client,
    /// The side that answers them; opens even stream ids.
    Server,
}

impl Side {
    /// The other end of the connection.
    pub fn peer(self) -> Self {
        match self {
            Self::Client => Self::Server,
            Self::Server => Self::Client,
        }
    }

    /// Whether this side opens `id` (odd ids for the client, even ids for the server).
    ///
    /// ```
    /// use hgframe_stream::Side;
    /// use hgframe_wire::StreamId;
    /// assert!(Side::Client.owns(StreamId(1)));
    /// assert!(Side::Server.owns(StreamId(2)));
    /// assert!(!Side::Server.owns(StreamId(1)));
    /// ```
    pub fn owns(self, id: StreamId) -> bool {
        id.is_client_initiated() == (self == Self::Client)
    }

    /// The side's name, as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Hands out stream ids of one side's parity, in order and wrapping around, skipping the
/// ids still in use.
///
/// The client starts at 1, the server at 2 (stream 0 comes after 254). There are 128
/// ids of each parity; [`StreamIdAllocator::allocate`] returns `None` when all are in
/// use. An id returns to the pool with [`StreamIdAllocator::release`], typically once its
/// stream has ended.
///
/// ```
/// use hgframe_stream::{Side, StreamIdAllocator};
/// use hgframe_wire::StreamId;
/// let mut ids = StreamIdAllocator::new(Side::Server);
/// assert_eq!(ids.allocate(), Some(StreamId(2)));
/// assert_eq!(ids.allocate(), Some(StreamId(4)));
/// ids.release(StreamId(2));
/// ```
#[derive(Debug, Clone)]
pub struct StreamIdAllocator {
    side: Side,
    next: u8,
    /// Bit `id` is set while stream `id` is in use.
    in_use: [u128; 2],
}

impl StreamIdAllocator {
    /// An allocator of `side`'s ids, none in use.
    pub fn new(side: Side) -> Self {
        Self {
            side,
            next: match side {
                Side::Client => 1,
                Side::Server => 2,
            },
            in_use: [0; 2],
        }
    }

    /// The side whose ids this allocator hands out.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The next free id of this side's parity, now marked in use; `None` when all 128
    /// are in use.
    pub fn allocate(&mut self) -> Option<StreamId> {
        for _ in 0..128 {
            let id = StreamId(self.next);
            self.next = self.next.wrapping_add(2);
            if !self.is_in_use(id) {
                self.set(id, true);
                return Some(id);
            }
        }
        None
    }

    /// Returns `id` to the pool.
    pub fn release(&mut self, id: StreamId) {
        self.set(id, false);
    }

    /// Whether `id` is in use.
    pub fn is_in_use(&self, id: StreamId) -> bool {
        let (word, bit) = Self::position(id);
        self.in_use.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Number of ids in use.
    pub fn in_use(&self) -> usize {
        self.in_use.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn set(&mut self, id: StreamId, used: bool) {
        let (word, bit) = Self::position(id);
        if let Some(w) = self.in_use.get_mut(word) {
            if used {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    fn position(id: StreamId) -> (usize, u128) {
        (usize::from(id.0 / 128), 1u128 << (id.0 % 128))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity() {
        for id in 0..=255u8 {
            let id = StreamId(id);
            assert_ne!(Side::Client.owns(id), Side::Server.owns(id));
            assert_eq!(Side::Client.owns(id), id.0 % 2 == 1);
        }
        assert_eq!(Side::Client.peer(), Side::Server);
        assert_eq!(Side::Server.peer(), Side::Client);
    }

    #[test]
    fn allocates_own_parity_wrapping_and_skipping_used_ids() {
        for side in [Side::Client, Side::Server] {
            let mut ids = StreamIdAllocator::new(side);
            let mut seen = Vec::new();
            while let Some(id) = ids.allocate() {
                assert!(side.owns(id));
                seen.push(id);
            }
            assert_eq!(seen.len(), 128);
            assert_eq!(ids.in_use(), 128);
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 128);
            // Free one in the middle: it is the only one handed out again.
            let freed = StreamId(if side == Side::Client { 77 } else { 78 });
            ids.release(freed);
            assert!(!ids.is_in_use(freed));
            assert_eq!(ids.allocate(), Some(freed));
            assert_eq!(ids.allocate(), None);
        }
    }

    #[test]
    fn server_starts_at_two_and_wraps_to_zero() {
        let mut ids = StreamIdAllocator::new(Side::Server);
        let first: Vec<u8> = (0..128)
            .filter_map(|_| ids.allocate())
            .map(|i| i.0)
            .collect();
        assert_eq!(first.first(), Some(&2));
        assert_eq!(first.last(), Some(&0));
        let mut client = StreamIdAllocator::new(Side::Client);
        assert_eq!(client.allocate(), Some(StreamId(1)));
    }
}
