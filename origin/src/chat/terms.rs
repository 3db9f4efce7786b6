//! Blocked terms: a broadcast's owner lists words its chat refuses. A
//! message is compared after Unicode compatibility normalization (NFKC) and
//! lowercasing, on both sides, so that case, full-width letters, half-width
//! or decomposed Hangul do not get a term through. The sender alone is told;
//! the room sees nothing. Each room reads its list from the store at most
//! every [`super::cached::REFRESH`], so a change holds on every origin
//! within that.

use unicode_normalization::UnicodeNormalization;

use crate::store::{Store, StoreError};

/// Terms per broadcast.
pub const MAX_TERMS: usize = 200;
/// Longest term, in characters.
pub const MAX_TERM_CHARS: usize = 50;
/// What the sender of a refused message is told.
pub const REFUSED: &str = "not sent: your message contains a term blocked in this chat";

/// The form terms and messages are compared in (pure).
pub fn normalize(s: &str) -> String {
    s.nfkc().collect::<String>().to_lowercase()
}

/// An owner's list, checked: trimmed, empty lines dropped, duplicates (after
/// normalization) dropped, at most [`MAX_TERMS`] of at most
/// [`MAX_TERM_CHARS`] without control characters (pure).
pub fn validate(terms: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for t in terms.iter().map(|t| t.trim()).filter(|t| !t.is_empty()) {
        if t.chars().count() > MAX_TERM_CHARS {
            return Err(format!(
                "a blocked term is longer than {MAX_TERM_CHARS} characters"
            ));
        }
        if t.chars().any(char::is_control) {
            return Err("a blocked term contains control characters".into());
        }
        if !out.iter().any(|o| normalize(o) == normalize(t)) {
            out.push(t.to_owned());
        }
    }
    if out.len() > MAX_TERMS {
        return Err(format!("at most {MAX_TERMS} blocked terms"));
    }
    Ok(out)
}

/// Whether `body` contains one of `normalized` terms (pure).
pub fn blocked(body: &str, normalized: &[String]) -> bool {
    if normalized.is_empty() {
        return false;
    }
    let body = normalize(body);
    normalized.iter().any(|t| body.contains(t.as_str()))
}

/// `broadcast`'s terms, normalized, as the store has them now.
pub async fn read(store: &dyn Store, broadcast: &str) -> Result<Vec<String>, StoreError> {
    let r = store.get(broadcast).await?;
    Ok(r.blocked_terms.iter().map(|t| normalize(t)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(terms: &[&str]) -> Vec<String> {
        terms.iter().map(|t| normalize(t)).collect()
    }

    #[test]
    fn terms_match_whatever_the_case_the_width_or_the_hangul_form() {
        let terms = list(&["Spam", "바보"]);
        assert!(blocked("buy SPAM now", &terms));
        assert!(blocked("ｓｐａｍ", &terms), "full-width letters");
        assert!(blocked("너 바보야", &terms));
        // 바보 spelled in conjoining jamo (decomposed), as some keyboards send it.
        assert!(blocked("\u{1107}\u{1161}\u{1107}\u{1169}", &terms));
        assert!(!blocked("hello 바다", &terms));
        assert!(!blocked("anything", &[]));
        // A term typed in half-width forms matches the usual spelling.
        assert!(blocked("ｱｲｳ", &list(&["アイウ"])));
    }

    #[test]
    fn lists_are_trimmed_deduplicated_and_bounded() {
        let v = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            validate(&v(&[" a ", "", "A", "ｂ", "b"])).unwrap(),
            ["a", "ｂ"]
        );
        assert!(validate(&v(&[&"x".repeat(MAX_TERM_CHARS + 1)])).is_err());
        assert!(validate(&v(&["a\u{7}"])).is_err());
        let many: Vec<String> = (0..=MAX_TERMS).map(|i| format!("t{i}")).collect();
        assert!(validate(&many).is_err());
    }
}
