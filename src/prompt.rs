//! Asking for the code on the terminal, so it never shows in the process list, with the
//! generated codes' words completed on Tab (as magic-wormhole does).

use std::io::{IsTerminal, Read};

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use crate::error::{fail, Kind};
use crate::protocol::code::words;

/// Asks for the code on the terminal; with no terminal, says how to pass it.
pub async fn ask_code() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Err(fail(
            Kind::Usage,
            "no code given: pass the code the sender printed (mp receive 7-guitar-ocean), set \
             MP_CODE, or read it from a file with --code-file",
        ));
    }
    let asked = tokio::task::spawn_blocking(|| {
        let mut editor = Editor::<Words, rustyline::history::DefaultHistory>::new()?;
        editor.set_helper(Some(Words));
        editor.readline("Code: ")
    })
    .await?;
    match asked {
        Ok(line) if !line.trim().is_empty() => Ok(line.trim().to_string()),
        Ok(_) => Err(fail(Kind::Usage, "no code given")),
        Err(rustyline::error::ReadlineError::Interrupted) => {
            Err(fail(Kind::Interrupted, "interrupted"))
        }
        Err(rustyline::error::ReadlineError::Eof) => Err(fail(Kind::Usage, "no code given")),
        Err(err) => Err(fail(Kind::Usage, format!("cannot read the code: {err}"))),
    }
}

/// Reads the code from the first line of `file` (`-`: standard input).
pub fn read_code(file: &std::path::Path) -> anyhow::Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    let read = if file == std::path::Path::new("-") {
        std::io::stdin().lock().take(4096).read_line(&mut line)
    } else {
        std::fs::File::open(file)
            .and_then(|f| std::io::BufReader::new(f.take(4096)).read_line(&mut line))
    };
    let what = format!("cannot read the code from {}", crate::ui::shown(file));
    read.map_err(|e| crate::error::local_io(&what, e))?;
    let code = line.trim();
    if code.is_empty() {
        return Err(fail(
            Kind::Usage,
            format!("{what}: its first line is empty"),
        ));
    }
    Ok(code.to_string())
}

/// Completes the word under the cursor from the word list.
struct Words;

impl Completer for Words {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(complete(line, pos))
    }
}

/// Where the word under the cursor starts, and the listed words it may become.
fn complete(line: &str, pos: usize) -> (usize, Vec<Pair>) {
    let before = &line[..pos];
    let start = before
        .rfind(|c: char| c == '-' || c.is_whitespace())
        .map_or(0, |at| at + 1);
    let typed = before[start..].to_lowercase();
    // The room number comes first: nothing to complete there.
    if start == 0 || typed.is_empty() {
        return (start, Vec::new());
    }
    let candidates = words()
        .filter(|word| word.starts_with(&typed))
        .map(|word| Pair {
            display: word.to_string(),
            replacement: word.to_string(),
        })
        .collect();
    (start, candidates)
}

impl Hinter for Words {
    type Hint = String;
}
impl Highlighter for Words {}
impl Validator for Words {}
impl Helper for Words {}

#[cfg(test)]
mod tests {
    use super::complete;

    #[test]
    fn words_of_the_list_complete_after_the_room_number() {
        let (start, found) = complete("7-gui", 5);
        assert_eq!(start, 2);
        assert_eq!(
            found
                .iter()
                .map(|p| p.replacement.as_str())
                .collect::<Vec<_>>(),
            ["guitar"]
        );
        let (start, found) = complete("7-guitar oc", 11);
        assert_eq!(start, 9);
        assert!(found.iter().any(|p| p.replacement == "ocean"));
        assert!(
            complete("7", 1).1.is_empty(),
            "nothing to complete in the room number"
        );
    }
}
