use super::*;

#[test]
fn placeholder() {
    assert!(Config::from_toml("", "t").is_ok());
}
