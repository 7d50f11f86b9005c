//! Run-time settings of the strategy servers that labs turn and flags set: the TTL, a
//! simulated slow query, padding to fill Redis fast, and every remedy.
//!
//! Every knob is one line of the `knobs!` table below: its `Settings` field, type,
//! default, documented range, flag, lab setter(s) and one-line doc. Everything else is
//! derived from that line: the `Settings` struct and its defaults, the range check
//! (written once, in `Knob::check`, which the flags and the lab setters both call), the
//! `serve`/`run` flags (`cli::KnobArgs`), the setters and their `cachelab api` docs
//! (`lab/api/server.rs`), and the README's knob table (a test here keeps it in step).
//!
//! A value outside its range is refused with a message naming the range: a TTL of 10^16 s
//! would make Redis refuse every SET, a lock TTL of 10^9 ms would let a forged lock hang
//! a read for days.
//!
//! Readers take a copy of `Settings`, so a request sees one consistent set even while a
//! lab turns them; the value is swapped whole (arc-swap), so reading it on every request
//! takes no lock and writes no shared memory.

mod knob;

use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;

pub use knob::{Flag, Input, Kind, KnobType, Range, Refused, Setter, Unit, Value};
use knob::{DAY_MS, MINUTE_MS, SECOND_MS, YEAR_MS};

/// One knob of `Settings`.
pub type Knob = knob::Knob<Settings>;

/// The knob whose `Settings` field is `field`.
pub fn find(field: &str) -> Option<&'static Knob> {
    KNOBS.iter().find(|k| k.field == field)
}

/// Declares a knob enum whose values labs and flags name as strings.
macro_rules! named_modes {
    ($(#[$meta:meta])* $enum:ident { $($(#[$vmeta:meta])* $variant:ident => $name:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $enum {
            $($(#[$vmeta])* $variant,)*
        }

        impl $enum {
            /// The names a lab or a flag may use.
            pub const NAMES: &'static [&'static str] = &[$($name,)*];

            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            pub fn parse(name: &str) -> Result<Self, String> {
                match name {
                    $($name => Ok($enum::$variant),)*
                    other => Err(format!(
                        "unknown {} {other:?}; known: {}",
                        stringify!($enum).to_lowercase(),
                        Self::NAMES.join(", ")
                    )),
                }
            }
        }

        impl KnobType for $enum {
            fn to_value(self) -> Value {
                Value::Name(self.name())
            }

            fn from_value(value: Value) -> Option<Self> {
                match value {
                    Value::Name(name) => Self::parse(name).ok(),
                    Value::Whole(_) | Value::Real(_) | Value::Switch(_) => None,
                }
            }
        }
    };
}

named_modes! {
    /// How concurrent misses on one key reach Postgres.
    Protection {
        /// Every miss reads Postgres (what the seed apps did).
        None => "none",
        /// One read per key at a time within this process; the others wait for it.
        Singleflight => "singleflight",
        /// One read per key across processes, through a Redis lock; the others poll.
        Lock => "lock",
        /// Probabilistic early recomputation (XFetch) before the entry expires.
        Xfetch => "xfetch",
        /// Stale-while-revalidate: a stale entry is served while one refresh runs.
        Swr => "swr",
    }
}

named_modes! {
    /// How cache-aside writes invalidate the cached row.
    Invalidation {
        /// DEL the key after the Postgres write.
        Delete => "delete",
        /// DEL, and DEL again `double_delete_ms` later.
        DoubleDelete => "double-delete",
        /// memcache-style leases: a write revokes the leases of reads in flight.
        Lease => "lease",
    }
}

named_modes! {
    /// Whether a cache write or fill may replace a newer row (every strategy).
    WriteGuard {
        /// Plain SETs: two racing writers (or a slow read and a write) can leave the
        /// older row cached until the TTL.
        None => "none",
        /// A cache write or fill applies only if its row is newer than the cached one, by
        /// `updated_at`, a stamp Postgres takes under the row lock with every write; a
        /// cache-aside write leaves a stamped marker instead of deleting, so a slow read
        /// cannot put an older row back.
        Version => "version",
    }
}

named_modes! {
    /// How each server's in-process near cache (L1, in front of Redis) learns of writes.
    NearMode {
        /// No L1: every read goes to Redis.
        Off => "off",
        /// L1 entries live `near_ttl_ms` and are never invalidated.
        Ttl => "ttl",
        /// Redis client-side caching, default mode: an invalidation for every key this
        /// server read, when anyone writes it.
        Tracking => "tracking",
        /// Redis client-side caching, `BCAST PREFIX user:`: every write to `user:*`
        /// invalidates every server.
        Bcast => "bcast",
    }
}

/// The longest wait or delay a knob may ask for (a slow query, a lock, a lease, a flush
/// interval): longer would let one lab setting (a forged lock, a slow query) hold a
/// request past any sensible timeout.
const MAX_WAIT_MS: u64 = MINUTE_MS;
/// The longest a tombstone or a stale entry may be kept past its TTL: a day.
const MAX_LINGER_SECS: u64 = DAY_MS / SECOND_MS;
/// The longest TTL: a year. Redis refuses a SET whose expiry overflows its clock, so an
/// unbounded TTL would make every fill fail.
const MAX_TTL_MS: u64 = YEAR_MS;
/// The most padding a cached value may carry: 16 MiB, well under Redis' 512 MB value cap
/// and still enough to fill any lab's maxmemory in a few keys.
const MAX_PADDING: u64 = 16 * 1024 * 1024;

/// Fills `unit_or!(field_unit)` or `unit_or!(field_unit, given)`: a flag or a setter
/// takes the field's own unit unless it names another.
macro_rules! unit_or {
    ($field:ident) => {
        Unit::$field
    };
    ($field:ident, $given:ident) => {
        Unit::$given
    };
}

/// Declares `Settings` (one field per knob), its defaults, and `KNOBS` (each knob's
/// range, flag, setters and doc) from one table: one entry per knob.
///
/// An entry reads: `/// doc`, then `field: type = default, unit range, flag "long"
/// [in unit], set setter(arg) [in unit], ...;`.
macro_rules! knobs {
    ($(
        #[doc = $doc:literal]
        $field:ident: $ty:ty = $default:expr, $unit:ident $range:expr,
            flag $flag:literal $(in $flag_unit:ident)?,
            set $($setter:ident($arg:ident) $(in $set_unit:ident)?),+;
    )*) => {
        /// Every knob's value at one moment.
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub struct Settings {
            $(#[doc = $doc] pub $field: $ty,)*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        /// Every knob, in the order `--help`, `cachelab api` and the README list them.
        pub static KNOBS: &[Knob] = &[$(
            Knob {
                field: stringify!($field),
                doc: $doc,
                unit: Unit::$unit,
                range: $range,
                flag: Flag { long: $flag, unit: unit_or!($unit $(, $flag_unit)?) },
                setters: &[$(Setter {
                    name: stringify!($setter),
                    arg: stringify!($arg),
                    unit: unit_or!($unit $(, $set_unit)?),
                },)+],
                read: |s| KnobType::to_value(s.$field),
                write: |s, value| match <$ty as KnobType>::from_value(value) {
                    Some(v) => {
                        s.$field = v;
                        true
                    }
                    None => false,
                },
            },
        )*];
    };
}

knobs! {
    /// How long a cache entry lives: every fill and cache write sets it (SET PX)
    ttl_ms: u64 = 60_000, Ms Range::whole(1, MAX_TTL_MS),
        flag "ttl" in Secs, set set_ttl(secs) in Secs, set_ttl_ms(ms);
    /// A slow query: each Postgres read holds its connection this much longer and answers with the row as it was when it began
    db_delay_ms: u64 = 0, Ms Range::whole(0, MAX_WAIT_MS),
        flag "db-delay-ms", set set_db_delay(ms);
    /// Filler (trailing JSON whitespace) appended to every cached value, to fill Redis fast
    padding: usize = 0, Bytes Range::whole(0, MAX_PADDING),
        flag "padding", set set_padding(bytes);
    /// How concurrent misses on one key reach Postgres (every strategy)
    protection: Protection = Protection::None, Mode Range::Names(Protection::NAMES),
        flag "protection", set set_protection(mode);
    /// XFetch's β: above 1 recomputes earlier, below 1 later
    xfetch_beta: f64 = 1.0, Number Range::open_closed(0.0, 100.0),
        flag "xfetch-beta", set set_xfetch_beta(beta);
    /// Under swr, how long past its TTL an entry may still be served stale while one refresh runs
    stale_secs: u64 = 30, Secs Range::whole(0, MAX_LINGER_SECS),
        flag "stale-secs", set set_stale_secs(secs);
    /// Each cache write uses TTL × (1 ± u), u uniform in [0, percent/100]: the avalanche remedy (0: off)
    ttl_jitter_percent: f64 = 0.0, Percent Range::closed(0.0, 100.0),
        flag "ttl-jitter", set set_ttl_jitter(percent);
    /// A 404 is cached as a tombstone this long (0: off): the penetration remedy; a tombstone hit is a 404 with X-Cache HIT
    negative_ttl_secs: u64 = 0, Secs Range::whole(0, MAX_LINGER_SECS),
        flag "negative-ttl", set set_negative_ttl(secs);
    /// How cache-aside writes invalidate the cached row
    invalidation: Invalidation = Invalidation::Delete, Mode Range::Names(Invalidation::NAMES),
        flag "invalidation", set set_invalidation(mode);
    /// Whether a cache write or fill may replace a newer cached row: "none", or "version" (only a newer row, by its updated_at stamp)
    write_guard: WriteGuard = WriteGuard::None, Mode Range::Names(WriteGuard::NAMES),
        flag "write-guard", set set_write_guard(mode);
    /// Each server's in-process near cache (L1) in front of Redis: "off", "ttl" (entries live near_ttl_ms, never invalidated), "tracking" (Redis client-side caching drops an entry when anyone writes its key), "bcast" (every write to user:* drops it everywhere)
    near_cache: NearMode = NearMode::Off, Mode Range::Names(NearMode::NAMES),
        flag "near-cache", set set_near_cache(mode);
    /// The longest an L1 entry lives in any near-cache mode: also the bound on staleness after a lost invalidation
    near_ttl_ms: u64 = 10_000, Ms Range::whole(1, DAY_MS),
        flag "near-ttl-ms", set set_near_ttl(ms);
    /// L1 entries per server at most (evicted by S3-FIFO when full)
    near_capacity: u64 = 10_000, Count Range::whole(1, 10_000_000),
        flag "near-capacity", set set_near_capacity(n);
    /// The fill-vs-invalidation guard: a row is put in L1 only if no invalidation of its key arrived since its read was sent (off shows the race a client library without it has)
    near_guard: bool = true, Switch Range::Switch,
        flag "near-guard", set set_near_guard(on);
    /// How often the near cache's invalidation link is pinged; unanswered within it, L1 is flushed and bypassed until tracking is back
    near_heartbeat_ms: u64 = 500, Ms Range::whole(10, MAX_WAIT_MS),
        flag "near-heartbeat-ms", set set_near_heartbeat(ms);
    /// Under double-delete, the delay of the second DEL
    double_delete_ms: u64 = 500, Ms Range::whole(0, MAX_WAIT_MS),
        flag "double-delete-ms", set set_double_delete_ms(ms);
    /// Write-behind's batch interval: how often the flusher applies the queue to Postgres
    flush_interval_ms: u64 = 100, Ms Range::whole(1, MAX_WAIT_MS),
        flag "flush-interval-ms", set set_flush_interval(ms);
    /// Write-behind's largest flush batch, so a long outage never builds one too big to commit
    wb_batch_max: u64 = 1000, Count Range::whole(1, 100_000),
        flag "wb-batch-max", set set_wb_batch_max(n);
    /// Refresh-ahead refreshes a hit whose remaining TTL is below this share of the TTL
    refresh_ratio: f64 = 0.25, Number Range::open(0.0, 1.0),
        flag "refresh-ratio", set set_refresh_ratio(ratio);
    /// Under lock, how long a holder may hold a key's lock; waiters read Postgres themselves after it
    lock_ttl_ms: u64 = 3000, Ms Range::whole(1, MAX_WAIT_MS),
        flag "lock-ttl-ms", set set_lock_ttl(ms);
    /// Under lease, how long a miss's lease stays valid for the fill that follows it
    lease_ttl_ms: u64 = 5000, Ms Range::whole(1, MAX_WAIT_MS),
        flag "lease-ttl-ms", set set_lease_ttl(ms);
}

impl Settings {
    /// The defaults, with `ttl_secs` as the TTL (what `loopback` servers start with).
    pub fn with_ttl(ttl_secs: u64) -> Self {
        Self {
            ttl_ms: ttl_secs.saturating_mul(SECOND_MS),
            ..Self::default()
        }
    }

    pub fn db_delay(&self) -> Duration {
        Duration::from_millis(self.db_delay_ms)
    }
}

/// The knobs shared by every strategy server of one `Services`.
pub struct Knobs {
    defaults: Settings,
    current: ArcSwap<Settings>,
}

impl Knobs {
    /// Knobs that start at, and reset to, `defaults`.
    pub fn new(defaults: Settings) -> Self {
        Self {
            defaults,
            current: ArcSwap::from_pointee(defaults),
        }
    }

    /// A copy of every knob now.
    pub fn get(&self) -> Settings {
        **self.current.load()
    }

    /// Change knobs, e.g. `knobs.update(|k| k.ttl_ms = 5000)`.
    pub fn update(&self, change: impl Fn(&mut Settings)) {
        self.current.rcu(|now| {
            let mut next = **now;
            change(&mut next);
            Arc::new(next)
        });
    }

    /// Set one knob to a value its `Knob::check` returned.
    pub fn set(&self, knob: &Knob, value: Value) -> Result<(), Refused> {
        // Tried on a copy first, so a value of the wrong kind is an error, not a no-op.
        knob.put(&mut self.get(), value)?;
        self.update(|k| {
            let _ = knob.put(k, value);
        });
        Ok(())
    }

    /// Back to the defaults (a lab's fresh start).
    pub fn reset(&self) {
        self.current.store(Arc::new(self.defaults));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The input a flag or setter in the field's own unit would give for `value`.
    fn input_of(value: Value) -> Input<'static> {
        match value {
            Value::Whole(n) => Input::Whole(n as i64),
            Value::Real(x) => Input::Real(x),
            Value::Name(name) => Input::Name(name),
            Value::Switch(on) => Input::Switch(on),
        }
    }

    #[test]
    fn modes_parse_their_names_and_refuse_others_listing_the_known_ones() {
        for name in Protection::NAMES {
            assert_eq!(Protection::parse(name).unwrap().name(), *name);
        }
        assert_eq!(
            Invalidation::parse("double-delete").unwrap(),
            Invalidation::DoubleDelete
        );
        let err = Protection::parse("mutex").unwrap_err();
        assert!(err.contains("singleflight, lock"), "{err}");
    }

    #[test]
    fn reset_restores_the_defaults_given_at_start() {
        let knobs = Knobs::new(Settings::with_ttl(7));
        knobs.update(|k| {
            k.ttl_ms = 1000;
            k.protection = Protection::Lock;
        });
        assert_eq!(knobs.get().protection, Protection::Lock);
        knobs.reset();
        assert_eq!(knobs.get(), Settings::with_ttl(7));
        assert_eq!(knobs.get().ttl_ms, 7000);
    }

    #[test]
    fn every_knob_has_a_one_line_doc_a_flag_a_setter_and_a_range_in_units_it_converts() {
        let mut flags = Vec::new();
        let mut setters = Vec::new();
        for knob in KNOBS {
            let doc = knob.doc();
            assert!(!doc.is_empty(), "{} has no doc", knob.field);
            assert!(
                !doc.contains('\n') && !doc.ends_with('.'),
                "{}: one line, no closing period (the views add their own): {doc:?}",
                knob.field
            );
            assert!(
                !knob.flag.long.is_empty()
                    && knob
                        .flag
                        .long
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}: flag {:?}",
                knob.field,
                knob.flag.long
            );
            flags.push(knob.flag.long);
            assert!(!knob.setters.is_empty(), "{} has no setter", knob.field);
            let units = std::iter::once(knob.flag.unit).chain(knob.setters.iter().map(|s| s.unit));
            for unit in units {
                assert!(
                    unit.in_units_of(knob.unit).is_some(),
                    "{}: {unit:?} does not convert to {:?}",
                    knob.field,
                    knob.unit
                );
            }
            for setter in knob.setters {
                assert!(setter.name.starts_with("set_"), "{}", setter.name);
                setters.push(setter.name);
            }
            match knob.range {
                Range::Whole { lo, hi } => assert!(lo <= hi, "{}", knob.field),
                Range::Real { lo, hi, .. } => {
                    assert!(
                        lo < hi && lo.is_finite() && hi.is_finite(),
                        "{}",
                        knob.field
                    )
                }
                Range::Names(names) => assert!(!names.is_empty(), "{}", knob.field),
                Range::Switch => {}
            }
        }
        for list in [&mut flags, &mut setters] {
            let all = list.len();
            list.sort();
            list.dedup();
            assert_eq!(
                list.len(),
                all,
                "a flag or setter name is used twice: {list:?}"
            );
        }
        assert_eq!(find("wb_batch_max").unwrap().flag.long, "wb-batch-max");
        assert_eq!(
            find("lease_ttl_ms").unwrap().setters[0].name,
            "set_lease_ttl"
        );
    }

    #[test]
    fn every_default_is_inside_its_range_in_every_unit_it_is_set_in() {
        for knob in KNOBS {
            let default = knob.default_value();
            assert_eq!(
                knob.check(knob.unit, input_of(default)),
                Ok(default),
                "{}",
                knob.field
            );
            let mut settings = Settings::default();
            knob.put(&mut settings, default).unwrap();
            assert_eq!(settings, Settings::default());
            let text = knob.describe(default, knob.flag.unit);
            let number = text.split(' ').next().unwrap();
            assert_eq!(knob.parse_flag(number), Ok(default), "{}", knob.field);
        }
    }

    #[test]
    fn both_ends_of_every_range_are_taken_and_the_values_past_them_refused_naming_the_range() {
        for knob in KNOBS {
            let mut settings = Settings::default();
            let unit = knob.unit;
            let range = knob.describe_range(unit);
            let refused = |input: Input| {
                let err = knob.check(unit, input).unwrap_err();
                assert!(err.0.contains(&range), "{}: {err}", knob.field);
            };
            match knob.range {
                Range::Whole { lo, hi } => {
                    for end in [lo, hi] {
                        let value = knob.check(unit, Input::Whole(end as i64)).unwrap();
                        knob.put(&mut settings, value).unwrap();
                        assert_eq!(knob.get(&settings), Value::Whole(end));
                    }
                    refused(Input::Whole(hi as i64 + 1));
                    refused(Input::Whole(lo as i64 - 1));
                    refused(Input::Real(1.5));
                }
                Range::Real {
                    lo,
                    hi,
                    lo_open,
                    hi_open,
                } => {
                    for (end, open) in [(lo, lo_open), (hi, hi_open)] {
                        match knob.check(unit, Input::Real(end)) {
                            Ok(value) => {
                                assert!(!open, "{}: {end} taken", knob.field);
                                knob.put(&mut settings, value).unwrap();
                            }
                            Err(err) => {
                                assert!(open, "{}: {end} refused", knob.field);
                                assert!(err.0.contains(&range), "{err}");
                            }
                        }
                    }
                    refused(Input::Real(hi + 1.0));
                    refused(Input::Real(lo - 1.0));
                    refused(Input::Real(f64::NAN));
                    refused(Input::Real(f64::INFINITY));
                }
                Range::Names(names) => {
                    for name in names {
                        let value = knob.check(unit, Input::Name(name)).unwrap();
                        knob.put(&mut settings, value).unwrap();
                        assert_eq!(knob.get(&settings), Value::Name(name));
                    }
                    let err = knob.check(unit, Input::Name("mutex")).unwrap_err();
                    assert!(err.0.contains(&names.join(", ")), "{err}");
                }
                Range::Switch => {
                    for on in [true, false] {
                        let value = knob.check(unit, Input::Switch(on)).unwrap();
                        knob.put(&mut settings, value).unwrap();
                        assert_eq!(knob.get(&settings), Value::Switch(on));
                        let word = if on { "on" } else { "off" };
                        assert_eq!(knob.parse_flag(word), Ok(Value::Switch(on)));
                    }
                    refused(Input::Whole(1));
                    refused(Input::Name("yes please"));
                }
            }
        }
    }

    #[test]
    fn the_ranges_design_gives_are_the_ones_refused_with_their_bounds_in_the_setters_unit() {
        let cases = [
            (
                "ttl_ms",
                Unit::Secs,
                10_000_000_000_000_000_i64,
                "1..=31536000 s (up to 1 year)",
            ),
            ("ttl_ms", Unit::Ms, 0, "1..=31536000000 ms (up to 1 year)"),
            (
                "lock_ttl_ms",
                Unit::Ms,
                1_000_000_000,
                "1..=60000 ms (up to 1 min)",
            ),
            ("db_delay_ms", Unit::Ms, 60_001, "0..=60000 ms"),
            ("double_delete_ms", Unit::Ms, 60_001, "0..=60000 ms"),
            ("flush_interval_ms", Unit::Ms, 0, "1..=60000 ms"),
            (
                "negative_ttl_secs",
                Unit::Secs,
                86_401,
                "0..=86400 s (up to 1 day)",
            ),
            (
                "padding",
                Unit::Bytes,
                16 * 1024 * 1024 + 1,
                "(up to 16 MiB)",
            ),
            ("wb_batch_max", Unit::Count, 100_001, "1..=100000"),
            ("wb_batch_max", Unit::Count, 0, "1..=100000"),
        ];
        for (field, unit, given, range) in cases {
            let err = find(field)
                .unwrap()
                .check(unit, Input::Whole(given))
                .unwrap_err();
            assert!(
                err.0.contains(range) && err.0.contains(&format!("got {given}")),
                "{field} {given}: {err}"
            );
        }
        let jitter = find("ttl_jitter_percent").unwrap();
        assert!(jitter
            .parse_flag("500")
            .unwrap_err()
            .0
            .contains("[0, 100] percent"));
        let ratio = find("refresh_ratio").unwrap();
        assert!(ratio.parse_flag("1").unwrap_err().0.contains("(0, 1)"));
        let beta = find("xfetch_beta").unwrap();
        assert!(beta.parse_flag("0").unwrap_err().0.contains("(0, 100]"));
        assert!(beta.parse_flag("lots").unwrap_err().0.contains("a number"));
    }

    #[test]
    fn the_ttl_is_kept_in_ms_and_set_in_seconds_or_ms() {
        let ttl = find("ttl_ms").unwrap();
        let names: Vec<_> = ttl.setters.iter().map(|s| (s.name, s.unit)).collect();
        assert_eq!(names, [("set_ttl", Unit::Secs), ("set_ttl_ms", Unit::Ms)]);
        assert_eq!(ttl.flag.unit, Unit::Secs);
        assert_eq!(
            ttl.check(Unit::Secs, Input::Whole(2)),
            Ok(Value::Whole(2000))
        );
        assert_eq!(
            ttl.check(Unit::Ms, Input::Whole(300)),
            Ok(Value::Whole(300))
        );
        assert_eq!(ttl.parse_flag("5"), Ok(Value::Whole(5000)));
        assert_eq!(Settings::default().ttl_ms, 60_000);
        assert_eq!(ttl.describe(ttl.default_value(), Unit::Secs), "60 s");
        // A number of seconds that overflows in ms is out of range, not wrapped.
        assert!(ttl.check(Unit::Secs, Input::Whole(i64::MAX)).is_err());
    }

    /// The README's knob table, as the table renders it.
    fn readme_table() -> String {
        let mut out = String::from(
            "| knob | `serve`/`run` flag | lab setter | default | range | what it does |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for knob in KNOBS {
            let flag = format!("`--{} {}`", knob.flag.long, knob.flag.unit.value_name());
            let setters: Vec<String> = knob
                .setters
                .iter()
                .map(|s| format!("`{}({})`", s.name, s.arg))
                .collect();
            let mut ranges = vec![knob.describe_range(knob.flag.unit)];
            for setter in knob.setters.iter().filter(|s| s.unit != knob.flag.unit) {
                ranges.push(format!(
                    "`{}`: {}",
                    setter.name,
                    knob.describe_range(setter.unit)
                ));
            }
            out.push_str(&format!(
                "| `{}` | {flag} | {} | {} | {} | {} |\n",
                knob.field,
                setters.join(", "),
                knob.describe(knob.default_value(), knob.flag.unit),
                ranges.join("; "),
                knob.doc()
            ));
        }
        out
    }

    #[test]
    fn the_readme_lists_every_knob_with_its_flag_setters_default_and_range() {
        let readme = include_str!("../README.md");
        let (start, end) = ("<!-- knobs: begin -->\n", "<!-- knobs: end -->");
        let table = readme
            .split_once(start)
            .and_then(|(_, rest)| rest.split_once(end))
            .map(|(table, _)| table)
            .expect("README.md has a knob table between the knobs markers");
        let wanted = readme_table();
        assert!(
            table == wanted,
            "README.md's knob table is not the one src/knobs.rs declares; paste this between the markers:\n{wanted}"
        );
    }
}
