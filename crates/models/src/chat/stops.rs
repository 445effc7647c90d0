//! Stop sequences over streamed text: text that could still turn into a stop sequence is held
//! back, so nothing of a stop sequence is ever sent.

pub(crate) struct StopScanner {
    stops: Vec<String>,
    pending: String,
}

/// What to do with newly decoded text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// Send this (possibly empty) text and go on.
    Emit(String),
    /// A stop sequence was completed: send this text, which precedes it, and stop.
    Stop(String),
}

impl StopScanner {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|stop| !stop.is_empty()).collect(),
            pending: String::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> Scan {
        self.pending.push_str(text);
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|stop| self.pending.find(stop.as_str()))
            .min()
        {
            let mut before = std::mem::take(&mut self.pending);
            before.truncate(at);
            return Scan::Stop(before);
        }
        let held = self.held_back();
        let emit_to = self.pending.len() - held;
        let rest = self.pending.split_off(emit_to);
        Scan::Emit(std::mem::replace(&mut self.pending, rest))
    }

    /// What is still held back, once generation ended for another reason.
    pub(crate) fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Bytes at the end of `pending` that begin some stop sequence.
    fn held_back(&self) -> usize {
        self.stops
            .iter()
            .map(|stop| {
                (1..stop.len().min(self.pending.len() + 1))
                    .rev()
                    .find(|&length| {
                        stop.is_char_boundary(length) && self.pending.ends_with(&stop[..length])
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces`, returning what was sent and whether a stop sequence ended it.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut scanner = StopScanner::new(stops.iter().map(|&stop| stop.to_owned()).collect());
        let mut sent = String::new();
        for piece in pieces {
            match scanner.push(piece) {
                Scan::Emit(text) => sent.push_str(&text),
                Scan::Stop(text) => {
                    sent.push_str(&text);
                    return (sent, true);
                }
            }
        }
        sent.push_str(&scanner.finish());
        (sent, false)
    }

    #[test]
    fn stop_sequences_split_across_pieces() {
        let cases: &[(&[&str], &[&str], &str, bool)] = &[
            (&["\n\n"], &["a", "\n", "\nb"], "a", true),
            (&["END"], &["xE", "N", "D", "more"], "x", true),
            (&["END"], &["xE", "N", "d"], "xENd", false),
            (&["ab", "b"], &["xa", "b"], "x", true),
            (&["停止"], &["好的停", "止了"], "好的", true),
            (&[], &["plain"], "plain", false),
            (&[""], &["empty stop ignored"], "empty stop ignored", false),
        ];
        for (stops, pieces, sent, stopped) in cases {
            assert_eq!(
                run(stops, pieces),
                ((*sent).to_owned(), *stopped),
                "{stops:?} {pieces:?}"
            );
        }
    }

    #[test]
    fn nothing_that_may_begin_a_stop_is_sent_early() {
        let mut scanner = StopScanner::new(vec!["</answer>".to_owned()]);
        assert_eq!(scanner.push("42 </ans"), Scan::Emit("42 ".to_owned()));
        assert_eq!(scanner.push("wer>"), Scan::Stop(String::new()));
    }
}
