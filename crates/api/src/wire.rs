//! How values travel: RFC 3339 timestamps, integers that JSON may spell `119.0`, merge-patch
//! fields that tell "absent" from `null`. Deserialisation errors say `invalid type` for a value
//! of the wrong JSON type and `invalid value` for one of the right type that is not allowed; the
//! service answers the first with 400 and the second with 422 (SPEC §9).

use std::fmt;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An RFC 3339 timestamp (`time::serde::rfc3339`, with an `invalid value` error for a string
/// that is not one).
pub mod rfc3339 {
    use super::*;

    /// Writes RFC 3339.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        time::serde::rfc3339::serialize(t, s)
    }

    /// Reads RFC 3339.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        d.deserialize_str(TimeVisitor)
    }

    /// The same for an optional timestamp (`null` or absent is `None`).
    pub mod option {
        use super::*;

        /// Writes RFC 3339 or null.
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            time::serde::rfc3339::option::serialize(t, s)
        }

        /// Reads RFC 3339 or null.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            d.deserialize_option(OptionVisitor(TimeVisitor))
        }
    }
}

struct TimeVisitor;

impl Visitor<'_> for TimeVisitor {
    type Value = OffsetDateTime;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 date-time")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<OffsetDateTime, E> {
        OffsetDateTime::parse(v, &Rfc3339).map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }
}

/// An integer as JSON Schema means it: `119` and `119.0` are both 119; `119.5` is not an
/// integer (`invalid type`).
pub mod integer {
    use super::*;

    /// Reads an optional integer (`null` or absent is `None`).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_option(OptionVisitor(IntegerVisitor))
    }

    /// Reads a merge-patch integer field ([`super::patch`]).
    pub fn patch<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
        deserialize(d).map(Some)
    }
}

struct IntegerVisitor;

impl Visitor<'_> for IntegerVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v)
            .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &"an integer below 2^63"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // i64::MAX as f64 rounds up to 2^63, which is out of range.
        if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
            Ok(v as i64)
        } else if v.fract() == 0.0 {
            Err(E::invalid_value(
                Unexpected::Float(v),
                &"an integer below 2^63",
            ))
        } else {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        }
    }
}

struct OptionVisitor<V>(V);

impl<'de, V: Visitor<'de> + Copy> Visitor<'de> for OptionVisitor<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)?;
        f.write_str(" or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self.0).map(Some)
    }
}

impl Clone for TimeVisitor {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for TimeVisitor {}
impl Clone for IntegerVisitor {
    fn clone(&self) -> Self {
        *self
    }
}
impl Copy for IntegerVisitor {}

/// A JSON merge-patch field (RFC 7396): `None` when absent, `Some(None)` for `null` (clear it),
/// `Some(Some(v))` for a value. Use with `#[serde(default, deserialize_with = "patch::nullable",
/// skip_serializing_if = "Option::is_none")]`.
pub mod patch {
    use super::*;

    /// Reads a present field: `null` is `Some(None)`.
    pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }

    /// Reads a present RFC 3339 field: `null` is `Some(None)`.
    pub fn time<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
        super::rfc3339::option::deserialize(d).map(Some)
    }

    /// Reads a present field that may not be cleared: `null` is `invalid type`.
    pub fn required<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        T::deserialize(d).map(Some)
    }
}
