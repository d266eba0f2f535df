//! What a series usually spends, learned from its own last week, so that every cost rule is
//! measured in the series' own units: the same rule fits a $2-a-day team and a $200-a-day one.
//!
//! Two robust numbers, both over the stretches the series spent anything in (idle nights and
//! weekends say nothing about how much a working hour costs):
//! - the median of its active hours: a typical working hour;
//! - the 90th percentile of its active 10-minute stretches: what a busy stretch costs, the rate
//!   a runaway loop is measured against.
//!
//! A series with little history (a new user, a new team) is compared with its organisation: the
//! median baseline of the other series of its dimension, raised to its own where it already has
//! some history, so that a new heavy user is not an incident on their first day either.

/// A series' usual spend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Median spend of the hours it spent anything in, USD.
    pub typical_hour_usd: f64,
    /// 90th percentile of the 10-minute stretches it spent anything in, USD.
    pub busy_10min_usd: f64,
    /// Active 10-minute stretches it was learned from.
    pub samples: usize,
}

/// Active 10-minute stretches a baseline needs before it stands on its own (two busy hours).
pub const WARM_SAMPLES: usize = 12;
/// Active stretches a partial baseline needs to count at all during warm-up.
pub const PARTIAL_SAMPLES: usize = 3;
/// History a series needs before it speaks for its organisation, minutes (a whole day).
pub const SEASONED_MINUTES: i64 = 24 * 60;

impl Baseline {
    /// The baseline of these active 10-minute and hourly spends (zeros are left out); `None`
    /// when nothing was spent.
    pub fn learn(
        blocks: impl Iterator<Item = f64>,
        hours: impl Iterator<Item = f64>,
    ) -> Option<Baseline> {
        let mut blocks: Vec<f64> = blocks.filter(|v| *v > 0.0).collect();
        let mut hours: Vec<f64> = hours.filter(|v| *v > 0.0).collect();
        if blocks.is_empty() || hours.is_empty() {
            return None;
        }
        Some(Baseline {
            typical_hour_usd: quantile(&mut hours, 0.5),
            busy_10min_usd: quantile(&mut blocks, 0.9),
            samples: blocks.len(),
        })
    }

    /// The larger of each number.
    pub fn max(self, other: Baseline) -> Baseline {
        Baseline {
            typical_hour_usd: self.typical_hour_usd.max(other.typical_hour_usd),
            busy_10min_usd: self.busy_10min_usd.max(other.busy_10min_usd),
            samples: self.samples.max(other.samples),
        }
    }

    /// The median of each number over `baselines`: an organisation's usual series.
    pub fn median_of(baselines: &[Baseline]) -> Option<Baseline> {
        if baselines.is_empty() {
            return None;
        }
        let mut hours: Vec<f64> = baselines.iter().map(|b| b.typical_hour_usd).collect();
        let mut busy: Vec<f64> = baselines.iter().map(|b| b.busy_10min_usd).collect();
        Some(Baseline {
            typical_hour_usd: quantile(&mut hours, 0.5),
            busy_10min_usd: quantile(&mut busy, 0.5),
            samples: baselines.iter().map(|b| b.samples).sum(),
        })
    }
}

/// The `q` quantile of `values` by linear interpolation between the nearest ranks.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (low, high) = (position.floor() as usize, position.ceil() as usize);
    values[low] + (values[high] - values[low]) * (position - low as f64)
}

/// What a series is measured against: its own baseline once warm; during warm-up the
/// organisation's for its dimension, raised to its own partial one; `None` while the
/// organisation itself has no history to speak for it (the first day of a deployment).
pub fn effective(
    own: Option<(Baseline, bool)>,
    organisation: Option<Baseline>,
) -> Option<Baseline> {
    match (own, organisation) {
        (Some((own, true)), _) => Some(own),
        (Some((own, false)), Some(org)) if own.samples >= PARTIAL_SAMPLES => Some(own.max(org)),
        (_, org) => org,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_from_active_stretches_only() {
        // An hour of $1 a 10 minutes twice a day, idle otherwise.
        let blocks = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 3.0];
        let hours = [0.0, 6.0, 0.0, 6.0, 0.0];
        let b = Baseline::learn(blocks.into_iter(), hours.into_iter()).unwrap();
        assert_eq!(b.typical_hour_usd, 6.0);
        assert_eq!(b.samples, 3);
        assert!((b.busy_10min_usd - 2.6).abs() < 1e-12, "{b:?}");
    }

    #[test]
    fn a_series_of_zeros_has_no_baseline() {
        assert_eq!(
            Baseline::learn([0.0; 50].into_iter(), [0.0; 5].into_iter()),
            None
        );
        assert_eq!(
            Baseline::learn(std::iter::empty(), std::iter::empty()),
            None
        );
        assert_eq!(Baseline::median_of(&[]), None);
    }

    #[test]
    fn warm_up_falls_back_to_the_organisation_raised_to_its_own() {
        let org = Baseline {
            typical_hour_usd: 2.0,
            busy_10min_usd: 0.5,
            samples: 500,
        };
        let heavy_newcomer = Baseline {
            typical_hour_usd: 8.0,
            busy_10min_usd: 0.4,
            samples: 4,
        };
        let raised = effective(Some((heavy_newcomer, false)), Some(org)).unwrap();
        assert_eq!((raised.typical_hour_usd, raised.busy_10min_usd), (8.0, 0.5));
        // Too little history of its own: the organisation alone.
        let glimpse = Baseline {
            samples: 1,
            ..heavy_newcomer
        };
        assert_eq!(effective(Some((glimpse, false)), Some(org)), Some(org));
        assert_eq!(effective(None, Some(org)), Some(org));
        // Warm: its own, whatever the organisation.
        assert_eq!(effective(Some((glimpse, true)), Some(org)), Some(glimpse));
        // The organisation has no history yet: nothing to measure against, not even a few
        // hours of one's own (a first morning's ramp is no baseline).
        assert_eq!(effective(Some((heavy_newcomer, false)), None), None);
        assert_eq!(effective(None, None), None);
    }
}
