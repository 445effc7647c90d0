//! The text dictionaries and injection patterns are matched against: every character folded
//! (ASCII case, full-width forms to ASCII, traditional Chinese to simplified, other letters
//! lowercased) and every character that is neither a letter nor a digit dropped, so `Ｆ.Ｕ.Ｃ.Ｋ`,
//! `保 本` and `穩賺` read as `fuck`, `保本` and `稳赚`. Each byte of the folded text remembers
//! where its character came from, so a match maps back to a span of the original.

use std::sync::OnceLock;

/// Folded text of a window of an original text.
#[derive(Debug, Default)]
pub(crate) struct Folded {
    pub text: String,
    /// For each byte of `text`, the byte offset in the original of the character it came from.
    origin: Vec<u32>,
}

impl Folded {
    /// Folds `original[from..to]` (both at character boundaries), reusing this buffer.
    pub(crate) fn fold(&mut self, original: &str, from: usize, to: usize) {
        self.text.clear();
        self.origin.clear();
        let window = &original[from..to];
        let bytes = window.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            let byte = bytes[index];
            if byte.is_ascii() {
                if byte.is_ascii_alphanumeric() {
                    self.text.push(char::from(byte.to_ascii_lowercase()));
                    self.origin.push(offset(from + index));
                }
                index += 1;
                continue;
            }
            let Some(character) = window[index..].chars().next() else {
                break;
            };
            if let Some(folded) = fold(character) {
                self.text.push(folded);
                let start = offset(from + index);
                self.origin
                    .extend(std::iter::repeat_n(start, folded.len_utf8()));
            }
            index += character.len_utf8();
        }
    }

    /// The original span of folded bytes `start..end` (`end > start`, both at character
    /// boundaries of the folded text).
    pub(crate) fn original_span(&self, original: &str, start: usize, end: usize) -> (usize, usize) {
        let first = self.origin[start] as usize;
        let last = self.origin[end - 1] as usize;
        let last_len = original[last..].chars().next().map_or(1, char::len_utf8);
        (first, last + last_len)
    }

    /// Original byte spans of the characters of folded bytes `start..end`, in order.
    pub(crate) fn origins<'a>(
        &'a self,
        original: &'a str,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        let text = &self.text[start..end];
        text.char_indices().map(move |(index, _)| {
            let origin = self.origin[start + index] as usize;
            let width = original[origin..].chars().next().map_or(1, char::len_utf8);
            (origin, origin + width)
        })
    }
}

/// Whether at most `max_gap` characters (separators folding dropped) stand between each two
/// consecutive matched characters, given as their original byte spans in order.
pub(crate) fn gaps_within(
    original: &str,
    characters: impl Iterator<Item = (usize, usize)>,
    max_gap: usize,
) -> bool {
    let mut previous_end: Option<usize> = None;
    for (start, end) in characters {
        if let Some(previous_end) = previous_end
            && original[previous_end..start].chars().count() > max_gap
        {
            return false;
        }
        previous_end = Some(end);
    }
    true
}

fn offset(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Folds one non-ASCII character; `None` for separators (anything that is neither a letter
/// nor a digit: spaces, punctuation, symbols, zero-width characters, emoji).
#[inline]
pub(crate) fn fold(character: char) -> Option<char> {
    if character.is_ascii() {
        return character
            .is_ascii_alphanumeric()
            .then(|| character.to_ascii_lowercase());
    }
    let code = u32::from(character);
    // Full-width ASCII forms (U+FF01–U+FF5E) are their ASCII characters shifted.
    if (0xFF01..=0xFF5E).contains(&code) {
        let ascii = char::from_u32(code - 0xFEE0)?;
        return ascii
            .is_ascii_alphanumeric()
            .then(|| ascii.to_ascii_lowercase());
    }
    if let Some(simplified) = simplified(character) {
        return Some(simplified);
    }
    if !character.is_alphanumeric() {
        return None;
    }
    let mut lower = character.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(single), None) => Some(single),
        _ => Some(character),
    }
}

/// Folds a whole string (terms of a dictionary, test input).
pub(crate) fn fold_str(text: &str) -> String {
    text.chars().filter_map(fold).collect()
}

/// Whether a character belongs to a script written without spaces between words, where a
/// term may start or end anywhere.
pub(crate) fn is_cjk(character: char) -> bool {
    matches!(u32::from(character),
        0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF)
}

/// Whether a character continues a word of a spaced script (so a term must not start or end
/// next to it).
pub(crate) fn is_word_char(character: char) -> bool {
    character.is_alphanumeric() && !is_cjk(character)
}

/// CJK Unified Ideographs Extension A through the Unified Ideographs block.
const HAN_FIRST: u32 = 0x3400;
const HAN_LAST: u32 = 0x9FFF;

/// The simplified form of a traditional Han character, if it has one.
fn simplified(character: char) -> Option<char> {
    let code = u32::from(character);
    if !(HAN_FIRST..=HAN_LAST).contains(&code) {
        return None;
    }
    let table = SIMPLIFIED.get_or_init(simplified_table);
    let mapped = table[(code - HAN_FIRST) as usize];
    if mapped == 0 {
        Some(character)
    } else {
        char::from_u32(mapped)
    }
}

static SIMPLIFIED: OnceLock<Box<[u32]>> = OnceLock::new();

/// One entry per Han character of the range: its simplified form, or 0 for itself. Built
/// once from fast2s's character table (about 10 ms), so folding is one array read.
fn simplified_table() -> Box<[u32]> {
    let mut table = vec![0; (HAN_LAST - HAN_FIRST + 1) as usize];
    let mut buffer = [0u8; 4];
    for code in HAN_FIRST..=HAN_LAST {
        let Some(character) = char::from_u32(code) else {
            continue;
        };
        let converted = fast2s::convert(character.encode_utf8(&mut buffer));
        let mut chars = converted.chars();
        if let (Some(simplified), None) = (chars.next(), chars.next())
            && simplified != character
        {
            table[(code - HAN_FIRST) as usize] = u32::from(simplified);
        }
    }
    table.into_boxed_slice()
}

/// Builds the folding table now rather than on the first request.
pub(crate) fn warm_up() {
    SIMPLIFIED.get_or_init(simplified_table);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_width_traditional_and_separators() {
        let cases = [
            ("Hello, World", "helloworld"),
            ("ＦＵＣＫ", "fuck"),
            ("f.u.c.k", "fuck"),
            ("穩賺不賠", "稳赚不赔"),
            ("保　本", "保本"),
            ("保\u{200B}本", "保本"),
            ("ÄÖ straße", "äöstraße"),
            ("１２３", "123"),
        ];
        for (input, expected) in cases {
            assert_eq!(fold_str(input), expected, "{input}");
        }
    }

    #[test]
    fn spans_map_back_to_the_original() {
        let original = "说 穩 賺 吧";
        let mut folded = Folded::default();
        folded.fold(original, 0, original.len());
        assert_eq!(folded.text, "说稳赚吧");
        let start = folded.text.find("稳赚").unwrap_or(0);
        let (from, to) = folded.original_span(original, start, start + "稳赚".len());
        assert_eq!(&original[from..to], "穩 賺");
    }
}
