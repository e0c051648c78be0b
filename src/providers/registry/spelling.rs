//! The "did you mean" of an unknown provider name or key: the nearest candidate by edit
//! distance, when it is near enough to be a slip of the keyboard.

/// The candidate nearest to `word` by edit distance (Levenshtein, over characters), when it is
/// near enough to be a slip of the keyboard rather than another word: at most 2 edits, and
/// fewer than `word` has characters. For the "did you mean" of an unknown key or provider name;
/// the first of equally near candidates wins.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.min(word.chars().count().saturating_sub(1));
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(word, c), c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;

    #[test]
    fn nearest_suggests_only_a_close_candidate() {
        assert_eq!(strsim::levenshtein("", "abc"), 3);
        assert_eq!(strsim::levenshtein("kitten", "sitting"), 3);
        assert_eq!(strsim::levenshtein("secert", "secret"), 2);
        let kinds = ProviderKind::ALL.map(|k| k.as_str());
        assert_eq!(nearest("githb", kinds), Some("github"));
        assert_eq!(nearest("strpie", kinds), Some("stripe"));
        assert_eq!(nearest("paypal", kinds), None);
        assert_eq!(nearest("bnd", ["bind", "data_dir"]), Some("bind"));
        // A word of one or two characters is near everything short: no guess.
        assert_eq!(nearest("x", ["a", "b"]), None);
        assert_eq!(nearest("bind", ["bind"]), None);
    }
}
