/// Why a rule set cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardrailsError {
    /// Every problem found, each as (dotted path, message).
    #[error("{}", describe(.0))]
    Invalid(Vec<(String, String)>),
}

fn describe(problems: &[(String, String)]) -> String {
    problems
        .iter()
        .map(|(path, message)| {
            if path.is_empty() {
                message.clone()
            } else {
                format!("{path}: {message}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
