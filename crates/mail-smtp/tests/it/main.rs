//! Integration tests of the SMTP adapter: a fresh PostgreSQL database per test
//! (`#[sqlx::test]`, `DATABASE_URL` of a role that may create databases), mails queued by the
//! real follow-up run (`PgFollowUpStore`), delivered by the dispatcher to a real SMTP server the
//! test starts on 127.0.0.1 ([`sink`]).

mod dispatch;
