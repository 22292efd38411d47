//! The response cache: compressed answers of read-only commands, kept to be sent again
//! as they are, with no compression work (Mercurial's last server had one).
//!
//! An answer is found by its key (the command, its argument, and the response's
//! encoding: profile, level, flush length) and is used only while its validator still
//! matches (the file's size, modification and change times, device and inode), so a
//! changed file is never answered from the cache. The cache is bounded in bytes: the
//! least recently used answers are evicted to make room, and an answer larger than the
//! whole cache is not kept.
//!
//! Timestamps are coarse: a file changed twice within one tick of the clock keeps its
//! times. So a file is cached only once it has settled, when its last change is at least
//! [`CacheLimits::settle_time`] old (git's "racily clean" files); any later change then
//! gets later times.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hgframe_reactor::ResponseEncoding;

/// The default of [`CacheLimits::max_bytes`]: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// The default of [`CacheLimits::max_entry_bytes`]: 8 MiB.
pub const DEFAULT_CACHE_ENTRY_BYTES: u64 = 8 << 20;

/// The default of [`CacheLimits::settle_time`]: 2 seconds (the coarsest timestamps in
/// common use, FAT's, tick every 2 seconds).
pub const DEFAULT_SETTLE_TIME: Duration = Duration::from_secs(2);

/// What an answer costs besides its compressed bytes (its key, its bookkeeping), so
/// that many tiny answers cannot hold much more memory than the bound says.
const ENTRY_OVERHEAD: usize = 256;

/// The limits of a response cache ([`super::FileCommands::set_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most bytes the cache holds: compressed answers, plus a small overhead for each
    /// (default [`DEFAULT_CACHE_BYTES`]). 0 disables the cache.
    pub max_bytes: u64,
    /// The largest file cached, in raw bytes (default [`DEFAULT_CACHE_ENTRY_BYTES`]);
    /// larger files are sent as without a cache. At least 1 and at most `max_bytes`
    /// when the cache is enabled. It also bounds what one answer being cached holds.
    pub max_entry_bytes: u64,
    /// A file whose last change is more recent than this is not cached (default
    /// [`DEFAULT_SETTLE_TIME`]); must be at least the filesystem's timestamp tick, or a
    /// file changed twice within one tick could be answered stale.
    pub settle_time: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_CACHE_BYTES,
            max_entry_bytes: DEFAULT_CACHE_ENTRY_BYTES,
            settle_time: DEFAULT_SETTLE_TIME,
        }
    }
}

impl CacheLimits {
    /// No cache.
    pub fn disabled() -> Self {
        Self {
            max_bytes: 0,
            ..Self::default()
        }
    }

    /// Whether these limits enable a cache.
    pub fn is_enabled(&self) -> bool {
        self.max_bytes > 0
    }

    /// Why these limits cannot work, if they cannot: an entry limit of 0 or over the
    /// cache's size, or a size this machine cannot address.
    pub fn check(&self) -> Result<(), String> {
        if !self.is_enabled() {
            return Ok(());
        }
        if usize::try_from(self.max_bytes).is_err() {
            return Err(format!(
                "a cache of {} bytes is more than this machine can address",
                self.max_bytes
            ));
        }
        if self.max_entry_bytes == 0 {
            return Err("the largest file cached must be at least 1 byte".to_owned());
        }
        if self.max_entry_bytes > self.max_bytes {
            return Err(format!(
                "the largest file cached ({} bytes) is larger than the cache ({} bytes)",
                self.max_entry_bytes, self.max_bytes
            ));
        }
        Ok(())
    }
}

/// Counters of a response cache, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answers sent from the cache.
    pub hits: u64,
    /// Look-ups that found nothing valid.
    pub misses: u64,
    /// Answers stored.
    pub stores: u64,
    /// Answers evicted to make room for others.
    pub evictions: u64,
    /// Answers held now.
    pub entries: usize,
    /// Bytes held now, overhead included: never more than [`CacheLimits::max_bytes`].
    pub bytes: usize,
}

/// What identifies a cached answer, besides its validator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    command: &'static str,
    argument: String,
    profile: String,
    level: i32,
    flush: usize,
}

impl CacheKey {
    /// The answer of `command` to `argument`, in `encoding`.
    pub(crate) fn new(command: &'static str, argument: &str, encoding: &ResponseEncoding) -> Self {
        Self {
            command,
            argument: argument.to_owned(),
            profile: encoding.profile_name().to_owned(),
            level: encoding.level(),
            flush: encoding.max_flush_raw_len(),
        }
    }
}

/// What tells whether a file changed: its size, its modification and change times, and
/// (on Unix) its device and inode, so a file replaced by another (`put` renames a new
/// file over the old) differs even with the same size and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validator {
    len: u64,
    modified: Option<SystemTime>,
    /// Seconds and nanoseconds of the last change of the file or its metadata, which
    /// no one can set back (Unix only).
    changed: Option<(i64, i64)>,
    device: u64,
    inode: u64,
}

impl Validator {
    /// The validator of a file from its metadata.
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        let (changed, device, inode) = unix_ids(meta);
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            changed,
            device,
            inode,
        }
    }

    /// The file's size.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file's last change is at least `settle` before `now`, so that a
    /// later change would show in its times. Unknown times never settle.
    pub(crate) fn is_settled(&self, now: SystemTime, settle: Duration) -> bool {
        let Some(modified) = self.modified else {
            return false;
        };
        let changed = match self.changed {
            Some((secs, nanos)) => {
                let Ok(secs) = u64::try_from(secs) else {
                    return false;
                };
                let nanos = u32::try_from(nanos).unwrap_or(0);
                SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
            }
            None => modified,
        };
        let last = changed.max(modified);
        now.duration_since(last).is_ok_and(|age| age >= settle)
    }
}

#[cfg(unix)]
fn unix_ids(meta: &std::fs::Metadata) -> (Option<(i64, i64)>, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (
        Some((meta.ctime(), meta.ctime_nsec())),
        meta.dev(),
        meta.ino(),
    )
}

#[cfg(not(unix))]
fn unix_ids(_meta: &std::fs::Metadata) -> (Option<(i64, i64)>, u64, u64) {
    (None, 0, 0)
}

/// One piece of a cached answer: whole compressed units (for zstd, one zstd frame)
/// and the raw bytes they decode to.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub(crate) compressed: Bytes,
    pub(crate) raw_len: u64,
}

/// A cached answer, in the pieces it is sent in.
pub(crate) type Answer = Arc<[Piece]>;

/// The cache: a map of answers and their order of use, behind one lock held only for
/// look-ups and stores (never while compressing or sending).
#[derive(Debug)]
pub(crate) struct ResponseCache {
    limits: CacheLimits,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<CacheKey, Entry>,
    /// Keys by their last use, oldest first.
    order: BTreeMap<u64, CacheKey>,
    tick: u64,
    stats: CacheStats,
    /// Whether each profile met so far can take pre-compressed data.
    precompressible: HashMap<String, bool>,
}

#[derive(Debug)]
struct Entry {
    validator: Validator,
    answer: Answer,
    cost: usize,
    used: u64,
}

impl ResponseCache {
    /// A cache with these limits; `None` when they disable it. The limits must have
    /// passed [`CacheLimits::check`].
    pub(crate) fn new(limits: CacheLimits) -> Option<Self> {
        if !limits.is_enabled() {
            return None;
        }
        Some(Self {
            limits,
            max_bytes: usize::try_from(limits.max_bytes).unwrap_or(usize::MAX),
            inner: Mutex::new(Inner::default()),
        })
    }

    pub(crate) fn limits(&self) -> &CacheLimits {
        &self.limits
    }

    /// The lock; a panic elsewhere while it was held leaves consistent data (every
    /// change below is complete before anything can panic), so it is used on.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The answer stored for `key` if it was stored with `validator` (a hit); otherwise
    /// a miss, and an answer stored with another validator is dropped: its file changed.
    pub(crate) fn get(&self, key: &CacheKey, validator: &Validator) -> Option<Answer> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let Some(entry) = inner.entries.get_mut(key) else {
            inner.stats.misses += 1;
            return None;
        };
        if entry.validator != *validator {
            inner.stats.misses += 1;
            inner.remove(key);
            return None;
        }
        let old = std::mem::replace(&mut entry.used, tick);
        let answer = Arc::clone(&entry.answer);
        inner.order.remove(&old);
        inner.order.insert(tick, key.clone());
        inner.stats.hits += 1;
        Some(answer)
    }

    /// Stores `answer` for `key` and `validator`, replacing what was there (two misses
    /// of the same answer at once both store it; either is right), evicting the least
    /// recently used answers until it fits. An answer larger than the whole cache is
    /// not stored.
    pub(crate) fn put(&self, key: CacheKey, validator: Validator, answer: Answer) {
        let cost = answer
            .iter()
            .map(|p| p.compressed.len())
            .sum::<usize>()
            .saturating_add(ENTRY_OVERHEAD + key.argument.len());
        if cost > self.max_bytes {
            return;
        }
        let mut inner = self.lock();
        inner.remove(&key);
        while inner.stats.bytes + cost > self.max_bytes {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            if let Some(entry) = inner.entries.remove(&oldest) {
                inner.stats.bytes -= entry.cost;
                inner.stats.evictions += 1;
            }
        }
        inner.tick += 1;
        let used = inner.tick;
        inner.order.insert(used, key.clone());
        inner.entries.insert(
            key,
            Entry {
                validator,
                answer,
                cost,
                used,
            },
        );
        inner.stats.bytes += cost;
        inner.stats.stores += 1;
    }

    /// The counters.
    pub(crate) fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.entries.len(),
            ..inner.stats
        }
    }

    /// Whether `encoding`'s profile can take pre-compressed data (`deflate` cannot),
    /// found once per profile by compressing a few bytes with it.
    pub(crate) fn can_precompress(&self, encoding: &ResponseEncoding) -> bool {
        let name = encoding.profile_name();
        if let Some(known) = self.lock().precompressible.get(name) {
            return *known;
        }
        let works = probe(encoding);
        self.lock().precompressible.insert(name.to_owned(), works);
        works
    }
}

impl Inner {
    fn remove(&mut self, key: &CacheKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.used);
            self.stats.bytes -= entry.cost;
        }
    }
}

/// Compresses a few bytes as the cache would, and asks the profile to take them.
fn probe(encoding: &ResponseEncoding) -> bool {
    let Ok(mut encoder) = encoding.encoder() else {
        return false;
    };
    let mut out = Vec::new();
    encoder.encode_flush(b"hgframe", &mut out).is_ok()
        && encoder.end_unit(&mut out).is_ok()
        && encoding.profile().check_precompressed(&out).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> CacheKey {
        CacheKey {
            command: "cat",
            argument: name.to_owned(),
            profile: "zstd-8mb".to_owned(),
            level: 3,
            flush: 32_363,
        }
    }

    fn validator(len: u64) -> Validator {
        Validator {
            len,
            modified: Some(SystemTime::UNIX_EPOCH),
            changed: Some((0, 0)),
            device: 1,
            inode: 1,
        }
    }

    fn answer(len: usize) -> Answer {
        Arc::from(vec![Piece {
            compressed: Bytes::from(vec![0u8; len]),
            raw_len: len as u64,
        }])
    }

    fn cache(max_bytes: u64) -> ResponseCache {
        ResponseCache::new(CacheLimits {
            max_bytes,
            max_entry_bytes: max_bytes,
            settle_time: Duration::ZERO,
        })
        .unwrap()
    }

    #[test]
    fn the_least_recently_used_answers_make_room_and_the_bound_holds() {
        let c = cache(10_000);
        for name in ["a", "b", "c"] {
            c.put(key(name), validator(1), answer(3000));
        }
        assert_eq!(c.stats().entries, 3);
        // `a` is used, so `b` is the oldest when `d` needs room.
        assert!(c.get(&key("a"), &validator(1)).is_some());
        c.put(key("d"), validator(1), answer(3000));
        let stats = c.stats();
        assert_eq!((stats.entries, stats.evictions), (3, 1), "{stats:?}");
        assert!(stats.bytes <= 10_000, "{stats:?}");
        assert!(c.get(&key("b"), &validator(1)).is_none());
        assert!(c.get(&key("a"), &validator(1)).is_some());
        assert!(c.get(&key("c"), &validator(1)).is_some());
        // Many more: never over the bound.
        for i in 0..100 {
            c.put(key(&i.to_string()), validator(1), answer(100 + i * 37));
            assert!(c.stats().bytes <= 10_000, "{:?}", c.stats());
        }
        // Larger than the whole cache: not stored, nothing evicted for it.
        let before = c.stats();
        c.put(key("huge"), validator(1), answer(10_000));
        assert!(c.get(&key("huge"), &validator(1)).is_none());
        assert_eq!(c.stats().entries, before.entries);
    }

    #[test]
    fn a_changed_validator_misses_and_drops_the_answer() {
        let c = cache(1 << 20);
        c.put(key("a"), validator(5), answer(10));
        assert!(c.get(&key("a"), &validator(6)).is_none());
        assert_eq!(c.stats().entries, 0, "the stale answer is gone");
        assert!(c.get(&key("a"), &validator(5)).is_none());
        c.put(key("a"), validator(5), answer(10));
        let moved = Validator {
            inode: 2,
            ..validator(5)
        };
        assert!(
            c.get(&key("a"), &moved).is_none(),
            "another file, same size"
        );
        let stats = c.stats();
        assert_eq!((stats.hits, stats.misses, stats.bytes), (0, 3, 0));
    }

    #[test]
    fn limits_are_checked() {
        assert!(CacheLimits::default().check().is_ok());
        assert!(CacheLimits::disabled().check().is_ok());
        let bad = CacheLimits {
            max_entry_bytes: 0,
            ..CacheLimits::default()
        };
        assert!(bad.check().is_err());
        let bad = CacheLimits {
            max_bytes: 100,
            max_entry_bytes: 101,
            ..CacheLimits::default()
        };
        assert!(bad.check().unwrap_err().contains("larger than the cache"));
        assert!(ResponseCache::new(CacheLimits::disabled()).is_none());
    }

    #[test]
    fn only_settled_files_are_cached() {
        let at = |secs| Validator {
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
            changed: Some((i64::try_from(secs).unwrap(), 0)),
            ..validator(1)
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert!(at(97).is_settled(now, Duration::from_secs(2)));
        assert!(!at(99).is_settled(now, Duration::from_secs(2)));
        assert!(!at(101).is_settled(now, Duration::ZERO), "from the future");
        // A modification time set back does not hide a recent change.
        let set_back = Validator {
            modified: Some(SystemTime::UNIX_EPOCH),
            ..at(99)
        };
        assert!(!set_back.is_settled(now, Duration::from_secs(2)));
    }
}
