//! A small MySQL tokenizer. The planner uses it where the parser is no help:
//! statements sqlparser cannot read (to find their tables and pass them
//! through), session statements whose text must be kept verbatim, and the
//! `?` placeholders of statement text.

/// One token with its byte span in the statement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token<'a> {
    pub kind: Kind,
    pub text: &'a str,
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An unquoted identifier or keyword.
    Word,
    /// A backquoted identifier; `text` includes the backquotes.
    Quoted,
    /// A string literal; `text` includes the quotes.
    Str,
    Num,
    /// `?`
    Param,
    /// `?<n>`: the planner's own marker for parameter n after re-printing.
    Marker,
    /// `@name` or `@@name` (also `@@session.name`).
    Var,
    Sym,
}

impl Token<'_> {
    /// The identifier this token names, without backquotes, if it is one.
    pub fn ident(&self) -> Option<String> {
        match self.kind {
            Kind::Word => Some(self.text.to_string()),
            Kind::Quoted => {
                // An unterminated identifier runs to the end of the text.
                let inner = &self.text[1..];
                let inner = inner.strip_suffix('`').unwrap_or(inner);
                Some(inner.replace("``", "`"))
            }
            _ => None,
        }
    }

    pub fn is_word(&self, w: &str) -> bool {
        self.kind == Kind::Word && self.text.eq_ignore_ascii_case(w)
    }

    pub fn is_sym(&self, s: &str) -> bool {
        self.kind == Kind::Sym && self.text == s
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The server version executable comments are compared with: the MariaDB
/// the gate's tablets run and the gate announces (10.11.6).
pub(crate) const EXECUTABLE_COMMENT_VERSION: u32 = 101_106;

/// MySQL's executable comments, `/*! body */`, `/*!40101 body */` and
/// MariaDB's `/*M!100101 body */`: a server runs the body when the version
/// is at most its own and ignores it otherwise. Dumps are full of them
/// (`/*!40101 SET NAMES utf8mb4 */;`), so the gate reads them as the
/// tablets would: `Some(text)` with each one replaced by its body (or by
/// nothing), `None` when the statement has none. Quotes are respected.
pub(crate) fn unwrap_executable_comments(sql: &str) -> Option<String> {
    if !sql.contains("/*!") && !sql.contains("/*M!") {
        return None;
    }
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut copied = 0;
    let mut found = false;
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < b.len() {
                    if b[i] == b'\\' && q != b'`' {
                        i += 2;
                    } else if b[i] == q {
                        i += 1;
                        if b.get(i) != Some(&q) {
                            break;
                        }
                        i += 1;
                    } else {
                        i += 1;
                    }
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let bang = match (b.get(i + 2), b.get(i + 3)) {
                    (Some(b'!'), _) => Some(i + 3),
                    (Some(b'M'), Some(b'!')) => Some(i + 4),
                    _ => None,
                };
                let Some(mut body) = bang else {
                    // an ordinary comment: skip it whole
                    i += 2;
                    while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                        i += 1;
                    }
                    i = (i + 2).min(b.len());
                    continue;
                };
                let digits = b[body..]
                    .iter()
                    .take(6)
                    .take_while(|c| c.is_ascii_digit())
                    .count();
                let version = match digits {
                    5 | 6 => sql[body..body + digits].parse::<u32>().ok(),
                    _ => None,
                };
                if digits == 5 || digits == 6 {
                    body += digits;
                }
                let mut end = body;
                while end < b.len() && !(b[end] == b'*' && b.get(end + 1) == Some(&b'/')) {
                    end += 1;
                }
                out.push_str(&sql[copied..i]);
                if version.is_none_or(|v| v <= EXECUTABLE_COMMENT_VERSION) {
                    out.push(' ');
                    out.push_str(&sql[body..end]);
                }
                out.push(' ');
                i = (end + 2).min(b.len());
                copied = i;
                found = true;
            }
            _ => i += 1,
        }
    }
    if !found {
        return None;
    }
    out.push_str(&sql[copied.min(sql.len())..]);
    Some(out)
}

/// Splits `sql` into tokens, dropping whitespace and comments. Never fails:
/// an unterminated string or comment runs to the end.
pub(crate) fn lex(sql: &str) -> Vec<Token<'_>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let kind;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c == b'#'
            || (c == b'-'
                && b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()))
        {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(b.len());
            continue;
        } else if c == b'\'' || c == b'"' {
            i += 1;
            while i < b.len() {
                if b[i] == b'\\' {
                    i += 2;
                } else if b[i] == c {
                    if b.get(i + 1) == Some(&c) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            kind = Kind::Str;
        } else if c == b'`' {
            i += 1;
            while i < b.len() {
                if b[i] == b'`' {
                    if b.get(i + 1) == Some(&b'`') {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            kind = Kind::Quoted;
        } else if c.is_ascii_digit()
            || (c == b'.' && b.get(i + 1).is_some_and(|c| c.is_ascii_digit()))
        {
            while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'.') {
                // exponent sign: 1e-5
                if (b[i] == b'e' || b[i] == b'E') && matches!(b.get(i + 1), Some(b'-') | Some(b'+'))
                {
                    i += 1;
                }
                i += 1;
            }
            // `1abc` is an identifier in MySQL; good enough to call it a word.
            kind = if sql[start..i].bytes().any(|c| {
                c.is_ascii_alphabetic() && c != b'e' && c != b'E' && c != b'x' && c != b'X'
            }) {
                Kind::Word
            } else {
                Kind::Num
            };
        } else if is_ident_byte(c) {
            // x'..' and b'..' literals and _charset'..' introducers
            while i < b.len() && is_ident_byte(b[i]) {
                i += 1;
            }
            if b.get(i) == Some(&b'\'')
                && (i - start == 1 && matches!(c, b'x' | b'X' | b'b' | b'B' | b'n' | b'N')
                    || c == b'_')
            {
                let rest = lex(&sql[i..]);
                let end = rest.first().map_or(sql.len(), |t| i + t.end);
                i = end;
                kind = Kind::Str;
            } else {
                kind = Kind::Word;
            }
        } else if c == b'?' {
            i += 1;
            let digits = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            kind = if i > digits {
                Kind::Marker
            } else {
                Kind::Param
            };
        } else if c == b'@' {
            i += 1;
            if b.get(i) == Some(&b'@') {
                i += 1;
            }
            match b.get(i) {
                Some(&q) if q == b'`' || q == b'\'' || q == b'"' => {
                    let rest = lex(&sql[i..]);
                    i += rest.first().map_or(sql.len() - i, |t| t.end);
                }
                _ => {
                    while i < b.len() && (is_ident_byte(b[i]) || b[i] == b'.') {
                        i += 1;
                    }
                }
            }
            kind = Kind::Var;
        } else {
            let three = sql.get(i..i + 3);
            let two = sql.get(i..i + 2);
            i += if three == Some("<=>") {
                3
            } else if matches!(
                two,
                Some(":=" | "<=" | ">=" | "<>" | "!=" | "||" | "&&" | "<<" | ">>")
            ) {
                2
            } else {
                // one character, which may be multi-byte
                sql[i..].chars().next().map_or(1, char::len_utf8)
            };
            kind = Kind::Sym;
        }
        out.push(Token {
            kind,
            text: &sql[start..i.min(sql.len())],
            start,
            end: i.min(sql.len()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text made of the pieces that matter here (markers, quotes,
        /// version digits, multi-byte characters): never a panic, on the
        /// text or on what unwrapping made of it.
        #[test]
        fn unwrapping_never_panics(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("/*!"), Just("/*M!"), Just("*/"), Just("/*"), Just("'"), Just("\""),
                    Just("`"), Just("\\"), Just("40101"), Just("999999"), Just(" "), Just("é☃"),
                    Just("SELECT 1"),
                ],
                0..24,
            )
        ) {
            let sql: String = parts.concat();
            if let Some(out) = unwrap_executable_comments(&sql) {
                let _ = unwrap_executable_comments(&out);
                let _ = lex(&out);
            }
        }
    }

    fn kinds(sql: &str) -> Vec<(Kind, &str)> {
        lex(sql).into_iter().map(|t| (t.kind, t.text)).collect()
    }

    #[test]
    fn tokens_of_awkward_sql() {
        assert_eq!(
            kinds("SELECT `a``b`, 'x\\'?', ? /* ? */ FROM t -- ?\n WHERE @a := ?3 # c"),
            vec![
                (Kind::Word, "SELECT"),
                (Kind::Quoted, "`a``b`"),
                (Kind::Sym, ","),
                (Kind::Str, "'x\\'?'"),
                (Kind::Sym, ","),
                (Kind::Param, "?"),
                (Kind::Word, "FROM"),
                (Kind::Word, "t"),
                (Kind::Word, "WHERE"),
                (Kind::Var, "@a"),
                (Kind::Sym, ":="),
                (Kind::Marker, "?3"),
            ]
        );
        assert_eq!(
            kinds("x'41' _utf8mb4'a' @@session.sql_mode 1.5e-3 <=> é"),
            vec![
                (Kind::Str, "x'41'"),
                (Kind::Str, "_utf8mb4'a'"),
                (Kind::Var, "@@session.sql_mode"),
                (Kind::Num, "1.5e-3"),
                (Kind::Sym, "<=>"),
                (Kind::Word, "é"),
            ]
        );
        assert_eq!(lex("'unterminated").len(), 1);
        assert_eq!(lex("/* open").len(), 0);
    }

    #[test]
    fn executable_comments_are_read_as_the_server_reads_them() {
        let u = |s: &str| {
            unwrap_executable_comments(s)
                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        assert_eq!(u("SELECT 1"), None);
        assert_eq!(u("SELECT /* plain */ 1"), None);
        assert_eq!(
            u("/*!40100 SET @@SQL_MODE='' */").as_deref(),
            Some("SET @@SQL_MODE=''")
        );
        assert_eq!(
            u("/*!SET NAMES utf8mb4 */;").as_deref(),
            Some("SET NAMES utf8mb4 ;")
        );
        assert_eq!(
            u("/*!40000 ALTER TABLE `t` DISABLE KEYS */").as_deref(),
            Some("ALTER TABLE `t` DISABLE KEYS")
        );
        assert_eq!(u("/*M!100101 SET x=1 */").as_deref(), Some("SET x=1"));
        // newer than the server: ignored, as the server ignores it
        assert_eq!(u("SELECT 1 /*!110000 + 1 */").as_deref(), Some("SELECT 1"));
        assert_eq!(u("SELECT 1 /*M!999999 + 1 */").as_deref(), Some("SELECT 1"));
        // inside quotes it is text
        assert_eq!(u("SELECT '/*!40100 x */'"), None);
        assert_eq!(
            u("SELECT 'a''/*!1' /*!50001 , 2 */ FROM `x/*!`").as_deref(),
            Some("SELECT 'a''/*!1' , 2 FROM `x/*!`")
        );
        // unterminated: runs to the end
        assert_eq!(u("SELECT /*!40100 2").as_deref(), Some("SELECT 2"));
    }
}
