//! [`Cursor`]: a position in the outbox's commit order, and its opaque text form.

use std::fmt;
use std::str::FromStr;

/// A position in the outbox: the pair `(txid, id)` of an outbox row (the writing transaction's
/// `xid8` and the row's `bigserial` id), ordered lexicographically.
///
/// A cursor means "every deliverable event at or before this position has been seen"; reading
/// *after* it returns the events ordered by `(txid, id)` that are strictly greater. Rows are only
/// ever delivered once every transaction with a smaller txid has finished (see
/// `docs/events-delivery.md`), so a later read can never find a new row at or before a cursor it
/// returned: nothing is skipped, however late a transaction commits.
///
/// The text form ([`Cursor::encode`], [`Cursor::parse`]) is opaque to clients: it is the SSE
/// `id:` and the `after` / `nextCursor` of the HTTP feed.
///
/// ```
/// use freshplan_events_pg::Cursor;
/// let c = Cursor::new(7_341, 42);
/// let text = c.encode();
/// assert_eq!(Cursor::parse(&text), Ok(c));
/// assert!(Cursor::START < c);
/// assert!(Cursor::parse("42").is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    txid: u64,
    id: i64,
}

/// A cursor text that is not one this crate produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event cursor: {0:?}")]
pub struct InvalidCursor(String);

/// Longest text [`Cursor::parse`] looks at (two 20-digit numbers and the separator).
const MAX_TEXT: usize = 41;

impl Cursor {
    /// Before every event: reading after it starts at the oldest retained event.
    pub const START: Cursor = Cursor { txid: 0, id: 0 };

    /// The cursor of the outbox row `(txid, id)`.
    pub const fn new(txid: u64, id: i64) -> Cursor {
        Cursor { txid, id }
    }

    /// The position just below transaction `xmin`: every event of a transaction older than
    /// `xmin` is at or before it, every event of `xmin` or a later transaction after it.
    pub(crate) const fn horizon(xmin: u64) -> Cursor {
        Cursor { txid: xmin, id: 0 }
    }

    /// The writing transaction's id (`xid8`).
    pub const fn txid(self) -> u64 {
        self.txid
    }

    /// The outbox row id.
    pub const fn id(self) -> i64 {
        self.id
    }

    /// The opaque text form: `<txid>-<id>` in decimal (URL-, header- and SSE-safe).
    pub fn encode(self) -> String {
        self.to_string()
    }

    /// Parses the text form. Strict: exactly two unsigned decimal numbers without signs,
    /// spaces or leading zeros, so each cursor has one spelling.
    pub fn parse(text: &str) -> Result<Cursor, InvalidCursor> {
        let invalid = || InvalidCursor(text.chars().take(MAX_TEXT).collect());
        if text.len() > MAX_TEXT {
            return Err(invalid());
        }
        let (txid, id) = text.split_once('-').ok_or_else(invalid)?;
        let canonical = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        };
        if !canonical(txid) || !canonical(id) {
            return Err(invalid());
        }
        Ok(Cursor {
            txid: txid.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.txid, self.id)
    }
}

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Cursor, InvalidCursor> {
        Cursor::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_what_it_never_produces() {
        for bad in [
            "",
            "-",
            "1-",
            "-1",
            "1--1",
            "+1-2",
            "1-+2",
            " 1-2",
            "1-2 ",
            "01-2",
            "1-02",
            "1.2",
            "a-b",
            "1-9223372036854775808",  // id beyond i64
            "18446744073709551616-1", // txid beyond u64
            "1-2-3",
        ] {
            assert!(Cursor::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Cursor::parse("0-0"), Ok(Cursor::START));
        assert_eq!(
            Cursor::parse("18446744073709551615-9223372036854775807"),
            Ok(Cursor::new(u64::MAX, i64::MAX))
        );
    }

    #[test]
    fn orders_by_transaction_then_row() {
        assert!(Cursor::new(5, 100) < Cursor::new(6, 1));
        assert!(Cursor::new(6, 1) < Cursor::new(6, 2));
        assert!(Cursor::horizon(6) < Cursor::new(6, 1));
        assert!(Cursor::new(5, i64::MAX) < Cursor::horizon(6));
    }

    proptest! {
        #[test]
        fn text_form_round_trips(txid in any::<u64>(), id in 0..=i64::MAX) {
            let c = Cursor::new(txid, id);
            prop_assert_eq!(Cursor::parse(&c.encode()), Ok(c));
            prop_assert!(c.encode().bytes().all(|b| b.is_ascii_digit() || b == b'-'));
        }

        #[test]
        fn parse_never_panics(s in ".{0,60}") {
            let _ = Cursor::parse(&s);
        }
    }
}
