//! Bodies of the events endpoints.
