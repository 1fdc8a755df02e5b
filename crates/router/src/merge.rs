//! Combining the rows of a scatter SELECT into the rows one server would have
//! returned. Pure functions over decoded rows, so that the merge semantics
//! can be tested without servers and the gate's oracle test has one place to
//! blame.

use crate::datum::{Datum, add, average, compare};
use std::cmp::Ordering;

/// One decoded result row.
pub type Row = Vec<Datum>;

/// A column of the shard rows: counted from the start, or from the end when
/// the query has a `*` whose width the planner cannot know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    At(usize),
    /// `FromEnd(1)` is the last column.
    FromEnd(usize),
}

impl Column {
    fn index(self, width: usize) -> usize {
        match self {
            Column::At(i) => i,
            Column::FromEnd(k) => width.saturating_sub(k),
        }
    }
}

/// How partial results of one aggregate combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregateFn {
    /// Shards return counts; the merge adds them.
    Count,
    /// Shards return partial sums; the merge adds them (NULL if all are).
    Sum,
    Min,
    Max,
    /// The column holds a partial `SUM`; `count` holds the matching partial
    /// `COUNT`, a hidden column. The merge divides the totals.
    Avg {
        count: Column,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aggregate {
    pub column: Column,
    pub func: AggregateFn,
}

/// Grouping: rows equal on `group_by` fold into one; aggregate columns
/// combine, every other column keeps the first shard's value (MySQL's
/// "any value" for non-aggregated columns).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Aggregation {
    /// Empty: one scalar aggregate row over everything.
    pub group_by: Vec<Column>,
    pub aggregates: Vec<Aggregate>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderKey {
    pub column: Column,
    pub descending: bool,
}

/// What the gate does with the rows of a scatter SELECT, in this order:
/// aggregate, de-duplicate, sort, skip `offset`, keep `limit`, drop the
/// `hidden` trailing columns the planner added for its own use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Merge {
    pub aggregation: Option<Aggregation>,
    pub distinct: bool,
    pub order_by: Vec<OrderKey>,
    pub offset: u64,
    pub limit: Option<u64>,
    pub hidden: usize,
}

impl Merge {
    /// Whether the merge can pass rows through as they arrive (no ordering
    /// or grouping), which lets the executor stream and stop at the limit.
    pub fn is_streaming(&self) -> bool {
        self.aggregation.is_none() && !self.distinct && self.order_by.is_empty()
    }
}

/// Merges per-shard results into the client's rows.
pub fn merge(rows_per_shard: Vec<Vec<Row>>, merge: &Merge) -> Vec<Row> {
    let mut rows: Vec<Row> = rows_per_shard.into_iter().flatten().collect();
    if let Some(agg) = &merge.aggregation {
        rows = aggregate(rows, agg);
        if merge.order_by.is_empty() && !agg.group_by.is_empty() {
            // MariaDB returns GROUP BY results sorted by the group columns
            // when no ORDER BY says otherwise; one server would have.
            let keys: Vec<OrderKey> = agg
                .group_by
                .iter()
                .map(|&column| OrderKey {
                    column,
                    descending: false,
                })
                .collect();
            sort(&mut rows, &keys);
        }
    }
    if merge.distinct {
        rows = distinct(rows, merge.hidden);
    }
    if !merge.order_by.is_empty() {
        sort(&mut rows, &merge.order_by);
    }
    let skip = usize::try_from(merge.offset).unwrap_or(usize::MAX);
    let take = merge
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut out: Vec<Row> = rows.into_iter().skip(skip).take(take).collect();
    if merge.hidden > 0 {
        for row in &mut out {
            let keep = row.len().saturating_sub(merge.hidden);
            row.truncate(keep);
        }
    }
    out
}

fn cell(row: &Row, c: Column) -> &Datum {
    row.get(c.index(row.len())).unwrap_or(&Datum::Null)
}

fn cmp_keys(a: &Row, b: &Row, keys: &[OrderKey]) -> Ordering {
    for k in keys {
        let o = compare(cell(a, k.column), cell(b, k.column));
        let o = if k.descending { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn sort(rows: &mut [Row], keys: &[OrderKey]) {
    rows.sort_by(|a, b| cmp_keys(a, b, keys));
}

fn same_group(a: &Row, b: &Row, cols: &[Column]) -> bool {
    cols.iter()
        .all(|&c| compare(cell(a, c), cell(b, c)) == Ordering::Equal)
}

fn aggregate(rows: Vec<Row>, agg: &Aggregation) -> Vec<Row> {
    // Sort by the group key so equal groups (by MySQL comparison, which
    // folds case) are adjacent; stable so the first shard's row leads.
    let keys: Vec<OrderKey> = agg
        .group_by
        .iter()
        .map(|&column| OrderKey {
            column,
            descending: false,
        })
        .collect();
    let mut rows = rows;
    sort(&mut rows, &keys);
    let mut out: Vec<Row> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(acc) if same_group(acc, &row, &agg.group_by) => fold(acc, &row, agg),
            _ => out.push(row),
        }
    }
    for row in &mut out {
        for a in &agg.aggregates {
            if let AggregateFn::Avg { count } = a.func {
                let width = row.len();
                let (s, c) = (a.column.index(width), count.index(width));
                if s < width && c < width {
                    row[s] = average(&row[s], &row[c]);
                }
            }
        }
    }
    out
}

fn fold(acc: &mut Row, row: &Row, agg: &Aggregation) {
    let width = acc.len().min(row.len());
    for a in &agg.aggregates {
        let i = a.column.index(acc.len());
        if i >= width {
            continue;
        }
        let next = match a.func {
            AggregateFn::Count | AggregateFn::Sum => add(&acc[i], &row[i]),
            AggregateFn::Avg { count } => {
                let c = count.index(acc.len());
                if c < width {
                    acc[c] = add(&acc[c], &row[c]);
                }
                add(&acc[i], &row[i])
            }
            AggregateFn::Min | AggregateFn::Max => {
                let (x, y) = (&acc[i], &row[i]);
                let pick_row = match (x.is_null(), y.is_null()) {
                    (_, true) => false,
                    (true, false) => true,
                    _ => {
                        let o = compare(y, x);
                        if a.func == AggregateFn::Min {
                            o == Ordering::Less
                        } else {
                            o == Ordering::Greater
                        }
                    }
                };
                if pick_row { y.clone() } else { x.clone() }
            }
        };
        acc[i] = next;
    }
}

/// Keeps the first of each set of rows equal in their visible columns (by
/// MySQL comparison), in their original order. Sorting row numbers makes it
/// O(n log n) comparisons: a scatter `SELECT DISTINCT` of a few hundred
/// long strings compared every pair before, and that was a quarter of the
/// gate's CPU under sysbench's sharded oltp_read_write.
fn distinct(rows: Vec<Row>, hidden: usize) -> Vec<Row> {
    let cmp_visible = |a: &Row, b: &Row| -> Ordering {
        let visible = a.len().min(b.len()).saturating_sub(hidden);
        (0..visible)
            .map(|i| compare(&a[i], &b[i]))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
            .then(a.len().cmp(&b.len()))
    };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    // ties keep their original order, so each run of equals starts with its first row
    order.sort_by(|&x, &y| cmp_visible(&rows[x], &rows[y]));
    let mut keep = vec![false; rows.len()];
    let mut last: Option<usize> = None;
    for i in order {
        if last.is_none_or(|l| cmp_visible(&rows[l], &rows[i]).is_ne()) {
            keep[i] = true;
            last = Some(i);
        }
    }
    rows.into_iter()
        .zip(keep)
        .filter_map(|(row, k)| k.then_some(row))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Datum::{Int, Null};

    fn t(s: &str) -> Datum {
        Datum::Text(s.as_bytes().to_vec())
    }
    fn d(s: &str) -> Datum {
        Datum::Decimal(s.to_string())
    }
    fn key(i: usize, desc: bool) -> OrderKey {
        OrderKey {
            column: Column::At(i),
            descending: desc,
        }
    }

    #[test]
    fn order_by_with_nulls_first_and_limit_offset() {
        let m = Merge {
            order_by: vec![key(0, false)],
            offset: 1,
            limit: Some(3),
            ..Merge::default()
        };
        let out = merge(
            vec![
                vec![vec![Int(3)], vec![Int(7)]],
                vec![vec![Null], vec![Int(1)], vec![Int(5)]],
            ],
            &m,
        );
        assert_eq!(out, vec![vec![Int(1)], vec![Int(3)], vec![Int(5)]]);
    }

    #[test]
    fn descending_puts_nulls_last_and_ties_break_on_next_key() {
        let m = Merge {
            order_by: vec![key(0, true), key(1, false)],
            ..Merge::default()
        };
        let out = merge(
            vec![
                vec![vec![Null, Int(1)], vec![Int(2), Int(9)]],
                vec![vec![Int(2), Int(3)], vec![Int(1), Int(0)]],
            ],
            &m,
        );
        assert_eq!(
            out,
            vec![
                vec![Int(2), Int(3)],
                vec![Int(2), Int(9)],
                vec![Int(1), Int(0)],
                vec![Null, Int(1)]
            ]
        );
    }

    #[test]
    fn scalar_aggregates_combine() {
        // SELECT COUNT(*), SUM(k), MIN(c), MAX(c)
        let m = Merge {
            aggregation: Some(Aggregation {
                group_by: vec![],
                aggregates: vec![
                    Aggregate {
                        column: Column::At(0),
                        func: AggregateFn::Count,
                    },
                    Aggregate {
                        column: Column::At(1),
                        func: AggregateFn::Sum,
                    },
                    Aggregate {
                        column: Column::At(2),
                        func: AggregateFn::Min,
                    },
                    Aggregate {
                        column: Column::At(3),
                        func: AggregateFn::Max,
                    },
                ],
            }),
            ..Merge::default()
        };
        let out = merge(
            vec![
                vec![vec![Int(2), d("10"), t("b"), t("x")]],
                vec![vec![Int(0), Null, Null, Null]],
                vec![vec![Int(3), d("5"), t("A"), t("y")]],
            ],
            &m,
        );
        assert_eq!(out, vec![vec![Int(5), d("15"), t("A"), t("y")]]);
    }

    #[test]
    fn sum_of_nothing_is_null() {
        let m = Merge {
            aggregation: Some(Aggregation {
                group_by: vec![],
                aggregates: vec![Aggregate {
                    column: Column::At(0),
                    func: AggregateFn::Sum,
                }],
            }),
            ..Merge::default()
        };
        assert_eq!(
            merge(vec![vec![vec![Null]], vec![vec![Null]]], &m),
            vec![vec![Null]]
        );
    }

    #[test]
    fn group_by_merges_groups_case_insensitively_and_sorts() {
        // SELECT c, COUNT(*), AVG(k) [hidden COUNT(k)] GROUP BY c
        let m = Merge {
            aggregation: Some(Aggregation {
                group_by: vec![Column::At(0)],
                aggregates: vec![
                    Aggregate {
                        column: Column::At(1),
                        func: AggregateFn::Count,
                    },
                    Aggregate {
                        column: Column::At(2),
                        func: AggregateFn::Avg {
                            count: Column::FromEnd(1),
                        },
                    },
                ],
            }),
            hidden: 1,
            ..Merge::default()
        };
        let out = merge(
            vec![
                vec![
                    vec![t("b"), Int(1), d("4"), Int(1)],
                    vec![t("a"), Int(2), d("3"), Int(2)],
                ],
                vec![vec![t("A"), Int(1), d("4"), Int(1)]],
            ],
            &m,
        );
        assert_eq!(
            out,
            vec![
                vec![t("a"), Int(3), d("2.3333")],
                vec![t("b"), Int(1), d("4.0000")]
            ]
        );
    }

    #[test]
    fn group_by_then_order_by_aggregate_and_limit() {
        let m = Merge {
            aggregation: Some(Aggregation {
                group_by: vec![Column::At(0)],
                aggregates: vec![Aggregate {
                    column: Column::At(1),
                    func: AggregateFn::Count,
                }],
            }),
            order_by: vec![key(1, true)],
            limit: Some(1),
            ..Merge::default()
        };
        let out = merge(
            vec![
                vec![vec![Int(1), Int(1)], vec![Int(2), Int(2)]],
                vec![vec![Int(1), Int(5)]],
            ],
            &m,
        );
        assert_eq!(out, vec![vec![Int(1), Int(6)]]);
    }

    #[test]
    fn distinct_ignores_hidden_columns() {
        let m = Merge {
            distinct: true,
            order_by: vec![key(0, false)],
            ..Merge::default()
        };
        let out = merge(
            vec![
                vec![vec![t("x")], vec![t("y")]],
                vec![vec![t("X")], vec![t("a")]],
            ],
            &m,
        );
        assert_eq!(out, vec![vec![t("a")], vec![t("x")], vec![t("y")]]);
    }

    /// The definition: a row is dropped when an earlier kept row of the
    /// same width equals it in every visible column.
    fn distinct_pairwise(rows: Vec<Row>, hidden: usize) -> Vec<Row> {
        let mut out: Vec<Row> = Vec::new();
        for row in rows {
            let visible = row.len().saturating_sub(hidden);
            let dup = out.iter().any(|o| {
                o.len() == row.len()
                    && (0..visible).all(|i| compare(&o[i], &row[i]) == Ordering::Equal)
            });
            if !dup {
                out.push(row);
            }
        }
        out
    }

    fn cell_strategy() -> impl proptest::strategy::Strategy<Value = Datum> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Null),
            (-2i64..3).prop_map(Int),
            prop::sample::select(vec!["a", "A", "a ", "b", "é", "E", ""]).prop_map(t),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn distinct_keeps_the_first_of_each_equal_set_in_order(
            rows in proptest::collection::vec(proptest::collection::vec(cell_strategy(), 1..4), 0..24),
            hidden in 0usize..2,
        ) {
            proptest::prop_assert_eq!(distinct(rows.clone(), hidden), distinct_pairwise(rows, hidden));
        }
    }

    #[test]
    fn hidden_order_column_is_dropped() {
        let m = Merge {
            order_by: vec![OrderKey {
                column: Column::FromEnd(1),
                descending: false,
            }],
            hidden: 1,
            ..Merge::default()
        };
        let out = merge(
            vec![vec![vec![t("p"), Int(2)]], vec![vec![t("q"), Int(1)]]],
            &m,
        );
        assert_eq!(out, vec![vec![t("q")], vec![t("p")]]);
    }
}
