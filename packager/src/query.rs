//! Parsing of the LL-HLS delivery directives in a playlist request's query string.

/// `_HLS_skip`: whether the client asks for a delta update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Skip {
    /// A full playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: skip old segments.
    Yes,
    /// `_HLS_skip=v2`: skip old segments and date ranges (there are none here: same as `Yes`).
    V2,
}

/// The directives of one playlist request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query {
    /// `_HLS_msn`: wait for this media sequence number.
    pub msn: Option<u64>,
    /// `_HLS_part`: wait for this part of `msn`.
    pub part: Option<u32>,
    /// `_HLS_skip`.
    pub skip: Skip,
}

/// A query string that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A directive's value is not what the spec allows.
    #[error("invalid value for {name} at byte {pos}")]
    InvalidValue {
        /// The directive.
        name: &'static str,
        /// Byte offset of the value in the query string.
        pos: usize,
    },
    /// A directive appears twice.
    #[error("{name} given more than once")]
    Duplicate {
        /// The directive.
        name: &'static str,
    },
}

impl Query {
    /// Parses the part after `?`. Parameters other than the `_HLS_` directives are ignored (players
    /// add cache busters); an `_HLS_` directive with a bad value is an error.
    ///
    /// ```
    /// use zerocast_packager::query::{Query, Skip};
    /// let q = Query::parse("_HLS_msn=12&_HLS_part=3&_HLS_skip=YES").unwrap();
    /// assert_eq!((q.msn, q.part, q.skip), (Some(12), Some(3), Skip::Yes));
    /// assert!(Query::parse("_HLS_msn=-1").is_err());
    /// ```
    pub fn parse(query: &str) -> Result<Self, QueryError> {
        let mut q = Query::default();
        let mut skip_seen = false;
        let mut pos = 0;
        for pair in query.split('&') {
            let start = pos;
            pos += pair.len() + 1;
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            // Where the value starts; for a directive without `=`, the end of the directive.
            let vpos = start + pair.len() - value.len();
            match key {
                "_HLS_msn" => {
                    if q.msn.is_some() {
                        return Err(QueryError::Duplicate { name: "_HLS_msn" });
                    }
                    q.msn = Some(number(value).ok_or(QueryError::InvalidValue {
                        name: "_HLS_msn",
                        pos: vpos,
                    })?);
                }
                "_HLS_part" => {
                    if q.part.is_some() {
                        return Err(QueryError::Duplicate { name: "_HLS_part" });
                    }
                    let v = number(value).and_then(|v| u32::try_from(v).ok());
                    q.part = Some(v.ok_or(QueryError::InvalidValue {
                        name: "_HLS_part",
                        pos: vpos,
                    })?);
                }
                "_HLS_skip" => {
                    if skip_seen {
                        return Err(QueryError::Duplicate { name: "_HLS_skip" });
                    }
                    skip_seen = true;
                    q.skip = match value {
                        "YES" => Skip::Yes,
                        "v2" => Skip::V2,
                        _ => {
                            return Err(QueryError::InvalidValue {
                                name: "_HLS_skip",
                                pos: vpos,
                            })
                        }
                    };
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// A decimal integer as the spec's `decimal-integer`: digits only, no sign, at most 20 digits.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_ignores_other_params() {
        let q = Query::parse("t=123&_HLS_msn=7").unwrap();
        assert_eq!(q.msn, Some(7));
        assert_eq!(q.part, None);
        assert_eq!(Query::parse("").unwrap(), Query::default());
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            "_HLS_msn=",
            "_HLS_msn=1x",
            "_HLS_msn=+1",
            "_HLS_msn=99999999999999999999",
            "_HLS_part=4294967296&_HLS_msn=1",
            "_HLS_skip=yes",
            "_HLS_msn=1&_HLS_msn=2",
        ] {
            assert!(Query::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_directive_and_where_its_value_is() {
        let cases = [
            (
                "_HLS_part=1&_HLS_part=2",
                QueryError::Duplicate { name: "_HLS_part" },
            ),
            (
                "_HLS_skip=YES&_HLS_skip=v2",
                QueryError::Duplicate { name: "_HLS_skip" },
            ),
            (
                "t=1&_HLS_part=x",
                QueryError::InvalidValue {
                    name: "_HLS_part",
                    pos: 14,
                },
            ),
            (
                "_HLS_msn=3&_HLS_skip",
                QueryError::InvalidValue {
                    name: "_HLS_skip",
                    pos: 20, // the end of the query, not one past it
                },
            ),
        ];
        for (query, err) in cases {
            assert_eq!(Query::parse(query), Err(err), "{query}");
        }
        let q = Query::parse("_HLS_skip=v2&_HLS_msn=3").unwrap();
        assert_eq!((q.msn, q.part, q.skip), (Some(3), None, Skip::V2));
    }

    proptest::proptest! {
        /// An error points into the query (at most at its end), so a log can show the spot.
        #[test]
        fn error_positions_are_within_the_query(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "_HLS_msn", "_HLS_part", "_HLS_skip", "=", "&", "1", "x", "YES", "v2", "-",
                ]),
                0..12,
            )
        ) {
            let query = parts.concat();
            if let Err(QueryError::InvalidValue { pos, .. }) = Query::parse(&query) {
                proptest::prop_assert!(pos <= query.len(), "{query:?}: {pos}");
            }
        }

        #[test]
        fn round_trip(msn in proptest::option::of(0u64..u64::MAX), part in proptest::option::of(proptest::num::u32::ANY)) {
            let mut s = String::from("x=1");
            if let Some(m) = msn { s.push_str(&format!("&_HLS_msn={m}")); }
            if let Some(p) = part { s.push_str(&format!("&_HLS_part={p}")); }
            let q = Query::parse(&s).unwrap();
            proptest::prop_assert_eq!((q.msn, q.part), (msn, part));
        }
    }
}
