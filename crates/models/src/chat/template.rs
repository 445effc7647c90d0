//! Chat templates: the Jinja template a model was trained with (from its GGUF metadata or
//! given by the operator), rendered with minijinja as Hugging Face's transformers does.

use std::collections::BTreeMap;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

/// ChatML, for models whose file carries no template.
const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// One message as templates see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    pub content: String,
}

/// A compiled chat template.
pub struct ChatTemplate {
    environment: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ChatTemplate")
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source` (ChatML when `None`). `bos_token` and `eos_token` are the texts
    /// templates may refer to by those names.
    ///
    /// # Errors
    /// The template's syntax error, with its line.
    pub fn new(
        source: Option<&str>,
        bos_token: Option<&str>,
        eos_token: Option<&str>,
    ) -> Result<Self, String> {
        let mut environment = Environment::new();
        // transformers renders with trim_blocks and lstrip_blocks (`_compile_jinja_template`).
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|error| describe(&error))?;
        environment.set_syntax(syntax);
        environment
            .set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        environment.add_function(
            "raise_exception",
            |message: String| -> Result<Value, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        environment.add_function("strftime_now", |format: String| -> Result<Value, Error> {
            strftime_now(&format)
        });
        environment
            .add_template_owned("chat", source.unwrap_or(CHATML).to_owned())
            .map_err(|error| describe(&error))?;
        Ok(Self {
            environment,
            bos_token: bos_token.unwrap_or_default().to_owned(),
            eos_token: eos_token.unwrap_or_default().to_owned(),
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opened.
    ///
    /// # Errors
    /// A message the template refuses (`raise_exception`, e.g. roles out of order) or a
    /// rendering failure, as a message for the client.
    pub fn render(&self, messages: &[TemplateMessage]) -> Result<String, String> {
        let messages: Vec<Value> = messages
            .iter()
            .map(|message| {
                let mut fields = BTreeMap::new();
                fields.insert("role".to_owned(), Value::from(message.role.as_str()));
                fields.insert("content".to_owned(), Value::from(message.content.as_str()));
                Value::from(fields)
            })
            .collect();
        let template = self
            .environment
            .get_template("chat")
            .map_err(|error| describe(&error))?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => true,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(|error| describe(&error))
    }
}

/// An error with its cause chain (minijinja keeps the line in the detail).
fn describe(error: &Error) -> String {
    match error.kind() {
        ErrorKind::InvalidOperation => error.detail().unwrap_or("invalid operation").to_owned(),
        _ => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            message
        }
    }
}

/// `strftime_now("%d %b %Y")`, which Llama 3 templates call for the date: the UTC date, with
/// the few directives those templates use.
fn strftime_now(format: &str) -> Result<Value, Error> {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() / 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let name = MONTHS[usize::try_from(month - 1).unwrap_or(0) % 12];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.unwrap_or(' ')
                    ),
                ));
            }
        }
    }
    Ok(Value::from(out))
}

/// Year, month (1-12) and day of the month of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> TemplateMessage {
        TemplateMessage {
            role: "user".to_owned(),
            content: text.to_owned(),
        }
    }

    /// SmolLM2's template, as its GGUF carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_smollm2_as_jinja2_does() -> Result<(), String> {
        let template = ChatTemplate::new(Some(SMOLLM2), Some("<|im_start|>"), Some("<|im_end|>"))?;
        // Jinja2 with trim_blocks and lstrip_blocks renders exactly this.
        assert_eq!(
            template.render(&[user("What is 2+2?")])?,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        Ok(())
    }

    #[test]
    fn raise_exception_becomes_the_error_message() -> Result<(), String> {
        let source = "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}";
        let template = ChatTemplate::new(Some(source), None, None)?;
        let assistant = TemplateMessage {
            role: "assistant".to_owned(),
            content: "hi".to_owned(),
        };
        assert_eq!(
            template.render(&[assistant]),
            Err("Conversation roles must alternate user/assistant/user/assistant/...".to_owned())
        );
        Ok(())
    }

    #[test]
    fn python_string_methods_and_trimmed_blocks_work() -> Result<(), String> {
        let source = "{% for message in messages %}\n  {{ message['content'].strip() | upper }}|\n{% endfor %}{{ bos_token }}";
        let template = ChatTemplate::new(Some(source), Some("<s>"), None)?;
        assert_eq!(template.render(&[user("  a b  ")])?, "  A B|\n<s>");
        Ok(())
    }

    #[test]
    fn a_syntax_error_is_reported_at_compile_time() {
        let error = ChatTemplate::new(Some("{% for %}"), None, None).err();
        assert!(error.is_some_and(|message| message.contains("syntax")));
    }

    #[test]
    fn chatml_is_the_default() -> Result<(), String> {
        let template = ChatTemplate::new(None, None, None)?;
        assert_eq!(
            template.render(&[user("hi")])?,
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        Ok(())
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
