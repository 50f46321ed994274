//! Deploy-time refusal of platform-dependent maths: a lexical scan of the contract source
//! (comments, strings, template text and regular expressions skipped) for the transcendental
//! `Math` functions (`Math.sin`, `Math["log"]`, …) and the `**` operator, which QuickJS
//! computes with the platform's C maths library (libm) and so may differ in the last bit from
//! one node to another. The sandbox removes those functions as well, so a call reaching one
//! some other way (an alias of `Math`) fails the same way on every node.

use crate::sandbox::TRANSCENDENTAL;

/// A use of platform-dependent maths found in a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    /// What was found (`Math.sin`, `**`).
    pub(crate) what: String,
    /// 1-based line.
    pub(crate) line: usize,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` on line {}", self.what, self.line)
    }
}

/// Token kinds the scanner needs to tell a regular expression from a division.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    /// Start, an operator or an opening bracket: a `/` here starts a regular expression.
    Operator,
    /// An identifier, a keyword that ends an expression, a literal or a closing bracket.
    Operand,
}

/// Keywords after which a `/` starts a regular expression.
const REGEX_AFTER: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
];

/// Significant tokens for the pattern matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Str(String),
    Punct(&'static str),
}

/// Every use of platform-dependent maths in `source`.
pub(crate) fn platform_maths(source: &str) -> Vec<Finding> {
    let tokens = tokens(source);
    let mut found = Vec::new();
    for (i, (token, line, _)) in tokens.iter().enumerate() {
        match token {
            Token::Punct(p @ ("**" | "**=")) => found.push(Finding {
                what: (*p).to_owned(),
                line: *line,
            }),
            Token::Ident(m) if m == "Math" => {
                let member = match (tokens.get(i + 1), tokens.get(i + 2), tokens.get(i + 3)) {
                    (Some((Token::Punct("." | "?."), _, _)), Some((Token::Ident(n), _, _)), _) => {
                        Some(n)
                    }
                    (
                        Some((Token::Punct("["), _, _)),
                        Some((Token::Str(n), _, _)),
                        Some((Token::Punct("]"), _, _)),
                    ) => Some(n),
                    _ => None,
                };
                if let Some(name) = member.filter(|n| TRANSCENDENTAL.contains(&n.as_str())) {
                    found.push(Finding {
                        what: format!("Math.{name}"),
                        line: *line,
                    });
                }
            }
            _ => {}
        }
    }
    found
}

/// Every `import` in `source`: a declaration, a dynamic `import(…)` or `import.meta`. A
/// contract is one self-contained module: the engine has no module loader, and the contract
/// instances a node evaluates must never reach one another through a module name. A member
/// named `import` (`x.import`, `{ import: … }`) is not an import.
pub(crate) fn imports(source: &str) -> Vec<Finding> {
    let tokens = tokens(source);
    let mut found = Vec::new();
    for (i, (token, line, _)) in tokens.iter().enumerate() {
        if *token != Token::Ident("import".into()) {
            continue;
        }
        if !is_member_name(&tokens, i) {
            found.push(Finding {
                what: "import".to_owned(),
                line: *line,
            });
        }
    }
    found
}

/// Whether the word at `tokens[i]` names a member (`x.word`, `x?.word`, `{ word: … }`) rather
/// than being a keyword.
fn is_member_name(tokens: &[(Token, usize, usize)], i: usize) -> bool {
    let member = i > 0 && matches!(tokens[i - 1].0, Token::Punct("." | "?."));
    let key = matches!(tokens.get(i + 1), Some((Token::Punct(":"), _, _)));
    member || key
}

/// Declarations an `export` may precede in a contract module.
const EXPORTABLE: &[&str] = &["function", "async", "class", "const", "let", "var"];

/// `source` with the `export` keyword of each exported declaration blanked out (replaced by
/// spaces, so lines and columns stay), making the module's body a plain function body whose
/// top-level declarations are the same bindings; or every `export` that is not directly
/// followed by a declaration (`export { … }`, `export default …`, `export * from …`), which
/// contracts do not use.
pub(crate) fn without_export_keywords(source: &str) -> Result<String, Vec<Finding>> {
    let tokens = tokens(source);
    let mut blank = Vec::new();
    let mut unsupported = Vec::new();
    for (i, (token, line, start)) in tokens.iter().enumerate() {
        if *token != Token::Ident("export".into()) {
            continue;
        }
        if is_member_name(&tokens, i) {
            continue;
        }
        match tokens.get(i + 1) {
            Some((Token::Ident(next), _, _)) if EXPORTABLE.contains(&next.as_str()) => {
                blank.push(*start);
            }
            _ => unsupported.push(Finding {
                what: "export".to_owned(),
                line: *line,
            }),
        }
    }
    if !unsupported.is_empty() {
        return Err(unsupported);
    }
    let mut chars: Vec<char> = source.chars().collect();
    for start in blank {
        for c in &mut chars[start..start + "export".len()] {
            *c = ' ';
        }
    }
    Ok(chars.into_iter().collect())
}

/// The identifiers, string literals and the few punctuators the matcher looks at, with their
/// lines and (identifiers) the index of their first character; comments, template text and regular expression literals are skipped.
fn tokens(source: &str) -> Vec<(Token, usize, usize)> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    let mut prev = Prev::Operator;
    // Brace depths at which an open template literal's `${` expression closes.
    let mut templates: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let at = |k: usize| chars.get(k).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '/' if at(i + 1) == '/' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == '*' => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && at(i + 1) == '/') {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
                i += 2;
            }
            '/' if prev == Prev::Operator => {
                // A regular expression literal.
                i += 1;
                let mut class = false;
                while i < chars.len() && chars[i] != '\n' {
                    match chars[i] {
                        '\\' => i += 1,
                        '[' => class = true,
                        ']' => class = false,
                        '/' if !class => break,
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                while at(i).is_alphanumeric() {
                    i += 1;
                }
                prev = Prev::Operand;
            }
            '\'' | '"' => {
                let start_line = line;
                let mut text = String::new();
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    if let Some(&ch) = chars.get(i) {
                        line += usize::from(ch == '\n');
                        text.push(ch);
                    }
                    i += 1;
                }
                i += 1;
                out.push((Token::Str(text), start_line, i));
                prev = Prev::Operand;
            }
            '`' | '}' if c == '`' || templates.last() == Some(&depth.saturating_sub(1)) => {
                if c == '}' {
                    // The end of a template's `${…}`: back into its text.
                    templates.pop();
                    depth = depth.saturating_sub(1);
                }
                i = template_text(&chars, i + 1, &mut line);
                if at(i) == '$' {
                    // A `${` opens an expression, scanned as code until its `}`.
                    templates.push(depth);
                    depth += 1;
                    i += 2;
                    prev = Prev::Operator;
                } else {
                    i += 1;
                    prev = Prev::Operand;
                }
            }
            c if c.is_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while at(i).is_alphanumeric() || at(i) == '_' || at(i) == '$' {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                prev = if REGEX_AFTER.contains(&word.as_str()) {
                    Prev::Operator
                } else {
                    Prev::Operand
                };
                out.push((Token::Ident(word), line, start));
            }
            c if c.is_ascii_digit() => {
                while at(i).is_alphanumeric() || at(i) == '.' || at(i) == '_' {
                    i += 1;
                }
                prev = Prev::Operand;
            }
            _ => {
                let (punct, len): (&'static str, usize) = match (c, at(i + 1), at(i + 2)) {
                    ('*', '*', '=') => ("**=", 3),
                    ('*', '*', _) => ("**", 2),
                    ('?', '.', d) if !d.is_ascii_digit() => ("?.", 2),
                    ('.', _, _) => (".", 1),
                    ('[', _, _) => ("[", 1),
                    (':', _, _) => (":", 1),
                    (']', _, _) => ("]", 1),
                    _ => ("", 1),
                };
                match c {
                    '{' => depth += 1,
                    '}' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                prev = if matches!(c, ')' | ']' | '}') {
                    Prev::Operand
                } else {
                    Prev::Operator
                };
                if !punct.is_empty() {
                    out.push((Token::Punct(punct), line, i));
                }
                i += len;
            }
        }
    }
    out
}

/// Skips template text from `i` to its closing backtick or the `$` of a `${`, whichever
/// comes first, and returns that position.
fn template_text(chars: &[char], mut i: usize, line: &mut usize) -> usize {
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '`' => return i,
            '$' if chars.get(i + 1) == Some(&'{') => return i,
            '\n' => *line += 1,
            _ => {}
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whats(source: &str) -> Vec<String> {
        platform_maths(source).into_iter().map(|f| f.what).collect()
    }

    #[test]
    fn finds_import_declarations_dynamic_imports_and_import_meta() {
        let lines =
            |source: &str| -> Vec<usize> { imports(source).into_iter().map(|f| f.line).collect() };
        assert_eq!(lines("import * as me from \"contract.js\";"), [1]);
        assert_eq!(lines("const a = 1;\nimport { b } from 'x';"), [2]);
        assert_eq!(
            lines("export function f() { return import(\"contract.js\"); }"),
            [1]
        );
        assert_eq!(lines("const m = import.meta;"), [1]);
        // Members named `import`, and the word in comments, strings and templates.
        assert!(lines("x.import(1); y?.import; const o = { import: 1 };").is_empty());
        assert!(
            lines("// import x from 'y'\nconst s = 'import'; const t = `import ${1}`;").is_empty()
        );
    }

    #[test]
    fn blanks_export_keywords_of_declarations_and_refuses_other_exports() {
        let source =
            "export const contract = { export: 1 };\nexport function f() { return x.export; }\n\
                      export async function g() {}\n// export default 1\nconst s = \"export {\";";
        let plain = without_export_keywords(source).expect("declarations only");
        assert_eq!(plain.len(), source.len());
        assert_eq!(
            plain,
            source
                .replacen("export const", "       const", 1)
                .replacen("export function", "       function", 1)
                .replacen("export async", "       async", 1)
        );
        let lines = |source: &str| -> Vec<usize> {
            without_export_keywords(source)
                .expect_err("unsupported exports")
                .into_iter()
                .map(|f| f.line)
                .collect()
        };
        assert_eq!(lines("function f() {}\nexport { f };"), [2]);
        assert_eq!(lines("export default function () {}"), [1]);
        assert_eq!(lines("export * from \"x\";\nexport const a = 1;"), [1]);
    }

    #[test]
    fn finds_math_members_and_the_power_operator_in_code() {
        assert_eq!(
            whats("const a = Math.sin(x);\nlet b = Math [ 'log' ](2); c **= 2; d = 2 ** 3;"),
            ["Math.sin", "Math.log", "**=", "**"]
        );
        assert_eq!(platform_maths("\n\nMath.exp(1)")[0].line, 3);
    }

    #[test]
    fn ignores_comments_strings_templates_regexes_and_safe_math() {
        let source = r#"
            /** Doc comment: Math.sin(x) ** 2 */
            // Math.cos
            const s = "Math.tan(1) ** 2", t = `Math.exp ${ a / 2 } ** ${ {b: 1}.b }`;
            const r = /x*\*/g, q = x / y / z;
            const m = Math.floor(Math.sqrt(2) * Math.max(1, 2));
        "#;
        assert_eq!(whats(source), Vec::<String>::new());
    }

    #[test]
    fn finds_code_inside_template_expressions() {
        assert_eq!(whats("const t = `x ${ Math.pow(2, 3) } y`;"), ["Math.pow"]);
    }
}
