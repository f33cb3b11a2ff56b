use std::fmt;

use zeroize::Zeroizing;

/// A decrypted secret. Its bytes are zeroised when dropped, and it never
/// prints its value: `Debug` and `Display` show `<secret NAME>`, so a value
/// that ends up in a log line or an error message by mistake stays hidden.
#[derive(Clone)]
pub struct Secret {
    name: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl Secret {
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Secret {
        Secret { name: name.into(), bytes: Zeroizing::new(bytes) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The clear text. Callers keep it in memory only, never in a log or a
    /// file other than the secret's target.
    pub fn expose(&self) -> &[u8] {
        &self.bytes
    }

    /// The value as text, for templates (`None` when it is not UTF-8).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes).ok()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret {}>", self.name)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret {}>", self.name)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = super::Secret::new("db_password", b"hunter2".to_vec());
        for shown in [format!("{s:?}"), format!("{s}"), format!("{:?}", Some(&s))] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("<secret db_password>"), "{shown}");
        }
        assert_eq!(s.expose(), b"hunter2");
    }
}
