// Raw statements built around a `VALUES` list that the connection keeps prepared; compiled
// once per backend like `queries.rs` (`super::Db` and `super::Conn` are the backend's).
//
// `diesel::sql_query` marks every statement unsafe to cache, so each batch write parsed and
// planned its statements again: on SQLite that was 4 % of the server's CPU in the 1,000 ×
// 500 fan-out profile (a few messages per commit, four statements each); on PostgreSQL it
// is a parse and a plan per statement. A [`ValuesSql`] is the same text with its values
// bound in place, which Diesel caches by its text: each shape (statement × rows) is
// prepared once per connection. Shapes of more than [`CACHED_ROWS`] rows are not kept:
// their preparation is spread over their rows, and keeping every size up to the chunk of
// 500 would keep hundreds of statements per connection.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Nullable, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

use super::{Conn, Db};

/// Statements of at most this many rows stay prepared.
pub const CACHED_ROWS: usize = 16;

/// One bound value.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(&'a str),
    BigInt(i64),
    NullableText(Option<&'a str>),
}

/// `head (v, v), (v, v), ... tail`: rows of `cols` bound values between two fixed texts.
#[derive(Debug)]
pub struct ValuesSql<'a> {
    head: &'static str,
    tail: &'static str,
    cols: usize,
    values: Vec<Value<'a>>,
}

impl<'a> ValuesSql<'a> {
    /// `head` ends where the list starts (`... VALUES `), `tail` follows it.
    pub fn new(head: &'static str, cols: usize, tail: &'static str) -> Self {
        Self {
            head,
            tail,
            cols: cols.max(1),
            values: Vec::new(),
        }
    }

    /// Appends one row; its length must be `cols`.
    pub fn row(mut self, row: &[Value<'a>]) -> Self {
        debug_assert_eq!(row.len(), self.cols);
        self.values.extend_from_slice(row);
        self
    }

    fn rows(&self) -> usize {
        self.values.len() / self.cols
    }
}

impl QueryFragment<Db> for ValuesSql<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Db>) -> QueryResult<()> {
        if self.rows() > CACHED_ROWS {
            out.unsafe_to_cache_prepared();
        }
        out.push_sql(self.head);
        for (i, row) in self.values.chunks(self.cols).enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    out.push_sql(", ");
                }
                match value {
                    Value::Text(s) => out.push_bind_param::<Text, str>(s)?,
                    Value::BigInt(n) => out.push_bind_param::<BigInt, i64>(n)?,
                    Value::NullableText(s) => {
                        out.push_bind_param::<Nullable<Text>, Option<&str>>(s)?
                    }
                }
            }
            out.push_sql(")");
        }
        out.push_sql(self.tail);
        Ok(())
    }
}

impl QueryId for ValuesSql<'_> {
    type QueryId = ();
    // Keyed by its text in the statement cache.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for ValuesSql<'_> {
    type SqlType = Untyped;
}

impl RunQueryDsl<Conn> for ValuesSql<'_> {}
