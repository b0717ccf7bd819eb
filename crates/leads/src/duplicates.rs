//! Duplicate detection keys (SPEC §4.2). The database enforces the same keys with partial unique
//! indexes over non-deleted rows, so a race becomes a [`DuplicateKind`], never a crash.

use serde::{Deserialize, Serialize};

use crate::lead::LeadData;

/// The two keys a lead may collide on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DuplicateKeys {
    /// The normalised email, when the lead has one.
    pub email: Option<String>,
    /// Normalised company name + postal code + country, when the lead has a postal code.
    pub company: (String, Option<String>, String),
}

/// Which rule a duplicate matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DuplicateKind {
    /// Same normalised email.
    Email,
    /// Same normalised company name, postal code and country.
    Company,
}

impl DuplicateKeys {
    /// The keys of some lead data.
    pub fn of(data: &LeadData) -> DuplicateKeys {
        DuplicateKeys {
            email: data.email.as_ref().map(|e| e.normalised()),
            company: (
                data.company_name.normalised(),
                data.postal_code.as_ref().map(|p| p.trim().to_lowercase()),
                data.country_code.clone(),
            ),
        }
    }

    /// The rule on which `self` collides with `other`, if any (email first).
    ///
    /// A missing postal code matches a missing postal code: two "Gasthaus Post" in DE without a
    /// postal code are the same prospect until someone adds one (decision 0002).
    pub fn collides_with(&self, other: &DuplicateKeys) -> Option<DuplicateKind> {
        if self.email.is_some() && self.email == other.email {
            return Some(DuplicateKind::Email);
        }
        (self.company == other.company).then_some(DuplicateKind::Company)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CompanyName, Email};

    fn data(name: &str, email: Option<&str>, plz: Option<&str>, country: &str) -> LeadData {
        let mut d = LeadData::new(CompanyName::parse(name).unwrap(), country).unwrap();
        d.email = email.map(|e| Email::parse(e).unwrap());
        d.postal_code = plz.map(str::to_owned);
        d
    }

    #[test]
    fn email_duplicates_ignore_case_and_space() {
        let a = data("A", Some("Info@Post.de"), None, "DE").duplicate_keys();
        let b = data("B", Some(" info@post.DE "), None, "DE").duplicate_keys();
        assert_eq!(a.collides_with(&b), Some(DuplicateKind::Email));
    }

    #[test]
    fn company_duplicates_need_same_postal_code_and_country() {
        let a = data("Gasthaus Post GmbH", None, Some("10115"), "DE").duplicate_keys();
        let b = data("gasthaus  post", None, Some("10115"), "de").duplicate_keys();
        let c = data("Gasthaus Post", None, Some("10117"), "DE").duplicate_keys();
        let d = data("Gasthaus Post", None, Some("10115"), "AT").duplicate_keys();
        assert_eq!(a.collides_with(&b), Some(DuplicateKind::Company));
        assert_eq!(a.collides_with(&c), None);
        assert_eq!(a.collides_with(&d), None);
    }
}
