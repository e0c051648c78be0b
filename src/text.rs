//! Text cut to a bound in bytes without splitting a character: messages, answers and keys shown
//! to a person are bounded, and a cut in the middle of a UTF-8 sequence would panic. A leaf.

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn a_cut_keeps_whole_characters() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("héllo", 99), "héllo");
        assert_eq!(cut("", 5), "");
        assert_eq!(cut("€", 2), "");
    }
}
