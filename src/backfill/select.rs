//! What the listers share: which event types a run asks for, and how much of its window the
//! pages so far have covered.

use super::Window;

/// Whether `name` matches one of `globs` (all names when there is none). `*` matches any run
/// of characters, dots included; every other character only itself.
pub fn type_matches(globs: &[String], name: &str) -> bool {
    globs.is_empty() || globs.iter().any(|g| glob(g.as_bytes(), name.as_bytes()))
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // The classic two-pointer match with one backtrack point: linear for one `*`, and never
    // worse than pattern × text.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What [`Lister::covered`] answers, from the newest creation time a lister has listed.
pub fn covered(window: Window, newest_listed_ms: Option<i64>, done: bool) -> Window {
    let until_ms = match (done, newest_listed_ms) {
        (true, _) => window.until_ms,
        (false, Some(ms)) => ms - 1,
        (false, None) => window.since_ms - 1,
    };
    Window { since_ms: window.since_ms, until_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_stripes_wildcard() {
        let g = |p: &str| vec![p.to_string()];
        assert!(type_matches(&[], "anything"));
        assert!(type_matches(&g("invoice.*"), "invoice.paid"));
        assert!(type_matches(&g("invoice.*"), "invoice.payment_failed"));
        assert!(!type_matches(&g("invoice.*"), "invoiceitem.created"));
        assert!(!type_matches(&g("invoice.paid"), "invoice.paid.extra"));
        assert!(type_matches(&g("*.created"), "customer.created"));
        assert!(type_matches(&g("a*b*c"), "aXXbYYc"));
        assert!(!type_matches(&g("a*b*c"), "aXXbYY"));
        assert!(type_matches(&[String::from("x"), String::from("push")], "push"));
    }
}
