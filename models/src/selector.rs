//! Prometheus-style series selectors: `metric{label="v", other=~"re", x!="y", z!~"re"}`.
//!
//! Semantics follow PromQL: a missing label matches as the empty string, and regular
//! expressions are anchored at both ends.

use std::str::FromStr;

use regex::Regex;

use crate::{METRIC_NAME_LABEL, ModelError, SeriesMeta};

/// A matcher operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name (`__name__` for the metric name).
    pub name: String,
    /// The operator.
    pub op: MatchOp,
    /// The value or pattern as written.
    pub value: String,
    regex: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher, compiling the pattern of regex operators.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, ModelError> {
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(Regex::new(&format!("^(?:{value})$")).map_err(|source| {
                    ModelError::InvalidRegex {
                        regex: value.clone(),
                        source,
                    }
                })?)
            }
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    /// True when the label value `v` (empty when absent) satisfies the matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(r)) => r.is_match(v),
            (MatchOp::NotRegex, Some(r)) => !r.is_match(v),
            (MatchOp::Regex | MatchOp::NotRegex, None) => unreachable!("regex compiled in new"),
        }
    }
}

/// A conjunction of matchers. The empty selector matches every series.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    /// All must match.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// True when every matcher accepts the series.
    pub fn matches(&self, meta: &SeriesMeta) -> bool {
        self.matchers
            .iter()
            .all(|m| m.matches_value(meta.label(&m.name).unwrap_or("")))
    }
}

impl FromStr for Selector {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Parser { src: s, pos: 0 }.selector()
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err(&self, reason: impl Into<String>) -> ModelError {
        ModelError::InvalidSelector {
            selector: self.src.to_owned(),
            position: self.pos,
            reason: reason.into(),
        }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self, allow_colon: bool) -> Option<&'a str> {
        let start = self.pos;
        let src = self.src;
        for (i, c) in src[start..].char_indices() {
            let ok = c == '_'
                || c.is_ascii_alphabetic()
                || (i > 0 && c.is_ascii_digit())
                || (allow_colon && c == ':');
            if !ok {
                break;
            }
            self.pos = start + i + c.len_utf8();
        }
        (self.pos > start).then(|| &self.src[start..self.pos])
    }

    fn string(&mut self) -> Result<String, ModelError> {
        let quote = match self.rest().chars().next() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.err("expected a quoted string")),
        };
        self.pos += 1;
        let mut out = String::new();
        let rest = &self.src[self.pos..];
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c == '\\' && quote != '`' {
                match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, e)) => out.push(e),
                    None => break,
                }
            } else {
                out.push(c);
            }
        }
        Err(self.err("unterminated string"))
    }

    fn selector(mut self) -> Result<Selector, ModelError> {
        let mut matchers = Vec::new();
        self.skip_ws();
        if let Some(name) = self.ident(true) {
            matchers.push(Matcher::new(METRIC_NAME_LABEL, MatchOp::Equal, name)?);
        }
        self.skip_ws();
        if self.eat("{") {
            loop {
                self.skip_ws();
                if self.eat("}") {
                    break;
                }
                let name = self
                    .ident(false)
                    .ok_or_else(|| self.err("expected a label name"))?
                    .to_owned();
                self.skip_ws();
                let op = if self.eat("=~") {
                    MatchOp::Regex
                } else if self.eat("!~") {
                    MatchOp::NotRegex
                } else if self.eat("!=") {
                    MatchOp::NotEqual
                } else if self.eat("=") {
                    MatchOp::Equal
                } else {
                    return Err(self.err("expected one of =, !=, =~, !~"));
                };
                self.skip_ws();
                let value = self.string()?;
                matchers.push(Matcher::new(name, op, value)?);
                self.skip_ws();
                if self.eat("}") {
                    break;
                }
                if !self.eat(",") {
                    return Err(self.err("expected , or }"));
                }
            }
        }
        self.skip_ws();
        if !self.rest().is_empty() {
            return Err(self.err("unexpected trailing text"));
        }
        if matchers.is_empty() && !self.src.trim().is_empty() {
            return Err(self.err("a selector needs a metric name or at least one matcher"));
        }
        Ok(Selector { matchers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    fn meta() -> SeriesMeta {
        SeriesMeta::new(
            Source::Prometheus,
            "http_requests_total",
            [
                ("code".to_owned(), "500".to_owned()),
                ("job".to_owned(), "api".to_owned()),
            ],
        )
    }

    #[test]
    fn parses_all_operators() {
        let s: Selector = r#"http_requests_total{code=~"5..", job!="x", path!~"/a.*", job="api"}"#
            .parse()
            .expect("valid");
        assert_eq!(s.matchers.len(), 5);
        assert!(s.matches(&meta()));
    }

    #[test]
    fn regex_is_anchored_and_missing_label_is_empty() {
        let s: Selector = r#"{code=~"5"}"#.parse().expect("valid");
        assert!(!s.matches(&meta()));
        let s: Selector = r#"{missing=""}"#.parse().expect("valid");
        assert!(s.matches(&meta()));
    }

    #[test]
    fn rejects_malformed_selectors_with_position() {
        for bad in [
            "{job=}",
            "{job~\"a\"}",
            "up{job=\"a\"",
            "up extra",
            "{=\"a\"}",
            "{job=~\"(\"}",
        ] {
            let err = bad.parse::<Selector>().expect_err(bad);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn empty_selector_matches_everything() {
        let s: Selector = "".parse().expect("valid");
        assert!(s.matches(&meta()));
    }
}
