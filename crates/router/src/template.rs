//! Statement text with holes for prepared-statement parameters (and, in
//! INSERT rows, for sequence ids), so that a statement is parsed and planned
//! once and only spliced together at execute time.

use crate::datum::Datum;
use crate::error::RouteError;
use crate::lex::{Kind, lex};

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Text(String),
    /// The n-th (0-based) parameter of the prepared statement.
    Param(usize),
    /// The sequence id generated for this INSERT row.
    NextId,
    /// The generated id if the row got one, else parameter n (an
    /// auto-increment column given as `?`, which may be NULL or 0).
    IdOrParam(usize),
    /// `limit + offset`, what a scatter query asks each shard for when
    /// either comes from a parameter.
    Sum(Bound, Bound),
}

/// A LIMIT or OFFSET: a number in the text, or a prepared-statement
/// parameter known only at execute time (`LIMIT ?`, which drivers send for
/// pagination).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bound {
    Lit(u64),
    Param(usize),
}

impl Bound {
    pub(crate) fn resolve(self, params: &[Datum]) -> Result<u64, RouteError> {
        let n = match self {
            Bound::Lit(n) => return Ok(n),
            Bound::Param(n) => n,
        };
        let d = params.get(n).ok_or(RouteError::WrongParamCount {
            expected: n + 1,
            got: params.len(),
        })?;
        let v = match d {
            Datum::Int(i) => u64::try_from(*i).ok(),
            Datum::UInt(u) => Some(*u),
            Datum::Decimal(s) => s.parse().ok(),
            Datum::Binary(b) | Datum::Text(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            _ => None,
        };
        v.ok_or_else(|| {
            RouteError::Unsupported(format!(
                "LIMIT and OFFSET take non-negative integers; parameter {} is {}",
                n + 1,
                d.to_sql_literal()
            ))
        })
    }
}

/// Text with holes. Bare `?` are numbered in textual order; the planner's
/// `?<n>` markers (what it prints in place of `?` after rewriting a
/// statement) keep their number.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Template {
    pub(crate) pieces: Vec<Piece>,
}

impl Template {
    pub(crate) fn new(sql: &str) -> Template {
        let mut pieces = Vec::new();
        let mut last = 0;
        let mut next = 0;
        for t in lex(sql) {
            let n = match t.kind {
                Kind::Param => {
                    next += 1;
                    next - 1
                }
                Kind::Marker => t.text[1..].parse().unwrap_or(0),
                _ => continue,
            };
            if t.start > last {
                pieces.push(Piece::Text(sql[last..t.start].to_string()));
            }
            pieces.push(Piece::Param(n));
            last = t.end;
        }
        if last < sql.len() || pieces.is_empty() {
            pieces.push(Piece::Text(sql[last..].to_string()));
        }
        Template { pieces }
    }

    /// Inserts `words` after the first word of the text when that is
    /// SELECT (the planner's way to put back modifiers it removed).
    pub(crate) fn insert_after_select(&mut self, words: &str) {
        if let Some(Piece::Text(t)) = self.pieces.first_mut()
            && let Some(sel) = lex(t).first().filter(|t| t.is_word("select"))
        {
            t.insert_str(sel.end, &format!(" {words}"));
        }
    }

    pub(crate) fn from_pieces(pieces: Vec<Piece>) -> Template {
        Template { pieces }
    }

    /// Replaces the hole of parameter `n` with `piece`.
    pub(crate) fn replace_param(&mut self, n: usize, piece: Piece) {
        for p in &mut self.pieces {
            if *p == Piece::Param(n) {
                *p = piece;
                return;
            }
        }
    }

    /// One more than the highest parameter number used.
    pub fn param_count(&self) -> usize {
        self.pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Param(n) | Piece::IdOrParam(n) => vec![n + 1],
                Piece::Sum(a, b) => [a, b]
                    .into_iter()
                    .filter_map(|b| match b {
                        Bound::Param(n) => Some(n + 1),
                        Bound::Lit(_) => None,
                    })
                    .collect(),
                _ => Vec::new(),
            })
            .max()
            .unwrap_or(0)
    }

    /// The text when it has no holes: the common case of a plain query.
    pub fn as_text(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The statement with each parameter inlined as a SQL literal.
    pub fn render(&self, params: &[Datum]) -> Result<String, RouteError> {
        self.render_with_id(params, None)
    }

    pub(crate) fn render_with_id(
        &self,
        params: &[Datum],
        id: Option<i64>,
    ) -> Result<String, RouteError> {
        if let Some(t) = self.as_text() {
            return Ok(t.to_string());
        }
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Param(n) => match params.get(*n) {
                    Some(d) => out.push_str(&d.to_sql_literal()),
                    None => {
                        return Err(RouteError::WrongParamCount {
                            expected: self.param_count(),
                            got: params.len(),
                        });
                    }
                },
                Piece::NextId => match id {
                    Some(i) => out.push_str(&i.to_string()),
                    None => out.push_str("NULL"),
                },
                Piece::Sum(a, b) => {
                    let n = a.resolve(params)?.saturating_add(b.resolve(params)?);
                    out.push_str(&n.to_string());
                }
                Piece::IdOrParam(n) => match (id, params.get(*n)) {
                    (Some(i), _) => out.push_str(&i.to_string()),
                    (None, Some(d)) => out.push_str(&d.to_sql_literal()),
                    (None, None) => {
                        return Err(RouteError::WrongParamCount {
                            expected: n + 1,
                            got: params.len(),
                        });
                    }
                },
            }
        }
        Ok(out)
    }

    /// Appends a clause the parser could not read, kept verbatim, separated
    /// by a space unless the text already ends with one.
    pub(crate) fn push_clause(&mut self, clause: &str) {
        match self.pieces.last_mut() {
            Some(Piece::Text(t)) => {
                if !t.ends_with(char::is_whitespace) {
                    t.push(' ');
                }
                t.push_str(clause);
            }
            _ => self.pieces.push(Piece::Text(format!(" {clause}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_params_outside_strings_and_comments() {
        let t = Template::new("SELECT c FROM t WHERE id = ? AND c = '?' /* ? */ AND k IN (?, ?)");
        assert_eq!(t.param_count(), 3);
        let s = t
            .render(&[Datum::Int(1), Datum::Text(b"a'b".to_vec()), Datum::Null])
            .expect("render");
        assert_eq!(
            s,
            "SELECT c FROM t WHERE id = 1 AND c = '?' /* ? */ AND k IN ('a\\'b', NULL)"
        );
        assert!(matches!(
            t.render(&[Datum::Int(1)]),
            Err(RouteError::WrongParamCount {
                expected: 3,
                got: 1
            })
        ));
        let m = Template::new("SELECT ?1, ?0");
        assert_eq!(
            m.render(&[Datum::Int(5), Datum::Int(6)]).expect("r"),
            "SELECT 6, 5"
        );
        assert_eq!(Template::new("SELECT 1").as_text(), Some("SELECT 1"));
    }
}
