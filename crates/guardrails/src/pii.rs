//! Personal data detectors that validate what they find: resident ID numbers by region, birth
//! date and checksum, card numbers by Luhn, addresses by parsing. One pass over the bytes looks
//! only at digits, `+`, `@` and `:`, so text without them costs one comparison per byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use landfall_config::PiiKind;

use crate::scan::{Span, Window};

/// A match: its bytes and kind.
type Found = (usize, usize, PiiKind);

/// Longest text any detector matches, in bytes (longer candidates are not personal data).
pub(crate) const MAX_PII_BYTES: usize = 64;
/// Most digits in a number any detector accepts.
const MAX_DIGITS: usize = 19;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pii {
    enabled: u8,
}

impl Pii {
    pub(crate) fn new(kinds: &[PiiKind]) -> Self {
        let mut enabled = 0;
        for kind in kinds {
            enabled |= bit(*kind);
        }
        Self { enabled }
    }

    fn wants(self, kind: PiiKind) -> bool {
        self.enabled & bit(kind) != 0
    }

    /// The tag a span carries: the kind's position in [`PiiKind::ALL`].
    pub(crate) fn kind_of(tag: u32) -> PiiKind {
        PiiKind::ALL
            .get(tag as usize)
            .copied()
            .unwrap_or(PiiKind::Email)
    }

    pub(crate) fn find(self, window: &Window<'_>, spans: &mut Vec<Span>) {
        let text = window.text;
        let bytes = text.as_bytes();
        let end = window.scan_end(MAX_PII_BYTES);
        let mut index = window.from;
        while index < end {
            let byte = bytes[index];
            let found = if byte.is_ascii_digit() && starts_number(bytes, index) {
                let (next, found) = self.number(text, index, false);
                index = next;
                found
            } else if byte == b'+'
                && bytes.get(index + 1).is_some_and(u8::is_ascii_digit)
                && !(index > 0 && bytes[index - 1].is_ascii_alphanumeric())
            {
                let (next, found) = self.number(text, index, true);
                index = next;
                found
            } else if byte == b'@' && self.wants(PiiKind::Email) {
                let found = email(bytes, index);
                index = found.map_or(index + 1, |(_, stop)| stop);
                found.map(|(start, stop)| (start, stop, PiiKind::Email))
            } else if byte == b':' && self.wants(PiiKind::IpAddress) {
                let found = ipv6(text, index);
                index = found.map_or(index + 1, |(_, stop)| stop);
                found.map(|(start, stop)| (start, stop, PiiKind::IpAddress))
            } else {
                index += 1;
                None
            };
            if let Some((start, stop, kind)) = found
                && window.owns(start)
            {
                spans.push(Span::new(start, stop, tag(kind)));
            }
        }
    }

    /// Reads the number starting at `start` (digits joined by single spaces or hyphens, an ID's
    /// final `X`, or a dotted IPv4 address) and says what it is. Returns where scanning goes on.
    fn number(self, text: &str, start: usize, plus: bool) -> (usize, Option<Found>) {
        let bytes = text.as_bytes();
        if !plus && start > 0 && bytes[start - 1].is_ascii_alphabetic() {
            let stop = digits_end(bytes, start);
            return (stop, self.passport(bytes, start, stop));
        }
        if !plus && let Some(found) = self.ipv4(text, start) {
            return found;
        }
        let mut digits = [0u8; MAX_DIGITS];
        let mut count = 0usize;
        let mut separators = 0usize;
        let mut index = if plus { start + 1 } else { start };
        let limit = (start + MAX_PII_BYTES).min(bytes.len());
        while index < bytes.len() {
            let byte = bytes[index];
            if byte.is_ascii_digit() {
                if count < MAX_DIGITS {
                    digits[count] = byte - b'0';
                }
                count += 1;
                index += 1;
            } else if joins(bytes, index) {
                separators += 1;
                index += 1;
            } else {
                break;
            }
            if index > limit {
                return (skip_number(bytes, index), None);
            }
        }
        let mut check_x = false;
        if !plus && count == 17 && separators == 0 && matches!(bytes.get(index), Some(b'X' | b'x'))
        {
            check_x = true;
            index += 1;
        }
        if bytes.get(index).is_some_and(u8::is_ascii_alphanumeric) || count > MAX_DIGITS {
            return (skip_number(bytes, index), None);
        }
        let digits = &digits[..count.min(MAX_DIGITS)];
        let kind = if plus {
            self.international(digits)
        } else {
            self.domestic(digits, separators, check_x)
        };
        (index, kind.map(|kind| (start, index, kind)))
    }

    fn international(self, digits: &[u8]) -> Option<PiiKind> {
        if digits.len() == 13 && digits.starts_with(&[8, 6]) && is_mobile(&digits[2..]) {
            return self.wants(PiiKind::CnMobile).then_some(PiiKind::CnMobile);
        }
        let plausible = (8..=15).contains(&digits.len()) && digits.first() != Some(&0);
        (plausible && self.wants(PiiKind::Phone)).then_some(PiiKind::Phone)
    }

    fn domestic(self, digits: &[u8], separators: usize, check_x: bool) -> Option<PiiKind> {
        if check_x || (digits.len() == 18 && separators == 0) {
            let check = if check_x { 10 } else { digits[17] };
            if resident_id(&digits[..17], check) {
                return self
                    .wants(PiiKind::CnResidentId)
                    .then_some(PiiKind::CnResidentId);
            }
            if check_x {
                return None;
            }
        }
        if digits.len() == 11 && is_mobile(digits) && separators <= 2 {
            return self.wants(PiiKind::CnMobile).then_some(PiiKind::CnMobile);
        }
        if digits.len() == 13 && digits.starts_with(&[8, 6]) && is_mobile(&digits[2..]) {
            return self.wants(PiiKind::CnMobile).then_some(PiiKind::CnMobile);
        }
        let card = (13..=MAX_DIGITS).contains(&digits.len())
            && matches!(digits[0], 2..=6 | 9)
            && luhn(digits);
        (card && self.wants(PiiKind::BankCard)).then_some(PiiKind::BankCard)
    }

    /// `E12345678`, `G12345678`, `EA1234567`, `D1234567`, `DE1234567`: the letters before the
    /// digits, which must not continue a word.
    fn passport(self, bytes: &[u8], digits: usize, stop: usize) -> Option<Found> {
        if !self.wants(PiiKind::Passport) || bytes.get(stop).is_some_and(u8::is_ascii_alphanumeric)
        {
            return None;
        }
        let mut start = digits;
        while start > 0 && bytes[start - 1].is_ascii_alphabetic() && digits - start < 3 {
            start -= 1;
        }
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            return None;
        }
        let letters = &bytes[start..digits];
        let count = stop - digits;
        let valid = match (letters, count) {
            (b"E" | b"G", 8) => true,
            ([b'E', second], 7) => second.is_ascii_uppercase() && !matches!(second, b'I' | b'O'),
            (b"D" | b"S" | b"P" | b"DE" | b"SE" | b"PE", 7) => true,
            _ => false,
        };
        valid.then_some((start, stop, PiiKind::Passport))
    }

    /// A dotted quad at `start`, if the number is one: `Some` with where scanning goes on.
    fn ipv4(self, text: &str, start: usize) -> Option<(usize, Option<Found>)> {
        let bytes = text.as_bytes();
        let mut index = start;
        let mut dots = 0;
        while index < bytes.len() && index - start <= 15 {
            match bytes[index] {
                b'0'..=b'9' => index += 1,
                b'.' if bytes.get(index + 1).is_some_and(u8::is_ascii_digit) => {
                    dots += 1;
                    index += 1;
                }
                _ => break,
            }
        }
        if dots == 0 {
            return None;
        }
        let continues = bytes.get(index).is_some_and(u8::is_ascii_alphanumeric)
            || (bytes.get(index) == Some(&b'.')
                && bytes.get(index + 1).is_some_and(u8::is_ascii_digit));
        let address = dots == 3 && !continues && text[start..index].parse::<Ipv4Addr>().is_ok();
        let found = (address && self.wants(PiiKind::IpAddress)).then_some((
            start,
            index,
            PiiKind::IpAddress,
        ));
        Some((index, found))
    }
}

fn bit(kind: PiiKind) -> u8 {
    1 << tag(kind)
}

fn tag(kind: PiiKind) -> u32 {
    PiiKind::ALL
        .iter()
        .position(|candidate| *candidate == kind)
        .map_or(0, |position| position as u32)
}

/// Whether a digit at `index` begins a number, rather than continuing one (after a digit, a
/// `+`, a dot that follows a digit, or a joining space or hyphen). Deciding this from the two bytes
/// before makes a scan that starts anywhere agree with one that started at the beginning.
fn starts_number(bytes: &[u8], index: usize) -> bool {
    if index == 0 {
        return true;
    }
    let previous = bytes[index - 1];
    // After a `+` the number (if it is one) began at the `+`.
    if previous.is_ascii_digit() || previous == b'+' {
        return false;
    }
    if previous == b'.' {
        return !(index >= 2 && bytes[index - 2].is_ascii_digit());
    }
    !(index >= 2 && bytes[index - 2].is_ascii_digit() && joins(bytes, index - 1))
}

/// Whether the space or hyphen at `index` joins two groups of one number (`6222 0212 …`,
/// `138-1234-5678`): a digit before it and a group of at most four digits after it. Two
/// numbers merely separated by a space (`13812345678 4111…`) stay two numbers.
fn joins(bytes: &[u8], index: usize) -> bool {
    if !matches!(bytes.get(index), Some(b' ' | b'-'))
        || index == 0
        || !bytes[index - 1].is_ascii_digit()
    {
        return false;
    }
    let group = bytes[index + 1..]
        .iter()
        .take(5)
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    (1..=4).contains(&group)
}

fn digits_end(bytes: &[u8], mut index: usize) -> usize {
    while bytes.get(index).is_some_and(u8::is_ascii_digit) {
        index += 1;
    }
    index
}

/// Past the rest of a number that is too long or runs into letters.
fn skip_number(bytes: &[u8], mut index: usize) -> usize {
    while bytes
        .get(index)
        .is_some_and(|byte| byte.is_ascii_alphanumeric())
    {
        index += 1;
    }
    index
}

fn is_mobile(digits: &[u8]) -> bool {
    digits.len() == 11 && digits[0] == 1 && (3..=9).contains(&digits[1])
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            let digit = u32::from(*digit);
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// GB 11643-1999: a province code, a real birth date, and the ISO 7064 MOD 11-2 check
/// character (`check` is 10 for `X`).
fn resident_id(body: &[u8], check: u8) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECKS: [u8; 11] = [1, 0, 10, 9, 8, 7, 6, 5, 4, 3, 2];
    let number = |digits: &[u8]| {
        digits
            .iter()
            .fold(0u32, |value, digit| value * 10 + u32::from(*digit))
    };
    let province = number(&body[..2]);
    let known = matches!(province, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81..=83 | 91);
    let (year, month, day) = (
        number(&body[6..10]),
        number(&body[10..12]),
        number(&body[12..14]),
    );
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    let date = (1900..=2100).contains(&year) && (1..=days).contains(&day);
    let sum: u32 = body
        .iter()
        .zip(WEIGHTS)
        .map(|(digit, weight)| u32::from(*digit) * weight)
        .sum();
    known && date && CHECKS[(sum % 11) as usize] == check
}

/// The address around the `@` at `at`: a local part of `[A-Za-z0-9._%+-]`, a domain of at
/// least two labels ending in letters.
fn email(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
    let local =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'%' | b'+' | b'-');
    let mut start = at;
    while start > 0 && local(bytes[start - 1]) {
        start -= 1;
        if at - start > MAX_PII_BYTES / 2 {
            return None;
        }
    }
    while start < at && bytes[start] == b'.' {
        start += 1;
    }
    if start == at {
        return None;
    }
    let limit = start + MAX_PII_BYTES;
    let mut stop = at + 1;
    let mut labels = 0;
    let mut last_label = (stop, stop);
    loop {
        let label_start = stop;
        while bytes
            .get(stop)
            .is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'-')
        {
            stop += 1;
            if stop > limit {
                return None;
            }
        }
        if stop == label_start {
            break;
        }
        labels += 1;
        last_label = (label_start, stop);
        if bytes.get(stop) == Some(&b'.')
            && bytes.get(stop + 1).is_some_and(u8::is_ascii_alphanumeric)
        {
            stop += 1;
        } else {
            break;
        }
    }
    let tld = &bytes[last_label.0..last_label.1];
    let valid = labels >= 2 && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic);
    valid.then_some((start, last_label.1))
}

/// The address around the `:` at `colon`, if the hex digits, colons and dots there parse as
/// IPv6 and do not continue a word.
fn ipv6(text: &str, colon: usize) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let part = |byte: u8| byte.is_ascii_hexdigit() || matches!(byte, b':' | b'.');
    let mut start = colon;
    while start > 0 && part(bytes[start - 1]) && colon - start < 45 {
        start -= 1;
    }
    let mut stop = colon + 1;
    while stop < bytes.len() && part(bytes[stop]) && stop - start < 45 {
        stop += 1;
    }
    while stop > colon + 1 && bytes[stop - 1] == b'.' {
        stop -= 1;
    }
    let word =
        |byte: Option<&u8>| byte.is_some_and(|byte| byte.is_ascii_alphanumeric() || *byte == b'_');
    if (start > 0 && word(bytes.get(start - 1))) || word(bytes.get(stop)) {
        return None;
    }
    let candidate = &text[start..stop];
    (candidate.matches(':').count() >= 2 && candidate.parse::<Ipv6Addr>().is_ok())
        .then_some((start, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!luhn(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
        let digits: Vec<u8> = "11010519491231002"
            .bytes()
            .map(|byte| byte - b'0')
            .collect();
        assert!(resident_id(&digits, 10));
        assert!(!resident_id(&digits, 1));
    }
}
