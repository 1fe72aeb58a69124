//! One Web Bot Auth verification with the key directory cached.
fn main() {}
