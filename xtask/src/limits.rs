//! The defaults and limits a contract states, checked against the solution (a step of `verify`),
//! so that a number in the book is never typed twice and never goes stale.
//!
//! Every table of `book/src/NN-slug/contract.md` with a `default` column and a `flag` or
//! `set by` column is checked, row by row. The `flag` / `set by` cell names what sets the value:
//!
//! - a flag, `` `SUBCOMMAND --flag` `` (or `` `--flag` `` for a program without subcommands):
//!   the solution's `SUBCOMMAND --help` must list the flag, and the `default` cell must be what
//!   clap prints in `[default: ...]`, in backticks (`` `3s` ``); a default not in backticks
//!   (`none`, `(required)`, `one per core`) means clap must print no default at all;
//! - a constant, `` `MAX_LINE` ``: a `const` of the solution's `src/`, whose value (integer
//!   arithmetic over literals and other constants, or a `Duration::from_secs/millis`) must
//!   equal the leading quantity of the `default` cell: `64 KiB`, `1,048,576`, `4096 bytes`,
//!   `100 ms`, `3 s`;
//! - anything else (`—`, prose): not checked.
//!
//! The form is documented for chapter writers in `book/src/contributing.md`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::projects::Project;
use crate::tree::Tree;

/// One checked row: where it is, what sets the value, and the value stated.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    line: usize,
    set_by: String,
    default: String,
}

/// Checks the contract of every project that has a solution and a suite
/// (`cargo xtask book --check-limits`).
pub fn check_all(root: &Path) -> Result<()> {
    let mut failed = Vec::new();
    for project in crate::projects::PROJECTS
        .iter()
        .filter(|p| p.exists(root) || p.in_development(root))
    {
        println!("{}:", project.slug);
        if let Err(e) = check(root, project) {
            println!("  {e:#}");
            failed.push(project.slug);
        }
    }
    if !failed.is_empty() {
        bail!(
            "contracts that disagree with their solution: {}",
            failed.join(", ")
        );
    }
    Ok(())
}

/// Checks `project`'s contract against its solution; prints how many values were checked.
pub fn check(root: &Path, project: &Project) -> Result<()> {
    let contract_path = root
        .join("book/src")
        .join(project.dir_name())
        .join("contract.md");
    let contract = std::fs::read_to_string(&contract_path)
        .with_context(|| format!("reading {}", contract_path.display()))?;
    if !contract.lines().any(|l| l.trim_end() == "## Limits") {
        bail!(
            "{} has no section headed exactly `## Limits`",
            contract_path.display()
        );
    }
    let rows = checked_rows(&contract);
    let binary = Tree::Solutions.build(root, project, false)?;
    let consts = constants(&root.join("solutions").join(project.dir_name()).join("src"))?;
    let mut helps: HashMap<String, String> = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for row in &rows {
        let Some(name) = backticked(&row.set_by) else {
            continue;
        };
        let outcome = if let Some(flag_at) = name.find("--") {
            let (sub, flag) = (name[..flag_at].trim(), name[flag_at..].trim());
            let help = match helps.get(sub) {
                Some(help) => help.clone(),
                None => {
                    let help = help_text(&binary, sub)?;
                    helps.insert(sub.to_owned(), help.clone());
                    help
                }
            };
            check_flag(&help, flag, &row.default)
        } else if is_constant_name(name) {
            check_constant(&consts, name, &row.default)
        } else {
            continue;
        };
        checked += 1;
        if let Err(e) = outcome {
            problems.push(format!("contract.md line {}: `{name}`: {e}", row.line));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the contract of {} disagrees with the solution:\n  {}",
            project.slug,
            problems.join("\n  ")
        );
    }
    println!(
        "  {checked} defaults and limits in the contract match the solution's --help and constants"
    );
    Ok(())
}

/// The rows of every table with a `default` column and a `flag` or `set by` column.
fn checked_rows(markdown: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut columns: Option<(usize, usize)> = None;
    let mut in_code = false;
    let mut previous_was_table = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        let is_table = !in_code && line.trim_start().starts_with('|');
        if !is_table {
            columns = None;
            previous_was_table = false;
            continue;
        }
        let cells = cells(line);
        if !previous_was_table {
            let find = |names: &[&str]| {
                cells
                    .iter()
                    .position(|c| names.contains(&c.to_lowercase().as_str()))
            };
            columns = find(&["flag", "set by"]).zip(find(&["default"]));
        } else if let Some((set_by, default)) = columns {
            let separator = cells.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch)));
            if !separator && cells.len() > set_by.max(default) {
                rows.push(Row {
                    line: i + 1,
                    set_by: cells[set_by].clone(),
                    default: cells[default].clone(),
                });
            }
        }
        previous_was_table = true;
    }
    rows
}

/// The cells of a table row, trimmed; `\|` inside a cell is kept as `|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                out.last_mut().expect("never empty").push('|');
                chars.next();
            }
            '|' => out.push(String::new()),
            _ => out.last_mut().expect("never empty").push(c),
        }
    }
    out.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The text of a cell that is one code span and nothing else.
/// The default a cell states in backticks: the whole cell (`` `5s` ``), or its start followed by a
/// gloss in parentheses (`` `65536` (64 KiB) ``), for a default clap prints in other units.
fn backticked(cell: &str) -> Option<&str> {
    let rest = cell.strip_prefix('`')?;
    let end = rest.find('`')?;
    let (inner, after) = (&rest[..end], rest[end + 1..].trim());
    let glossed = after.starts_with('(') && after.ends_with(')') && !after.contains('`');
    (after.is_empty() || glossed).then_some(inner)
}

fn is_constant_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `SUBCOMMAND --help` of the solution, on one very wide line per option.
fn help_text(binary: &Path, sub: &str) -> Result<String> {
    let mut command = Command::new(binary);
    command.args(sub.split_whitespace()).arg("--help");
    let output = command
        .env("COLUMNS", "1000")
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!("{command:?} failed ({})", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The text of `flag`'s entry in a clap help text, its lines joined: from its line to the next
/// option or section. Blank lines do not end it, since clap's long help puts `[default: ...]`
/// after a blank line once any value of the option has help of its own.
fn flag_entry(help: &str, flag: &str) -> Option<String> {
    let mut entry: Option<Vec<&str>> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        // `--flag` or `-f`, not `- value: help` (a possible value) nor prose.
        let is_option = trimmed.starts_with("--")
            || (trimmed.starts_with('-')
                && trimmed[1..].starts_with(|c: char| c.is_ascii_alphanumeric()));
        let is_section = !line.is_empty() && !line.starts_with(' ');
        if is_option {
            if entry.is_some() {
                break;
            }
            let names = trimmed.split("  ").next().unwrap_or("");
            let matches = names
                .split([',', ' ', '='])
                .any(|word| word == flag || word.split('<').next() == Some(flag));
            if matches {
                entry = Some(vec![trimmed]);
            }
        } else if let Some(lines) = entry.as_mut() {
            if is_section {
                break;
            }
            if !trimmed.is_empty() {
                lines.push(trimmed);
            }
        }
    }
    entry.map(|lines| lines.join(" "))
}

fn check_flag(help: &str, flag: &str, stated: &str) -> Result<()> {
    let entry = flag_entry(help, flag).context("the solution's --help has no such flag")?;
    let printed = entry
        .find("[default: ")
        .map(|at| &entry[at + "[default: ".len()..])
        .and_then(|rest| rest.find(']').map(|end| rest[..end].to_owned()));
    match (backticked(stated), printed) {
        (Some(stated), Some(printed)) if stated == printed => Ok(()),
        (Some(stated), Some(printed)) => {
            bail!("the contract says `{stated}`, --help says [default: {printed}]")
        }
        (Some(stated), None) => {
            bail!("the contract says `{stated}`, --help shows no default")
        }
        (None, Some(printed)) => bail!(
            "the contract's default is not in backticks ({stated:?}), --help says [default: {printed}]"
        ),
        (None, None) => Ok(()),
    }
}

/// A constant's value: an integer, or a duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    Int(u128),
    Millis(u128),
}

fn check_constant(consts: &HashMap<String, String>, name: &str, stated: &str) -> Result<()> {
    let value = evaluate(consts, name, 0)?;
    let stated_value = quantity(stated)
        .with_context(|| format!("the default {stated:?} does not start with a quantity"))?;
    if value != stated_value {
        bail!("the contract says {stated:?} ({stated_value:?}), the code says {value:?}");
    }
    Ok(())
}

/// Every `const NAME: TYPE = EXPR;` under `src`, as NAME to EXPR.
fn constants(src: &Path) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for file in crate::walk::files_with_extension(src, "rs")? {
        let text = std::fs::read_to_string(&file)?;
        let mut rest = text.as_str();
        while let Some(at) = rest.find("const ") {
            rest = &rest[at + "const ".len()..];
            let Some(colon) = rest.find(':') else { break };
            let name = rest[..colon].trim();
            let Some(end) = rest.find(';') else { break };
            if is_constant_name(name)
                && let Some(eq) = rest[..end].find('=')
            {
                out.insert(name.to_owned(), rest[eq + 1..end].trim().to_owned());
            }
        }
    }
    Ok(out)
}

/// Evaluates the constant `name`: integer literals, other constants, `+ - * / <<`,
/// parentheses, `as TYPE` casts, `Duration::from_secs(N)` and `Duration::from_millis(N)`.
fn evaluate(consts: &HashMap<String, String>, name: &str, depth: u32) -> Result<Value> {
    if depth > 16 {
        bail!("constants defined in a circle at {name}");
    }
    let expr = consts
        .get(name)
        .with_context(|| format!("no `const {name}` in the solution's src/"))?;
    let expr = expr.replace("std::time::", "").replace("tokio::time::", "");
    for (call, scale) in [
        ("Duration::from_secs(", 1000),
        ("Duration::from_millis(", 1),
    ] {
        if let Some(inner) = expr.strip_prefix(call).and_then(|r| r.strip_suffix(')')) {
            return match arithmetic(consts, inner, depth)? {
                Value::Int(n) => Ok(Value::Millis(n * scale)),
                Value::Millis(_) => bail!("{name}: a duration of a duration"),
            };
        }
    }
    arithmetic(consts, &expr, depth)
        .with_context(|| format!("`{name} = {expr}` is not arithmetic this check can read"))
}

fn arithmetic(consts: &HashMap<String, String>, expr: &str, depth: u32) -> Result<Value> {
    let tokens = tokenize(expr)?;
    let mut pos = 0;
    let value = parse_sum(consts, &tokens, &mut pos, depth)?;
    if pos != tokens.len() {
        bail!("unexpected {:?}", tokens[pos]);
    }
    Ok(Value::Int(value))
}

fn tokenize(expr: &str) -> Result<Vec<String>> {
    let mut tokens = Vec::new();
    let mut chars = expr.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if !(c.is_ascii_alphanumeric() || c == '_') {
                    break;
                }
                word.push(c);
                chars.next();
            }
            tokens.push(word);
        } else if c == '<' {
            chars.next();
            if chars.next() != Some('<') {
                bail!("a lone <");
            }
            tokens.push("<<".into());
        } else if "+-*/()".contains(c) {
            tokens.push(c.to_string());
            chars.next();
        } else {
            bail!("unexpected {c:?}");
        }
    }
    Ok(tokens)
}

fn parse_sum(
    consts: &HashMap<String, String>,
    t: &[String],
    pos: &mut usize,
    depth: u32,
) -> Result<u128> {
    let mut value = parse_product(consts, t, pos, depth)?;
    while let Some(op) = t.get(*pos).map(String::as_str) {
        let rhs = match op {
            "+" | "-" | "<<" => {
                *pos += 1;
                parse_product(consts, t, pos, depth)?
            }
            _ => break,
        };
        value = match op {
            "+" => value + rhs,
            "-" => value.checked_sub(rhs).context("a negative constant")?,
            _ => value << rhs,
        };
    }
    Ok(value)
}

fn parse_product(
    consts: &HashMap<String, String>,
    t: &[String],
    pos: &mut usize,
    depth: u32,
) -> Result<u128> {
    let mut value = parse_atom(consts, t, pos, depth)?;
    while let Some(op) = t.get(*pos).map(String::as_str) {
        match op {
            "*" | "/" => {
                *pos += 1;
                let rhs = parse_atom(consts, t, pos, depth)?;
                value = if op == "*" {
                    value * rhs
                } else {
                    value.checked_div(rhs).context("a division by zero")?
                };
            }
            _ => break,
        }
    }
    Ok(value)
}

fn parse_atom(
    consts: &HashMap<String, String>,
    t: &[String],
    pos: &mut usize,
    depth: u32,
) -> Result<u128> {
    let token = t.get(*pos).context("the expression ends early")?.clone();
    *pos += 1;
    let value = if token == "(" {
        let v = parse_sum(consts, t, pos, depth)?;
        if t.get(*pos).map(String::as_str) != Some(")") {
            bail!("an unclosed (");
        }
        *pos += 1;
        v
    } else if token.starts_with(|c: char| c.is_ascii_digit()) {
        let digits: String = token.chars().filter(|c| *c != '_').collect();
        let digits = ["u8", "u16", "u32", "u64", "u128", "usize"]
            .iter()
            .find_map(|s| digits.strip_suffix(s))
            .unwrap_or(&digits);
        digits
            .parse()
            .with_context(|| format!("{token:?} is not an integer"))?
    } else if is_constant_name(&token) {
        match evaluate(consts, &token, depth + 1)? {
            Value::Int(n) => n,
            Value::Millis(_) => bail!("{token} is a duration"),
        }
    } else {
        bail!("unexpected {token:?}");
    };
    // `x as usize` changes nothing this check can see.
    if t.get(*pos).map(String::as_str) == Some("as") {
        *pos += 2;
    }
    Ok(value)
}

/// The leading quantity of a default cell: `1,048,576`, `64 KiB`, `4096 bytes`, `100 ms`.
fn quantity(cell: &str) -> Option<Value> {
    let text = cell.trim().trim_matches('`');
    let number: String = text
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',' || *c == '_')
        .collect();
    let n: u128 = number.replace([',', '_'], "").parse().ok()?;
    let unit = text[number.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    Some(match unit {
        "KiB" => Value::Int(n << 10),
        "MiB" => Value::Int(n << 20),
        "GiB" => Value::Int(n << 30),
        "ms" => Value::Millis(n),
        "s" => Value::Millis(n * 1000),
        "m" | "min" => Value::Millis(n * 60_000),
        _ => Value::Int(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT: &str = "\
| flag | default | meaning |
|---|---|---|
| `server --bind` | `127.0.0.1:9000` | where |
| `client --count` | none | how many |

```text
| `not --a` | `table` | in code |
```

## Limits

| limit | set by | default | when exceeded |
|---|---|---|---|
| a line | `MAX_LINE` | 64 KiB | refused \\| closed |
| a thing | — | 3 | nothing |
";

    #[test]
    fn finds_the_rows_of_flag_and_limit_tables() {
        let rows = checked_rows(CONTRACT);
        let got: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.set_by.as_str(), r.default.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("`server --bind`", "`127.0.0.1:9000`"),
                ("`client --count`", "none"),
                ("`MAX_LINE`", "64 KiB"),
                ("—", "3"),
            ]
        );
        assert_eq!(rows[2].line, 14);
    }

    #[test]
    fn reads_clap_defaults() {
        let help = "Options:\n      --bind <BIND>  Where [default: 127.0.0.1:9000]\n      --count <COUNT>  How many\n  -v, --verbose  Loud\n  -h, --help  Print help\n";
        assert!(check_flag(help, "--bind", "`127.0.0.1:9000`").is_ok());
        assert!(check_flag(help, "--bind", "`127.0.0.1:9001`").is_err());
        assert!(check_flag(help, "--bind", "none").is_err());
        assert!(check_flag(help, "--count", "none").is_ok());
        assert!(check_flag(help, "--count", "`3`").is_err());
        assert!(check_flag(help, "--verbose", "off").is_ok());
        assert!(check_flag(help, "--missing", "`1`").is_err());
    }

    #[test]
    fn reads_a_default_printed_after_possible_values() {
        let help = "Options:\n      --format <FORMAT>\n          How to print\n\n          \
                    Possible values:\n          - text: For a terminal\n          - json: One \
                    document\n\n          [default: text]\n\n      --next <N>\n          \
                    Another\n";
        assert!(check_flag(help, "--format", "`text`").is_ok());
        assert!(check_flag(help, "--format", "none").is_err());
        assert!(check_flag(help, "--next", "none").is_ok());
        assert_eq!(backticked("`65536` (64 KiB)"), Some("65536"));
        assert_eq!(backticked("`a` and `b`"), None);
    }

    #[test]
    fn evaluates_constants() {
        let consts: HashMap<String, String> = [
            ("MAX_NAME", "200"),
            ("MAX_CHUNKS", "1 << 18"),
            (
                "MAX_MANIFEST",
                "1 + 2 + MAX_NAME + 8 + 32 * MAX_CHUNKS as usize + 32",
            ),
            ("MAX_LINE", "64 * 1024"),
            ("SWEEP", "Duration::from_millis(100)"),
            ("GRACE", "std::time::Duration::from_secs(3)"),
            ("BIG", "1_000_000u64"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            evaluate(&consts, "MAX_MANIFEST", 0).unwrap(),
            Value::Int(8_388_851)
        );
        assert_eq!(evaluate(&consts, "SWEEP", 0).unwrap(), Value::Millis(100));
        assert_eq!(evaluate(&consts, "GRACE", 0).unwrap(), Value::Millis(3000));
        assert_eq!(evaluate(&consts, "BIG", 0).unwrap(), Value::Int(1_000_000));
        assert!(check_constant(&consts, "MAX_LINE", "64 KiB").is_ok());
        assert!(check_constant(&consts, "MAX_LINE", "65,536 bytes").is_ok());
        assert!(check_constant(&consts, "MAX_LINE", "64 MiB").is_err());
        assert!(check_constant(&consts, "SWEEP", "100 ms").is_ok());
        assert!(check_constant(&consts, "MISSING", "1").is_err());
    }

    #[test]
    fn reads_quantities() {
        assert_eq!(quantity("1,048,576"), Some(Value::Int(1_048_576)));
        assert_eq!(quantity("8 MiB"), Some(Value::Int(8 << 20)));
        assert_eq!(
            quantity("4096 bytes (as nats-server)"),
            Some(Value::Int(4096))
        );
        assert_eq!(quantity("2 unanswered PINGs"), Some(Value::Int(2)));
        assert_eq!(quantity("3 s"), Some(Value::Millis(3000)));
        assert_eq!(quantity("none"), None);
    }
}
