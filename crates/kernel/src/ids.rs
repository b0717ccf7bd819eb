use uuid::Uuid;

/// The id-generator port.
#[cfg_attr(feature = "mocks", mockall::automock)]
pub trait IdGenerator: Send + Sync + 'static {
    /// A fresh, unique id.
    fn new_id(&self) -> Uuid;
}

/// UUID v7 ids: time-ordered, so they index well and sort by creation.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7Generator;

impl IdGenerator for UuidV7Generator {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_are_version_7_and_distinct() {
        let g = UuidV7Generator;
        let a = g.new_id();
        let b = g.new_id();
        assert_eq!(a.get_version_num(), 7);
        assert_ne!(a, b);
    }
}
