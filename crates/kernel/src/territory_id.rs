use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The id of a territory (a *data room*, SPEC §1): `DE` or `CH`.
///
/// Parsing is strict: an unknown id is an error, never a fallback to `DE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TerritoryId {
    /// Deutschland.
    #[serde(rename = "DE")]
    De,
    /// Schweiz.
    #[serde(rename = "CH")]
    Ch,
}

/// The error of parsing an unknown territory id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown territory id {0:?}")]
pub struct UnknownTerritory(pub String);

impl TerritoryId {
    /// Both territories, in a stable order.
    pub const ALL: [TerritoryId; 2] = [TerritoryId::De, TerritoryId::Ch];

    /// The id as written in the API and the database (`"DE"`, `"CH"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TerritoryId::De => "DE",
            TerritoryId::Ch => "CH",
        }
    }
}

impl FromStr for TerritoryId {
    type Err = UnknownTerritory;

    /// Accepts `DE`/`CH` in any case; anything else is [`UnknownTerritory`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "DE" => Ok(TerritoryId::De),
            "CH" => Ok(TerritoryId::Ch),
            _ => Err(UnknownTerritory(s.to_owned())),
        }
    }
}

impl fmt::Display for TerritoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_ids_case_insensitively() {
        assert_eq!("de".parse(), Ok(TerritoryId::De));
        assert_eq!("CH".parse(), Ok(TerritoryId::Ch));
    }

    #[test]
    fn every_territory_is_read_back_from_its_api_and_database_name() {
        for territory in TerritoryId::ALL {
            let name = territory.as_str();
            assert_eq!(name.parse(), Ok(territory));
            // The API (serde) and the database write the same two upper-case letters.
            assert_eq!(
                serde_json::to_string(&territory).unwrap(),
                format!("\"{name}\"")
            );
        }
        assert_eq!(TerritoryId::De.as_str(), "DE");
        assert_eq!(TerritoryId::Ch.as_str(), "CH");
    }

    #[test]
    fn unknown_id_is_an_error_not_de() {
        assert!("AT".parse::<TerritoryId>().is_err());
        assert!("".parse::<TerritoryId>().is_err());
    }
}
