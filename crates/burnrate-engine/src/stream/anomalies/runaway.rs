//! `cost_runaway`: a one-sided CUSUM on per-minute spend, for the agent loop that calls the model
//! every few seconds until someone notices.
//!
//! Each minute's spend is measured in the series' busy rate `μ` (its busy 10-minute spend over
//! ten, see [`super::baseline`]): `S = max(0, S + spend/μ - k)`. Spend up to `k` busy rates
//! drains `S`; beyond it, the excess accumulates, and the rule fires once `S` reaches `h` and the
//! run has spent at least its floor. The time to fire falls with the size of the jump: at `r`
//! busy rates it is about `h / (r - k)` minutes (15 / (10 - 1.5): two minutes for a loop ten times
//! a busy stretch, fifteen for one at two and a half), whatever the absolute level, while one
//! expensive call, or a busy half hour at the series' usual pace, never gets there.
//!
//! The statistic is recomputed over the last hour at every minute instead of carried from minute
//! to minute: a restart rebuilds it from the windows like every other rule, and an hour is far
//! more than it needs to forget (it drains by `k` a minute).

/// How far back the CUSUM is recomputed, minutes.
pub const LOOKBACK_MINUTES: i64 = 60;

/// The CUSUM at the end of a run of minute spends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cusum {
    /// The statistic, in busy-rate minutes.
    pub score: f64,
    /// What the current run (since the statistic was last zero) spent, USD.
    pub run_usd: f64,
    /// How many minutes the current run has lasted.
    pub run_minutes: i64,
}

/// The CUSUM of `spends` (one per minute, oldest first) against the busy rate `busy_per_minute`
/// with tolerance `k`; `None` when the rate is not positive.
pub fn cusum(spends: impl Iterator<Item = f64>, busy_per_minute: f64, k: f64) -> Option<Cusum> {
    if busy_per_minute <= 0.0 || !busy_per_minute.is_finite() {
        return None;
    }
    let mut state = Cusum {
        score: 0.0,
        run_usd: 0.0,
        run_minutes: 0,
    };
    for spend in spends {
        state.score = (state.score + spend / busy_per_minute - k).max(0.0);
        if state.score > 0.0 {
            state.run_usd += spend;
            state.run_minutes += 1;
        } else {
            state.run_usd = 0.0;
            state.run_minutes = 0;
        }
    }
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_to_fire_falls_with_the_size_of_the_jump() {
        let minutes_to = |rate: f64| {
            (1..=60)
                .find(|&n| cusum(std::iter::repeat_n(rate, n), 1.0, 1.5).unwrap().score >= 15.0)
                .unwrap_or(i64::MAX as usize)
        };
        assert_eq!(minutes_to(40.0), 1);
        assert_eq!(minutes_to(10.0), 2);
        assert_eq!(minutes_to(4.0), 6);
        assert_eq!(minutes_to(2.5), 15);
        // At or under the tolerance it never fires.
        assert_eq!(minutes_to(1.5), i64::MAX as usize);
    }

    #[test]
    fn one_expensive_minute_then_the_usual_pace_drains_away() {
        let mut spends = vec![12.0];
        spends.extend(std::iter::repeat_n(1.0, 30));
        let state = cusum(spends.into_iter(), 1.0, 1.5).unwrap();
        assert_eq!(state.score, 0.0);
        assert_eq!((state.run_usd, state.run_minutes), (0.0, 0));
    }

    #[test]
    fn zeros_and_a_zero_rate_are_nothing() {
        let state = cusum(std::iter::repeat_n(0.0, 60), 0.5, 1.5).unwrap();
        assert_eq!(state.score, 0.0);
        assert_eq!(cusum(std::iter::repeat_n(1.0, 5), 0.0, 1.5), None);
        assert_eq!(cusum(std::iter::repeat_n(1.0, 5), f64::NAN, 1.5), None);
    }

    #[test]
    fn the_run_counts_what_was_spent_since_the_statistic_left_zero() {
        let spends = [0.5, 0.5, 5.0, 5.0, 5.0];
        let state = cusum(spends.into_iter(), 1.0, 1.5).unwrap();
        assert_eq!(state.run_minutes, 3);
        assert_eq!(state.run_usd, 15.0);
        assert!((state.score - 10.5).abs() < 1e-12);
    }
}
