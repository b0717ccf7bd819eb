//! Strict mail templates (SPEC §6: "no unfilled placeholder ever reaches a mail").
//!
//! # Syntax
//! A placeholder is `{{name}}`, with optional whitespace inside the braces (`{{ name }}`).
//! `name` must be one of the fixed set [`Placeholder::ALL`]. Everything else is literal text,
//! including single braces (`{` and `}`).
//!
//! # Strictness
//! Rendering fails — it never produces output — when a template has
//! - an unknown placeholder name, or a malformed one (`{{}}`, `{{ a b }}`, `{{{a}}`),
//! - a known placeholder without a value in the [`Vars`],
//! - an unclosed `{{` or a stray `}}`,
//! - a placeholder touching a literal brace (`{{{a}}}`, `}{{a}}`), because its value would
//!   join with the literal into a `{{` or `}}` when the value is empty.
//!
//! [`Template::validate`] runs the same checks ahead of time, plus "every placeholder is one
//! that [`personalise`] fills for the template's stage", so a bad template is refused when the
//! configuration is loaded, not when the first mail is due.
//!
//! # Values
//! Substitution is a single pass: a value is never scanned for placeholders. **Decision:**
//! values containing braces are *neutralised*, not rejected — a company called `{{Chef}}` must
//! still get its mail:
//! - in `html` every value is HTML-escaped (`& < > " '`), its braces become `&#123;`/`&#125;`
//!   (rendered identically by a mail client) and its line breaks become `<br>`;
//! - in `text` and `subject` each brace of a value is wrapped in U+200B ZERO WIDTH SPACE, so the
//!   reader sees the braces but the output never contains `{{` or `}}`;
//! - in `subject`, line breaks (in values and template) become spaces: a header is one line.
//!
//! As a last line of defence the rendered parts are checked for `{{`/`}}` and
//! [`RenderError::UnsafeOutput`] is returned if one ever slipped through.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use freshplan_kernel::TerritoryId;
use freshplan_territory::Territory;

use crate::offer::{bulk_offer, business_type_label, offer_type, sample_offer, season_label};
use crate::plan::Candidate;
use crate::stage::Stage;

/// The fixed set of placeholder names a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Placeholder {
    /// `salutation`: „Guten Tag Anna Berger“, or „Sehr geehrte Damen und Herren“ without a
    /// contact person.
    Salutation,
    /// `contact_person`: the contact person, else the company name.
    ContactPerson,
    /// `company`: the company name.
    Company,
    /// `business_type`: the German label of the business type (`OTHER` when unknown).
    BusinessType,
    /// `territory`: the territory's name (Deutschland, Schweiz).
    Territory,
    /// `season`: the German season of the mail's month (Frühling, Sommer, Herbst, Winter).
    Season,
    /// `currency`: the territory's currency code (EUR, CHF).
    Currency,
    /// `legal_footer`: the territory's legal footer (legal entity, VAT id and rate).
    LegalFooter,
    /// `unsubscribe_url`: the signed unsubscribe link.
    UnsubscribeUrl,
    /// `starter_box` (T+3 only): the starter box of the sample offer.
    StarterBox,
    /// `products` (T+3 only): the type-specific selection, comma-separated.
    Products,
    /// `seasonal` (T+3 only): a sentence on the seasonal addition, empty when the month has none.
    Seasonal,
    /// `discount` (T+7 only): the bulk-order discount in percent, e.g. `15`.
    Discount,
    /// `minimum_order` (T+7 only): the minimum order, formatted for the territory (`1.000`,
    /// `1'000`).
    MinimumOrder,
}

impl Placeholder {
    /// Every placeholder.
    pub const ALL: [Placeholder; 14] = [
        Placeholder::Salutation,
        Placeholder::ContactPerson,
        Placeholder::Company,
        Placeholder::BusinessType,
        Placeholder::Territory,
        Placeholder::Season,
        Placeholder::Currency,
        Placeholder::LegalFooter,
        Placeholder::UnsubscribeUrl,
        Placeholder::StarterBox,
        Placeholder::Products,
        Placeholder::Seasonal,
        Placeholder::Discount,
        Placeholder::MinimumOrder,
    ];

    /// The name as written between the braces.
    pub const fn name(self) -> &'static str {
        match self {
            Placeholder::Salutation => "salutation",
            Placeholder::ContactPerson => "contact_person",
            Placeholder::Company => "company",
            Placeholder::BusinessType => "business_type",
            Placeholder::Territory => "territory",
            Placeholder::Season => "season",
            Placeholder::Currency => "currency",
            Placeholder::LegalFooter => "legal_footer",
            Placeholder::UnsubscribeUrl => "unsubscribe_url",
            Placeholder::StarterBox => "starter_box",
            Placeholder::Products => "products",
            Placeholder::Seasonal => "seasonal",
            Placeholder::Discount => "discount",
            Placeholder::MinimumOrder => "minimum_order",
        }
    }

    /// Looks a name up (exact, lower case).
    pub fn parse(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether [`personalise`] fills this placeholder for `stage`: the sample-offer fields only
    /// for T+3, the bulk-offer fields only for T+7, the rest for both.
    pub const fn available_in(self, stage: Stage) -> bool {
        match self {
            Placeholder::StarterBox | Placeholder::Products | Placeholder::Seasonal => {
                matches!(stage, Stage::T3)
            }
            Placeholder::Discount | Placeholder::MinimumOrder => matches!(stage, Stage::T7),
            _ => true,
        }
    }
}

impl fmt::Display for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The values to fill into a template. An empty string is a value; a placeholder without an
/// entry is "unfilled" and makes rendering fail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vars(BTreeMap<Placeholder, String>);

impl Vars {
    /// No values.
    pub fn new() -> Vars {
        Vars::default()
    }

    /// Sets a value (replacing an earlier one).
    pub fn set(&mut self, placeholder: Placeholder, value: impl Into<String>) -> &mut Vars {
        self.0.insert(placeholder, value.into());
        self
    }

    /// Builder form of [`Vars::set`].
    pub fn with(mut self, placeholder: Placeholder, value: impl Into<String>) -> Vars {
        self.set(placeholder, value);
        self
    }

    /// Removes a value.
    pub fn remove(&mut self, placeholder: Placeholder) -> Option<String> {
        self.0.remove(&placeholder)
    }

    /// The value of a placeholder, if set.
    pub fn get(&self, placeholder: Placeholder) -> Option<&str> {
        self.0.get(&placeholder).map(String::as_str)
    }

    /// The placeholders that have a value.
    pub fn keys(&self) -> impl Iterator<Item = Placeholder> + '_ {
        self.0.keys().copied()
    }
}

/// Which part of a template an error is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// The subject line.
    Subject,
    /// The HTML body.
    Html,
    /// The plain-text body.
    Text,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Subject => "subject",
            Part::Html => "html",
            Part::Text => "text",
        })
    }
}

/// Why a template could not be rendered (or validated). Offsets are byte offsets into the part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A `{{` without a matching `}}`.
    #[error("{part}: unclosed '{{{{' at byte {offset}")]
    Unclosed {
        /// The part.
        part: Part,
        /// Where the `{{` starts.
        offset: usize,
    },
    /// A `}}` outside a placeholder.
    #[error("{part}: stray '}}}}' at byte {offset}")]
    StrayClose {
        /// The part.
        part: Part,
        /// Where the `}}` starts.
        offset: usize,
    },
    /// The text between the braces is not a placeholder name (empty, spaces inside, braces).
    #[error("{part}: malformed placeholder {{{{{inner}}}}} at byte {offset}")]
    Malformed {
        /// The part.
        part: Part,
        /// Where the `{{` starts.
        offset: usize,
        /// The text between the braces.
        inner: String,
    },
    /// A well-formed name that is not in [`Placeholder::ALL`].
    #[error("{part}: unknown placeholder {name:?} at byte {offset}")]
    UnknownPlaceholder {
        /// The part.
        part: Part,
        /// Where the `{{` starts.
        offset: usize,
        /// The name.
        name: String,
    },
    /// A placeholder directly next to a literal `{` or `}`.
    #[error("{part}: placeholder at byte {offset} touches a literal brace")]
    BraceAdjacent {
        /// The part.
        part: Part,
        /// Where the `{{` starts.
        offset: usize,
    },
    /// A known placeholder without a value.
    #[error("{part}: no value for placeholder {placeholder}")]
    MissingValue {
        /// The part.
        part: Part,
        /// The placeholder.
        placeholder: Placeholder,
    },
    /// (Validation only.) A placeholder that [`personalise`] does not fill for the template's
    /// stage.
    #[error("{part}: placeholder {placeholder} is not available in stage {stage}")]
    NotAvailable {
        /// The part.
        part: Part,
        /// The placeholder.
        placeholder: Placeholder,
        /// The template's stage.
        stage: Stage,
    },
    /// The rendered part contains `{{` or `}}` (defence in depth; the rules above prevent it).
    #[error("{part}: rendered output would contain '{{{{' or '}}}}'")]
    UnsafeOutput {
        /// The part.
        part: Part,
    },
}

/// A mail template for one stage. Placeholders: see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Template {
    /// The stage it is for.
    pub stage: Stage,
    /// The subject line.
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
}

/// A rendered mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderedMail {
    /// The subject line (one line).
    pub subject: String,
    /// The HTML body.
    pub html: String,
    /// The plain-text body.
    pub text: String,
}

impl Template {
    fn parts(&self) -> [(Part, &str); 3] {
        [
            (Part::Subject, &self.subject),
            (Part::Html, &self.html),
            (Part::Text, &self.text),
        ]
    }

    /// Checks the template ahead of rendering: syntax, known names, and that every placeholder
    /// is [available](Placeholder::available_in) in the template's stage. A template that
    /// passes renders without error with the [`Vars`] of [`personalise`].
    pub fn validate(&self) -> Result<(), RenderError> {
        for (part, src) in self.parts() {
            for segment in parse(part, src)? {
                if let Segment::Placeholder(p) = segment
                    && !p.available_in(self.stage)
                {
                    return Err(RenderError::NotAvailable {
                        part,
                        placeholder: p,
                        stage: self.stage,
                    });
                }
            }
        }
        Ok(())
    }

    /// The placeholders the template uses, in order of first use (subject, html, text).
    pub fn placeholders(&self) -> Result<Vec<Placeholder>, RenderError> {
        let mut out = Vec::new();
        for (part, src) in self.parts() {
            for segment in parse(part, src)? {
                if let Segment::Placeholder(p) = segment
                    && !out.contains(&p)
                {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }
}

enum Segment<'a> {
    Literal(&'a str),
    Placeholder(Placeholder),
}

fn is_brace(b: u8) -> bool {
    b == b'{' || b == b'}'
}

/// Splits a part into literals and placeholders, applying every syntax rule.
fn parse(part: Part, src: &str) -> Result<Vec<Segment<'_>>, RenderError> {
    let bytes = src.as_bytes();
    let mut segments = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    // Only ASCII bytes are compared, so every index used for slicing is a char boundary.
    while i < bytes.len() {
        if bytes[i..].starts_with(b"{{") {
            let open = i;
            let Some(close) = src[open + 2..].find("}}") else {
                return Err(RenderError::Unclosed { part, offset: open });
            };
            let inner = &src[open + 2..open + 2 + close];
            if inner.contains("{{") {
                // `{{ a {{ b }}`: the first `{{` is never closed before another opens.
                return Err(RenderError::Unclosed { part, offset: open });
            }
            let name = inner.trim();
            let well_formed = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !well_formed {
                return Err(RenderError::Malformed {
                    part,
                    offset: open,
                    inner: inner.to_owned(),
                });
            }
            let Some(placeholder) = Placeholder::parse(name) else {
                return Err(RenderError::UnknownPlaceholder {
                    part,
                    offset: open,
                    name: name.to_owned(),
                });
            };
            let end = open + 2 + close + 2;
            let touches_before = open > 0 && is_brace(bytes[open - 1]);
            let touches_after = end < bytes.len() && is_brace(bytes[end]);
            if touches_before || touches_after {
                return Err(RenderError::BraceAdjacent { part, offset: open });
            }
            if literal_start < open {
                segments.push(Segment::Literal(&src[literal_start..open]));
            }
            segments.push(Segment::Placeholder(placeholder));
            i = end;
            literal_start = end;
        } else if bytes[i..].starts_with(b"}}") {
            return Err(RenderError::StrayClose { part, offset: i });
        } else {
            i += 1;
        }
    }
    if literal_start < bytes.len() {
        segments.push(Segment::Literal(&src[literal_start..]));
    }
    Ok(segments)
}

const ZWSP: char = '\u{200B}';

fn push_value(out: &mut String, part: Part, value: &str) {
    for c in value.chars() {
        match (part, c) {
            (Part::Html, '&') => out.push_str("&amp;"),
            (Part::Html, '<') => out.push_str("&lt;"),
            (Part::Html, '>') => out.push_str("&gt;"),
            (Part::Html, '"') => out.push_str("&quot;"),
            (Part::Html, '\'') => out.push_str("&#39;"),
            (Part::Html, '{') => out.push_str("&#123;"),
            (Part::Html, '}') => out.push_str("&#125;"),
            (Part::Html, '\r') => {}
            (Part::Html, '\n') => out.push_str("<br>\n"),
            (Part::Subject | Part::Text, '{' | '}') => {
                out.push(ZWSP);
                out.push(c);
                out.push(ZWSP);
            }
            _ => out.push(c),
        }
    }
}

fn render_part(part: Part, src: &str, vars: &Vars) -> Result<String, RenderError> {
    let mut out = String::with_capacity(src.len() * 2);
    for segment in parse(part, src)? {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Placeholder(p) => {
                let value = vars.get(p).ok_or(RenderError::MissingValue {
                    part,
                    placeholder: p,
                })?;
                push_value(&mut out, part, value);
            }
        }
    }
    if part == Part::Subject {
        out = out.replace("\r\n", " ").replace(['\r', '\n'], " ");
    }
    if out.contains("{{") || out.contains("}}") {
        return Err(RenderError::UnsafeOutput { part });
    }
    Ok(out)
}

/// Renders `template` with `vars`, strictly (see the [module docs](self)).
///
/// ```
/// use freshplan_followup::template::{render, Placeholder, RenderError, Template, Vars};
/// use freshplan_followup::stage::Stage;
///
/// let t = Template {
///     stage: Stage::T3,
///     subject: "Proben für {{ company }}".into(),
///     html: "<p>{{company}}</p>".into(),
///     text: "{{company}}".into(),
/// };
/// let vars = Vars::new().with(Placeholder::Company, "Müller & Söhne {{x}}");
/// let mail = render(&t, &vars).unwrap();
/// assert_eq!(mail.html, "<p>Müller &amp; Söhne &#123;&#123;x&#125;&#125;</p>");
/// assert!(!mail.text.contains("{{"));
///
/// assert!(matches!(render(&t, &Vars::new()), Err(RenderError::MissingValue { .. })));
/// ```
pub fn render(template: &Template, vars: &Vars) -> Result<RenderedMail, RenderError> {
    Ok(RenderedMail {
        subject: render_part(Part::Subject, &template.subject, vars)?,
        html: render_part(Part::Html, &template.html, vars)?,
        text: render_part(Part::Text, &template.text, vars)?,
    })
}

/// Formats a whole amount with the territory's thousands separator: `1.000` in Germany,
/// `1'000` in Switzerland.
pub fn format_amount(territory: TerritoryId, amount: u32) -> String {
    let sep = match territory {
        TerritoryId::De => '.',
        TerritoryId::Ch => '\'',
    };
    let digits = amount.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(sep);
        }
        out.push(c);
    }
    out
}

/// The values for `candidate`'s mail of `stage`: exactly the placeholders
/// [available](Placeholder::available_in) in that stage.
///
/// Everything territory-specific (currency, number format, footer, local month) comes from
/// `territory` — normally `Territory::get(candidate.territory)`. The month of the seasonal
/// addition and of `season` is the month of `now` in the territory's local time. `unsubscribe_url` is the complete, signed link (see [`crate::unsubscribe`]).
pub fn personalise(
    candidate: &Candidate,
    stage: Stage,
    territory: &Territory,
    now: OffsetDateTime,
    unsubscribe_url: &str,
) -> Vars {
    let business_type = offer_type(candidate.business_type);
    let month = freshplan_territory::local_date(territory.id, now).month();
    let contact = candidate
        .contact_person
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let salutation = match contact {
        Some(name) => format!("Guten Tag {name}"),
        None => "Sehr geehrte Damen und Herren".to_owned(),
    };
    let mut vars = Vars::new()
        .with(Placeholder::Salutation, salutation)
        .with(
            Placeholder::ContactPerson,
            contact.unwrap_or(candidate.company_name.trim()),
        )
        .with(Placeholder::Company, candidate.company_name.trim())
        .with(
            Placeholder::BusinessType,
            business_type_label(business_type),
        )
        .with(Placeholder::Territory, territory.name)
        .with(Placeholder::Season, season_label(month))
        .with(Placeholder::Currency, territory.currency_code)
        .with(Placeholder::LegalFooter, territory.legal_footer())
        .with(Placeholder::UnsubscribeUrl, unsubscribe_url);
    match stage {
        Stage::T3 => {
            let offer = sample_offer(business_type, month);
            let seasonal = offer
                .seasonal
                .map(|s| format!("Passend zur Saison legen wir Ihnen gern dazu: {s}."))
                .unwrap_or_default();
            vars.set(Placeholder::StarterBox, offer.starter_box)
                .set(Placeholder::Products, offer.products.join(", "))
                .set(Placeholder::Seasonal, seasonal);
        }
        Stage::T7 => {
            let offer = bulk_offer(business_type, territory);
            vars.set(Placeholder::Discount, offer.discount_percent.to_string())
                .set(
                    Placeholder::MinimumOrder,
                    format_amount(candidate.territory, offer.minimum_order),
                );
        }
    }
    vars
}

/// The default German templates, T+3 then T+7; a migration seeds them and they pass
/// [`Template::validate`].
pub fn default_templates() -> [Template; 2] {
    [
        Template {
            stage: Stage::T3,
            subject: "{{company}}: Ihre kostenlose {{starter_box}} von FreshPlan".to_owned(),
            html: DEFAULT_T3_HTML.to_owned(),
            text: DEFAULT_T3_TEXT.to_owned(),
        },
        Template {
            stage: Stage::T7,
            subject: "{{discount}} % Rabatt auf Ihre erste Großbestellung, {{company}}".to_owned(),
            html: DEFAULT_T7_HTML.to_owned(),
            text: DEFAULT_T7_TEXT.to_owned(),
        },
    ]
}

const DEFAULT_T3_HTML: &str = r#"<!DOCTYPE html>
<html lang="de">
<body style="font-family: Arial, sans-serif; color: #222; line-height: 1.5;">
<p>{{salutation}},</p>
<p>vielen Dank für Ihr Interesse an FreshPlan. Damit Sie sich selbst von unserer Qualität überzeugen können, stellen wir für {{company}} gern eine kostenlose <strong>{{starter_box}}</strong> zusammen.</p>
<p>Für den Bereich {{business_type}} haben wir diese Auswahl vorgesehen: {{products}}.</p>
<p>{{seasonal}}</p>
<p>Antworten Sie einfach auf diese E-Mail, und wir vereinbaren einen Liefertermin, der in Ihren Küchenablauf passt.</p>
<p>Frische Grüße aus dem {{season}}<br>
Ihr FreshPlan-Team</p>
<hr>
<p style="font-size: 12px; color: #666;">{{legal_footer}}</p>
<p style="font-size: 12px; color: #666;">Sie möchten keine E-Mails mehr von uns erhalten? <a href="{{unsubscribe_url}}">Hier abmelden</a>.</p>
</body>
</html>
"#;

const DEFAULT_T3_TEXT: &str = "{{salutation}},

vielen Dank für Ihr Interesse an FreshPlan. Damit Sie sich selbst von unserer Qualität überzeugen können, stellen wir für {{company}} gern eine kostenlose {{starter_box}} zusammen.

Für den Bereich {{business_type}} haben wir diese Auswahl vorgesehen: {{products}}.

{{seasonal}}

Antworten Sie einfach auf diese E-Mail, und wir vereinbaren einen Liefertermin, der in Ihren Küchenablauf passt.

Frische Grüße aus dem {{season}}
Ihr FreshPlan-Team

--
{{legal_footer}}

Keine E-Mails mehr erhalten: {{unsubscribe_url}}
";

const DEFAULT_T7_HTML: &str = r#"<!DOCTYPE html>
<html lang="de">
<body style="font-family: Arial, sans-serif; color: #222; line-height: 1.5;">
<p>{{salutation}},</p>
<p>wir hoffen, Sie konnten sich inzwischen ein Bild von FreshPlan machen. Für Ihre erste Großbestellung haben wir ein besonderes Angebot für {{company}}:</p>
<p style="font-size: 18px;"><strong>{{discount}} % Rabatt</strong> ab einem Bestellwert von {{minimum_order}} {{currency}}.</p>
<p>Die Konditionen sind auf den Bereich {{business_type}} zugeschnitten. Gern stellen wir Ihnen ein Sortiment zusammen und beraten Sie zu Liefertagen und Mengen.</p>
<p>Antworten Sie einfach auf diese E-Mail oder rufen Sie uns an.</p>
<p>Beste Grüße<br>
Ihr FreshPlan-Team</p>
<hr>
<p style="font-size: 12px; color: #666;">{{legal_footer}}</p>
<p style="font-size: 12px; color: #666;">Sie möchten keine E-Mails mehr von uns erhalten? <a href="{{unsubscribe_url}}">Hier abmelden</a>.</p>
</body>
</html>
"#;

const DEFAULT_T7_TEXT: &str = "{{salutation}},

wir hoffen, Sie konnten sich inzwischen ein Bild von FreshPlan machen. Für Ihre erste Großbestellung haben wir ein besonderes Angebot für {{company}}:

{{discount}} % Rabatt ab einem Bestellwert von {{minimum_order}} {{currency}}.

Die Konditionen sind auf den Bereich {{business_type}} zugeschnitten. Gern stellen wir Ihnen ein Sortiment zusammen und beraten Sie zu Liefertagen und Mengen.

Antworten Sie einfach auf diese E-Mail oder rufen Sie uns an.

Beste Grüße
Ihr FreshPlan-Team

--
{{legal_footer}}

Keine E-Mails mehr erhalten: {{unsubscribe_url}}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use freshplan_leads::model::BusinessType;
    use freshplan_leads::status::LeadStatus;
    use proptest::prelude::*;
    use time::macros::datetime;
    use uuid::Uuid;

    fn t(text: &str) -> Template {
        Template {
            stage: Stage::T3,
            subject: "s".into(),
            html: "h".into(),
            text: text.into(),
        }
    }

    fn company(v: &str) -> Vars {
        Vars::new().with(Placeholder::Company, v)
    }

    fn text_err(src: &str, vars: &Vars) -> RenderError {
        render(&t(src), vars).unwrap_err()
    }

    fn lead() -> Candidate {
        Candidate {
            lead_id: Uuid::from_u128(7),
            version: 3,
            territory: TerritoryId::De,
            status: LeadStatus::Registered,
            clock_stopped: false,
            registered_at: datetime!(2026-04-01 08:00 UTC),
            email: Some("info@adler.de".into()),
            email_consent: true,
            last_meaningful_contact_at: None,
            business_type: Some(BusinessType::Canteen),
            company_name: "Kantine Adler GmbH".into(),
            contact_person: Some("Anna Berger".into()),
            t3: None,
            t7: None,
        }
    }

    #[test]
    fn placeholders_with_and_without_inner_whitespace() {
        let mail = render(
            &t("a {{company}} b {{ company }} c {{\tcompany  }}"),
            &company("X"),
        )
        .unwrap();
        assert_eq!(mail.text, "a X b X c X");
    }

    #[test]
    fn single_braces_are_literal() {
        let mail = render(&t("{ a } {{company}} { }"), &company("X")).unwrap();
        assert_eq!(mail.text, "{ a } X { }");
    }

    #[test]
    fn unknown_placeholder_is_an_error() {
        assert_eq!(
            text_err("Hallo {{firstname}}", &company("X")),
            RenderError::UnknownPlaceholder {
                part: Part::Text,
                offset: 6,
                name: "firstname".into()
            }
        );
    }

    #[test]
    fn unfilled_placeholder_is_an_error() {
        assert_eq!(
            text_err("{{company}} {{salutation}}", &company("X")),
            RenderError::MissingValue {
                part: Part::Text,
                placeholder: Placeholder::Salutation
            }
        );
    }

    #[test]
    fn empty_string_is_a_value() {
        assert_eq!(
            render(&t("[{{company}}]"), &company("")).unwrap().text,
            "[]"
        );
    }

    #[test]
    fn unclosed_and_stray_braces_are_errors() {
        let v = company("X");
        assert_eq!(
            text_err("a {{company", &v),
            RenderError::Unclosed {
                part: Part::Text,
                offset: 2
            }
        );
        assert_eq!(
            text_err("{{ a {{company}}", &v),
            RenderError::Unclosed {
                part: Part::Text,
                offset: 0
            }
        );
        assert_eq!(
            text_err("a }} b", &v),
            RenderError::StrayClose {
                part: Part::Text,
                offset: 2
            }
        );
        assert_eq!(
            text_err("{{company}} }}", &v),
            RenderError::StrayClose {
                part: Part::Text,
                offset: 12
            }
        );
    }

    #[test]
    fn malformed_names_are_errors() {
        let v = company("X");
        for src in [
            "{{}}",
            "{{  }}",
            "{{com pany}}",
            "{{Company}}",
            "{{{company}}",
            "{{comp-any}}",
        ] {
            assert!(
                matches!(text_err(src, &v), RenderError::Malformed { .. }),
                "{src}"
            );
        }
    }

    #[test]
    fn placeholders_touching_literal_braces_are_errors() {
        let v = company("");
        for src in [
            "}{{company}}",
            "{{company}}}",
            "{{company}}{",
            "x}{{company}}}",
        ] {
            assert!(
                matches!(text_err(src, &v), RenderError::BraceAdjacent { .. }),
                "{src}"
            );
        }
    }

    #[test]
    fn errors_name_the_part() {
        let mut tpl = t("{{company}}");
        tpl.subject = "{{nope}}".into();
        assert!(matches!(
            render(&tpl, &company("X")),
            Err(RenderError::UnknownPlaceholder {
                part: Part::Subject,
                ..
            })
        ));
        let mut tpl = t("{{company}}");
        tpl.html = "}}".into();
        assert!(matches!(
            render(&tpl, &company("X")),
            Err(RenderError::StrayClose {
                part: Part::Html,
                ..
            })
        ));
    }

    #[test]
    fn values_are_html_escaped_in_html_only() {
        let tpl = Template {
            stage: Stage::T3,
            subject: "{{company}}".into(),
            html: "<b>{{company}}</b>".into(),
            text: "{{company}}".into(),
        };
        let mail = render(&tpl, &company("<script>alert('x')</script> & \"co\"")).unwrap();
        assert_eq!(
            mail.html,
            "<b>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;</b>"
        );
        assert_eq!(mail.text, "<script>alert('x')</script> & \"co\"");
        assert_eq!(mail.subject, "<script>alert('x')</script> & \"co\"");
    }

    #[test]
    fn values_are_not_re_expanded_and_braces_are_neutralised() {
        let tpl = Template {
            stage: Stage::T3,
            subject: "{{company}}".into(),
            html: "{{company}}".into(),
            text: "{{company}}".into(),
        };
        let vars = company("{{salutation}}").with(Placeholder::Salutation, "SHOULD NOT APPEAR");
        let mail = render(&tpl, &vars).unwrap();
        assert_eq!(mail.html, "&#123;&#123;salutation&#125;&#125;");
        assert_eq!(mail.text.replace(ZWSP, ""), "{{salutation}}");
        assert!(!mail.text.contains("{{") && !mail.subject.contains("{{"));
        assert!(!mail.text.contains("SHOULD NOT APPEAR"));
    }

    #[test]
    fn subject_is_one_line_and_html_keeps_line_breaks() {
        let tpl = Template {
            stage: Stage::T3,
            subject: "A {{company}}".into(),
            html: "{{company}}".into(),
            text: "{{company}}".into(),
        };
        let mail = render(&tpl, &company("x\r\nBcc: evil@example.com\ny")).unwrap();
        assert_eq!(mail.subject, "A x Bcc: evil@example.com y");
        assert_eq!(mail.html, "x<br>\nBcc: evil@example.com<br>\ny");
        assert_eq!(mail.text, "x\r\nBcc: evil@example.com\ny");
    }

    #[test]
    fn multibyte_text_around_placeholders() {
        let mail = render(&t("Grüße → {{company}} ✓ {ü}"), &company("Müller")).unwrap();
        assert_eq!(mail.text, "Grüße → Müller ✓ {ü}");
    }

    #[test]
    fn validate_checks_stage_availability() {
        let mut tpl = t("{{discount}}");
        assert_eq!(
            tpl.validate(),
            Err(RenderError::NotAvailable {
                part: Part::Text,
                placeholder: Placeholder::Discount,
                stage: Stage::T3
            })
        );
        tpl.stage = Stage::T7;
        assert_eq!(tpl.validate(), Ok(()));
        assert!(t("{{nope}}").validate().is_err());
    }

    #[test]
    fn placeholder_names_round_trip_and_stage_sets() {
        for p in Placeholder::ALL {
            assert_eq!(Placeholder::parse(p.name()), Some(p));
        }
        assert!(
            Placeholder::Products.available_in(Stage::T3)
                && !Placeholder::Products.available_in(Stage::T7)
        );
        assert!(
            Placeholder::Discount.available_in(Stage::T7)
                && !Placeholder::Discount.available_in(Stage::T3)
        );
        assert!(
            Placeholder::LegalFooter.available_in(Stage::T3)
                && Placeholder::LegalFooter.available_in(Stage::T7)
        );
    }

    #[test]
    fn default_templates_are_valid_and_cover_both_stages() {
        let [t3, t7] = default_templates();
        assert_eq!((t3.stage, t7.stage), (Stage::T3, Stage::T7));
        t3.validate().unwrap();
        t7.validate().unwrap();
        for tpl in [&t3, &t7] {
            let used = tpl.placeholders().unwrap();
            assert!(
                used.contains(&Placeholder::LegalFooter)
                    && used.contains(&Placeholder::UnsubscribeUrl)
            );
        }
    }

    #[test]
    fn personalise_fills_exactly_the_stage_placeholders() {
        let de = Territory::get(TerritoryId::De);
        let now = datetime!(2026-04-06 09:00 UTC);
        for stage in Stage::ALL {
            let vars = personalise(
                &lead(),
                stage,
                de,
                now,
                "https://x.example/unsubscribe?token=t",
            );
            let expected: Vec<_> = Placeholder::ALL
                .into_iter()
                .filter(|p| p.available_in(stage))
                .collect();
            assert_eq!(vars.keys().collect::<Vec<_>>().len(), expected.len());
            for p in expected {
                assert!(vars.get(p).is_some(), "{p} missing in {stage}");
            }
        }
    }

    #[test]
    fn t3_mail_with_default_template() {
        let de = Territory::get(TerritoryId::De);
        let now = datetime!(2026-04-06 09:00 UTC);
        let url = "https://crm.example/unsubscribe?token=abc.def";
        let mail = render(
            &default_templates()[0],
            &personalise(&lead(), Stage::T3, de, now, url),
        )
        .unwrap();
        assert!(mail.subject.starts_with(
            "Kantine Adler GmbH: Ihre kostenlose FreshPlan Starterbox Gemeinschaftsverpflegung"
        ));
        assert!(mail.text.starts_with("Guten Tag Anna Berger,"));
        assert!(
            mail.text
                .contains("Für den Bereich Gemeinschaftsverpflegung haben wir diese Auswahl")
        );
        assert!(
            mail.text.contains("Spargel"),
            "April has the asparagus addition"
        );
        assert!(mail.text.contains("Frühling"));
        assert!(mail.text.contains(&de.legal_footer()));
        assert!(mail.text.contains(url));
        assert!(
            mail.html
                .contains("href=\"https://crm.example/unsubscribe?token=abc.def\"")
        );
        assert!(
            !mail.html.contains("{{") && !mail.text.contains("{{") && !mail.subject.contains("{{")
        );
    }

    #[test]
    fn t7_mail_uses_territory_currency_and_format() {
        let ch = Territory::get(TerritoryId::Ch);
        let lead = Candidate {
            territory: TerritoryId::Ch,
            contact_person: None,
            ..lead()
        };
        let now = datetime!(2026-07-06 09:00 UTC);
        let mail = render(
            &default_templates()[1],
            &personalise(&lead, Stage::T7, ch, now, "u"),
        )
        .unwrap();
        assert_eq!(
            mail.subject,
            "25 % Rabatt auf Ihre erste Großbestellung, Kantine Adler GmbH"
        );
        assert!(mail.text.starts_with("Sehr geehrte Damen und Herren,"));
        assert!(
            mail.text
                .contains("25 % Rabatt ab einem Bestellwert von 2'000 CHF.")
        );
        assert!(mail.text.contains(&ch.legal_footer()));
    }

    #[test]
    fn missing_business_type_is_other_in_mails() {
        let de = Territory::get(TerritoryId::De);
        let lead = Candidate {
            business_type: None,
            ..lead()
        };
        let vars = personalise(&lead, Stage::T7, de, datetime!(2026-07-06 09:00 UTC), "u");
        assert_eq!(vars.get(Placeholder::Discount), Some("10"));
        assert_eq!(vars.get(Placeholder::MinimumOrder), Some("250"));
        assert_eq!(vars.get(Placeholder::BusinessType), Some("Gastronomie"));
    }

    #[test]
    fn seasonal_is_empty_without_a_seasonal_addition() {
        let de = Territory::get(TerritoryId::De);
        let vars = personalise(&lead(), Stage::T3, de, datetime!(2026-07-06 09:00 UTC), "u");
        assert_eq!(vars.get(Placeholder::Seasonal), Some(""));
    }

    #[test]
    fn amounts_are_grouped_per_territory() {
        assert_eq!(format_amount(TerritoryId::De, 250), "250");
        assert_eq!(format_amount(TerritoryId::De, 1000), "1.000");
        assert_eq!(format_amount(TerritoryId::Ch, 2000), "2'000");
        assert_eq!(format_amount(TerritoryId::De, 1_234_567), "1.234.567");
        assert_eq!(format_amount(TerritoryId::De, 0), "0");
    }

    fn any_vars() -> impl Strategy<Value = Vars> {
        proptest::collection::vec(testing::template_value(), Placeholder::ALL.len()).prop_map(
            |values| {
                let mut vars = Vars::new();
                for (p, v) in Placeholder::ALL.into_iter().zip(values) {
                    vars.set(p, v);
                }
                vars
            },
        )
    }

    proptest! {
        #[test]
        fn rendered_mail_never_contains_open_or_close_braces(
            vars in any_vars(),
            stage in testing::stage(),
        ) {
            let tpl = &default_templates()[usize::from(stage == Stage::T7)];
            let mail = render(tpl, &vars).unwrap();
            for part in [&mail.subject, &mail.html, &mail.text] {
                prop_assert!(!part.contains("{{") && !part.contains("}}"));
            }
            prop_assert!(!mail.html.contains("<script"));
            prop_assert!(!mail.subject.contains('\n'));
        }

        #[test]
        fn any_template_that_renders_never_outputs_braces_pairs(
            src in testing::template_source(),
            vars in any_vars(),
        ) {
            if let Ok(mail) = render(&t(&src), &vars) {
                prop_assert!(!mail.text.contains("{{") && !mail.text.contains("}}"));
            }
        }

        #[test]
        fn text_is_the_naive_substitution_up_to_zero_width_spaces(value in testing::template_value()) {
            let mail = render(&t("«{{company}}»"), &company(&value)).unwrap();
            prop_assert_eq!(mail.text.replace(ZWSP, ""), format!("«{}»", value.replace(ZWSP, "")));
        }

        #[test]
        fn unknown_placeholders_are_always_errors(
            name in "[a-z_][a-z0-9_]{0,20}",
            before in "[^{}]{0,20}",
            after in "[^{}]{0,20}",
            vars in any_vars(),
        ) {
            prop_assume!(Placeholder::parse(&name).is_none());
            let result = render(&t(&format!("{before}{{{{{name}}}}}{after}")), &vars);
            prop_assert!(
                matches!(result, Err(RenderError::UnknownPlaceholder { .. })),
                "expected UnknownPlaceholder, got {:?}",
                result
            );
        }

        #[test]
        fn unfilled_placeholders_are_always_errors(
            vars in any_vars(),
            missing in proptest::sample::select(Placeholder::ALL.to_vec()),
            part in 0usize..3,
        ) {
            let mut vars = vars;
            vars.remove(missing);
            let placeholder = format!("x {{{{ {} }}}} y", missing.name());
            let mut tpl = Template { stage: Stage::T3, subject: "s".into(), html: "h".into(), text: "t".into() };
            match part {
                0 => tpl.subject = placeholder,
                1 => tpl.html = placeholder,
                _ => tpl.text = placeholder,
            }
            let result = render(&tpl, &vars);
            let is_missing = matches!(result, Err(RenderError::MissingValue { placeholder, .. }) if placeholder == missing);
            prop_assert!(is_missing, "expected MissingValue({}), got {:?}", missing, result);
        }

        #[test]
        fn personalised_default_templates_always_render(
            c in testing::candidate(),
            now in testing::instant(),
            stage in testing::stage(),
        ) {
            let territory = Territory::get(c.territory);
            let vars = personalise(&c, stage, territory, now, "https://x.example/u?token=a.b");
            let tpl = &default_templates()[usize::from(stage == Stage::T7)];
            let mail = render(tpl, &vars);
            prop_assert!(mail.is_ok(), "{:?}", mail);
        }
    }
}
