//! Bodies of the mails endpoints.
