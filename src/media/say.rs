//! `number:` and `characters:` media: the sound ids Asterisk plays to say a
//! number or spell a string (main/say.c, English rules, which Asterisk
//! also uses for every language without rules of its own).

/// The sounds saying `num` (`get_number_str_en`): "digits/minus" before a
/// negative number, "digits/N" below 20, tens, "digits/N" +
/// "digits/hundred", then thousands, millions and billions said
/// recursively.
pub fn number_sounds(num: i64) -> Vec<String> {
    let mut out = Vec::new();
    if num == 0 {
        out.push("digits/0".to_string());
        return out;
    }
    let mut n = num;
    if n < 0 {
        out.push("digits/minus".to_string());
        n = n.saturating_neg();
    }
    say_positive(n, &mut out);
    out
}

fn say_positive(mut n: i64, out: &mut Vec<String>) {
    for (unit, name) in [
        (1_000_000_000, "digits/billion"),
        (1_000_000, "digits/million"),
        (1_000, "digits/thousand"),
    ] {
        if n >= unit {
            say_positive(n / unit, out);
            out.push(name.to_string());
            n %= unit;
        }
    }
    if n >= 100 {
        out.push(format!("digits/{}", n / 100));
        out.push("digits/hundred".to_string());
        n %= 100;
    }
    if n >= 20 {
        out.push(format!("digits/{}", n / 10 * 10));
        n %= 10;
    }
    if n > 0 {
        out.push(format!("digits/{n}"));
    }
}

/// The sounds spelling `s` (`ast_get_character_str`, case-insensitive):
/// letters, digits and a few signs by name. Characters without a sound are
/// skipped, as Asterisk skips files that do not exist (the caller checks).
pub fn character_sounds(s: &str) -> Vec<String> {
    s.chars()
        .filter_map(|c| {
            let named = match c {
                '*' => "digits/star",
                '#' => "digits/pound",
                '!' => "letters/exclaimation-point",
                '@' => "letters/at",
                '$' => "letters/dollar",
                '-' => "letters/dash",
                '.' => "letters/dot",
                '=' => "letters/equals",
                '+' => "letters/plus",
                '/' => "letters/slash",
                ' ' => "letters/space",
                '0'..='9' => return Some(format!("digits/{c}")),
                c if c.is_ascii_alphabetic() => {
                    return Some(format!("letters/{}", c.to_ascii_lowercase()))
                }
                _ => return None,
            };
            Some(named.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_said_as_asterisk_says_them_in_english() {
        let said = |n| number_sounds(n).join(" ");
        assert_eq!(said(0), "digits/0");
        assert_eq!(said(7), "digits/7");
        assert_eq!(said(19), "digits/19");
        assert_eq!(said(42), "digits/40 digits/2");
        assert_eq!(said(300), "digits/3 digits/hundred");
        assert_eq!(said(-115), "digits/minus digits/1 digits/hundred digits/15");
        assert_eq!(
            said(2_005_030),
            "digits/2 digits/million digits/5 digits/thousand digits/30"
        );
        assert_eq!(said(1_000_000_000), "digits/1 digits/billion");
    }

    #[test]
    fn characters_are_spelled() {
        assert_eq!(
            character_sounds("Ab1#@ é"),
            vec![
                "letters/a",
                "letters/b",
                "digits/1",
                "digits/pound",
                "letters/at",
                "letters/space"
            ]
        );
    }
}
