//! Resharding rules AWS enforces and local servers do not (kinesis-mock skips the 24-hour
//! budget, moto every rule): one UpdateShardCount moves to at most double and at least half
//! of the open shards, and a stream is rescaled at most 10 times in any 24 hours. A larger
//! change is planned as several steps; the rescalings are counted in the stream's outputs.

/// Rescalings AWS allows per stream in a rolling 24 hours.
pub const PER_DAY: usize = 10;
pub const DAY_SECS: i64 = 86_400;

/// The counts a change from `from` to `to` shards passes through, each one UpdateShardCount
/// (UNIFORM_SCALING) at most doubling or halving: 2 -> 9 is [4, 8, 9].
pub fn steps(from: i64, to: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut cur = from.max(1);
    while cur != to && to >= 1 {
        cur = if to > cur {
            to.min(cur * 2)
        } else {
            to.max((cur + 1) / 2)
        };
        out.push(cur);
    }
    out
}

/// `from -> a -> b -> to`, for plans and errors.
pub fn path(from: i64, to: i64) -> String {
    std::iter::once(from)
        .chain(steps(from, to))
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// The rescalings of the last 24 hours (Unix seconds), oldest first.
pub fn recent(history: &[i64], now: i64) -> Vec<i64> {
    let mut v: Vec<i64> = history
        .iter()
        .copied()
        .filter(|t| *t > now - DAY_SECS)
        .collect();
    v.sort_unstable();
    v
}

/// Whether `n` more rescalings fit in the budget now; if not, when the next one frees up.
pub fn fits(history: &[i64], n: usize, now: i64) -> Result<(), i64> {
    let r = recent(history, now);
    if r.len() + n <= PER_DAY {
        return Ok(());
    }
    // The oldest rescaling that must age out first.
    let must_expire = r.len() + n - PER_DAY;
    Err(r
        .get(must_expire - 1)
        .map_or(now + DAY_SECS, |t| t + DAY_SECS))
}

/// The history as the provider id carries it: `t1,t2`.
pub fn encode(history: &[i64]) -> String {
    history
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode(text: &str) -> Vec<i64> {
    text.split(',').filter_map(|t| t.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_to_nine_shards_is_planned_as_three_steps() {
        // AWS refuses more than double per call: 2 -> 4 -> 8 -> 9.
        assert_eq!(steps(2, 9), [4, 8, 9]);
        assert_eq!(path(2, 9), "2 -> 4 -> 8 -> 9");
    }

    #[test]
    fn scaling_down_halves_at_most_rounding_up() {
        // AWS refuses below half the open shards: 9 -> 5 -> 3 -> 2 -> 1.
        assert_eq!(steps(9, 1), [5, 3, 2, 1]);
        assert_eq!(steps(4, 2), [2], "exactly half is one step");
        assert!(steps(3, 3).is_empty());
    }

    #[test]
    fn only_ten_rescalings_fit_in_a_day() {
        // Eight in the last day leave room for two; a third must wait for the oldest to age.
        let now = 1_000_000;
        let history: Vec<i64> = (0..8).map(|i| now - 3_600 * (8 - i)).collect();
        assert!(fits(&history, 2, now).is_ok());
        assert_eq!(fits(&history, 3, now), Err(history[0] + DAY_SECS));
        // Rescalings older than a day no longer count.
        assert!(fits(&[now - DAY_SECS - 1; 10], 10, now).is_ok());
        assert_eq!(decode(&encode(&history)), history);
    }
}
