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
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= limit && *c != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The fewest single-character insertions, deletions and substitutions that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    // One row of the table at a time: `row[j]` is the distance from the prefix of `a` read so
    // far to `b[..j]`.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ProviderKind;

    #[test]
    fn nearest_suggests_only_a_close_candidate() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("secert", "secret"), 2);
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
