//! The keys a serde type reads, from serde itself.

use serde::Deserialize;

/// The keys a serde type reads as a struct, from serde itself: `read` is handed a deserializer
/// that records the field list `deserialize_struct` is called with, and stops there.
pub fn fields_of<T>(read: impl FnOnce(FieldRecorder) -> Result<T, Fields>) -> Vec<&'static str> {
    match read(FieldRecorder) {
        Ok(_) => Vec::new(),
        Err(Fields(f)) => f,
    }
}

/// The keys of `T` (see [`fields_of`]).
pub fn fields<T: for<'de> Deserialize<'de>>() -> Vec<&'static str> {
    fields_of(T::deserialize)
}

/// A deserializer that only records a struct's field names (see [`fields_of`]).
pub struct FieldRecorder;

/// The field names [`FieldRecorder`] saw (empty: not a struct); its "error".
#[derive(Debug)]
pub struct Fields(pub Vec<&'static str>);

impl std::fmt::Display for Fields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "fields {:?}", self.0)
    }
}

impl std::error::Error for Fields {}

impl serde::de::Error for Fields {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Fields(Vec::new())
    }
}

impl<'de> serde::Deserializer<'de> for FieldRecorder {
    type Error = Fields;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
        Err(Fields(Vec::new()))
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Fields> {
        Err(Fields(fields.to_vec()))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
