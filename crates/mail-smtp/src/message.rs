//! Building the MIME message of a queued mail.

use std::time::SystemTime;

use lettre::Message;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use uuid::Uuid;

use crate::outbox::QueuedMail;

/// Who the mails come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// `From` (and the envelope sender).
    pub from: Mailbox,
    /// `Reply-To`, e.g. the sales team's shared inbox.
    pub reply_to: Option<Mailbox>,
}

impl Sender {
    /// A sender.
    pub fn new(from: Mailbox, reply_to: Option<Mailbox>) -> Sender {
        Sender { from, reply_to }
    }

    /// The domain of `Message-ID`s: the sender address's domain.
    pub fn domain(&self) -> &str {
        self.from.email.domain()
    }
}

/// `List-Unsubscribe` (RFC 2369): `<https://…/unsubscribe?token=…>`. Only `https` (never
/// `mailto`), so that [`ListUnsubscribePost`] applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListUnsubscribe(String);

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(ListUnsubscribe(s.to_owned()))
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), format!("<{}>", self.0))
    }
}

/// The value of [`ListUnsubscribePost`]: the only one RFC 8058 defines.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058): tells the mailbox provider
/// that a `POST` of that body to the `List-Unsubscribe` URL unsubscribes, without a page to
/// click through — and that a `GET` of the URL (a link scanner's, a prefetcher's) does not.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListUnsubscribePost;

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if s.trim() == ONE_CLICK {
            Ok(ListUnsubscribePost)
        } else {
            Err(format!("List-Unsubscribe-Post is not {ONE_CLICK:?}: {s:?}").into())
        }
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), ONE_CLICK.to_owned())
    }
}

/// The `Message-ID` of mail `id`: `<id@domain>`, the same on every attempt, so a receiver can
/// recognise a mail the at-least-once delivery sent twice.
///
/// ```
/// let id = uuid::Uuid::from_u128(1);
/// assert_eq!(
///     freshplan_mail_smtp::message_id(id, "freshplan.example"),
///     "<00000000-0000-0000-0000-000000000001@freshplan.example>"
/// );
/// ```
pub fn message_id(id: Uuid, domain: &str) -> String {
    format!("<{}@{domain}>", id.hyphenated())
}

/// Why a mail cannot become a message (never fixed by retrying: the mail is given up).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The recipient is no address lettre accepts.
    #[error("invalid recipient address {0:?}")]
    Recipient(String),
    /// The message could not be assembled.
    #[error("the message could not be built")]
    Message(#[source] lettre::error::Error),
}

/// The message of `mail`: `multipart/alternative` with the text and the HTML body, `From`,
/// `To`, `Subject`, `Date` (`date`), a deterministic `Message-ID`, `List-Unsubscribe` and
/// `List-Unsubscribe-Post` (RFC 8058 one-click).
pub fn build_message(
    mail: &QueuedMail,
    sender: &Sender,
    date: SystemTime,
) -> Result<Message, BuildError> {
    let to: Mailbox = mail
        .recipient
        .trim()
        .parse()
        .map_err(|_| BuildError::Recipient(mail.recipient.clone()))?;
    let mut builder = Message::builder()
        .message_id(Some(message_id(mail.id, sender.domain())))
        .from(sender.from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .date(date)
        .header(ListUnsubscribe(mail.unsubscribe_url.clone()))
        .header(ListUnsubscribePost);
    if let Some(reply_to) = &sender.reply_to {
        builder = builder.reply_to(reply_to.clone());
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(BuildError::Message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail() -> QueuedMail {
        QueuedMail {
            id: Uuid::from_u128(7),
            lead_id: Uuid::from_u128(1),
            recipient: "kueche@gasthaus-adler.de".into(),
            subject: "Gasthaus Adler: Ihre kostenlose Probierbox".into(),
            html: "<p>Grüße</p>".into(),
            text: "Grüße".into(),
            unsubscribe_url: "https://crm.example/unsubscribe?token=abc.def".into(),
            attempts: 1,
        }
    }

    fn sender() -> Sender {
        Sender::new(
            "FreshPlan <noreply@freshplan.example>".parse().unwrap(),
            Some("vertrieb@freshplan.example".parse().unwrap()),
        )
    }

    #[test]
    fn headers_and_parts() {
        let m = build_message(&mail(), &sender(), SystemTime::UNIX_EPOCH).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(
            raw.contains(
                "Message-ID: <00000000-0000-0000-0000-000000000007@freshplan.example>\r\n"
            )
        );
        assert!(
            raw.contains("List-Unsubscribe: <https://crm.example/unsubscribe?token=abc.def>\r\n")
        );
        assert!(raw.contains("Reply-To: vertrieb@freshplan.example\r\n"));
        // RFC 8058: both headers, in the message's header block (not in a part).
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(head.contains("\r\nList-Unsubscribe: <"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        let envelope = m.envelope();
        assert_eq!(envelope.to()[0].to_string(), "kueche@gasthaus-adler.de");
        assert_eq!(
            envelope.from().unwrap().to_string(),
            "noreply@freshplan.example"
        );
    }

    #[test]
    fn a_long_unsubscribe_url_reads_back_whole_and_one_click_is_exact() {
        let url = format!(
            "https://crm.example/unsubscribe?token={}.{}",
            "A".repeat(22),
            "b".repeat(120)
        );
        let m = build_message(
            &QueuedMail {
                unsubscribe_url: url.clone(),
                ..mail()
            },
            &sender(),
            SystemTime::UNIX_EPOCH,
        )
        .unwrap();
        let raw = m.formatted();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        // Unfolded (RFC 5322 §2.2.3) and without the whitespace RFC 2369 lets a reader ignore
        // inside the angle brackets, the header is the URL.
        let unfold = |v: &str| v.split_whitespace().collect::<String>();
        assert_eq!(
            unfold(parsed.header_raw("List-Unsubscribe").unwrap()),
            format!("<{url}>")
        );
        assert_eq!(
            parsed.header_raw("List-Unsubscribe-Post").unwrap().trim(),
            ONE_CLICK
        );
        assert!(ListUnsubscribePost::parse(ONE_CLICK).is_ok());
        assert!(ListUnsubscribePost::parse("List-Unsubscribe=Maybe").is_err());
    }

    #[test]
    fn the_same_mail_gets_the_same_message_id_every_time() {
        let a = build_message(&mail(), &sender(), SystemTime::UNIX_EPOCH).unwrap();
        let b = build_message(&mail(), &sender(), SystemTime::now()).unwrap();
        let id = |m: &Message| {
            String::from_utf8(m.formatted())
                .unwrap()
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_owned()
        };
        assert_eq!(id(&a), id(&b));
    }

    #[test]
    fn a_bad_recipient_is_a_build_error() {
        let bad = QueuedMail {
            recipient: "not an address".into(),
            ..mail()
        };
        assert!(matches!(
            build_message(&bad, &sender(), SystemTime::UNIX_EPOCH),
            Err(BuildError::Recipient(_))
        ));
    }
}
