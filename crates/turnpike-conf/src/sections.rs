//! The rails' sections of one configuration, each a value of its owner's type.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

/// A section's value as [`Sections`] holds it: any type that can be compared and shown.
pub trait AnySection: Any + Debug + Send + Sync {
    /// Whether `other` is a value of the same type, equal to this one.
    fn same(&self, other: &dyn AnySection) -> bool;
    /// This value, to be downcast to its type.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + Debug + PartialEq + Send + Sync> AnySection for T {
    fn same(&self, other: &dyn AnySection) -> bool {
        other
            .as_any()
            .downcast_ref::<T>()
            .is_some_and(|o| o == self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The sections the rails read, by table name (`pow`, `l402`, `lightning`, `oauth`, …), each a
/// value of the type its rail reads it as ([`crate::RailConf::read`]); the gateway holds them
/// without knowing their types, and each rail finds its own with [`Sections::get`].
#[derive(Clone, Default, Debug)]
pub struct Sections(Vec<(&'static str, Arc<dyn AnySection>)>);

impl Sections {
    /// Sets table `table` to `value` (replacing what it held).
    pub fn set<T: AnySection>(&mut self, table: &'static str, value: T) {
        self.remove(table);
        self.0.push((table, Arc::new(value)));
    }

    /// Removes table `table`.
    pub fn remove(&mut self, table: &str) {
        self.0.retain(|(t, _)| *t != table);
    }

    /// Table `table`, when it is there and of type `T`.
    pub fn get<T: Any>(&self, table: &str) -> Option<&T> {
        self.0
            .iter()
            .find(|(t, _)| *t == table)
            .and_then(|(_, v)| v.as_any().downcast_ref::<T>())
    }

    /// Whether table `table` is there.
    pub fn has(&self, table: &str) -> bool {
        self.0.iter().any(|(t, _)| *t == table)
    }

    /// Whether table `table` is the same here and in `other` (both absent included).
    pub fn same_table(&self, other: &Sections, table: &str) -> bool {
        let find = |s: &Sections| {
            s.0.iter()
                .find(|(t, _)| *t == table)
                .map(|(_, v)| v.clone())
        };
        match (find(self), find(other)) {
            (None, None) => true,
            (Some(a), Some(b)) => a.same(b.as_ref()),
            _ => false,
        }
    }
}

impl PartialEq for Sections {
    fn eq(&self, other: &Sections) -> bool {
        self.0.len() == other.0.len() && self.0.iter().all(|(t, _)| self.same_table(other, t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_found_by_table_and_type_and_compared_by_value() {
        let mut a = Sections::default();
        a.set("pow", 5u64);
        a.set("oauth", String::from("x"));
        assert_eq!(a.get::<u64>("pow"), Some(&5));
        assert_eq!(a.get::<String>("pow"), None);
        assert!(a.has("oauth") && !a.has("l402"));
        let mut b = Sections::default();
        b.set("oauth", String::from("x"));
        b.set("pow", 5u64);
        assert_eq!(a, b);
        b.set("pow", 6u64);
        assert_ne!(a, b);
        assert!(a.same_table(&b, "oauth") && !a.same_table(&b, "pow"));
        assert!(a.same_table(&b, "l402"));
        b.remove("pow");
        assert_ne!(a, b);
    }
}
