//! Samples and their summary: median and p99 (nearest rank, as `scripts/bench-qemu-peer`
//! computes them), and the table and ratio lines every part prints.

use std::fmt::Write as _;
use std::time::Duration;

/// A set of timed samples of one measured thing.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

/// Median, p99, min and max of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// The median (mean of the two middle values for an even count).
    pub median: Duration,
    /// The 99th percentile, nearest rank.
    pub p99: Duration,
    /// The smallest sample.
    pub min: Duration,
    /// The largest sample.
    pub max: Duration,
}

impl Samples {
    /// An empty set with room for `capacity` samples.
    pub fn with_capacity(capacity: usize) -> Samples {
        Samples {
            values: Vec::with_capacity(capacity),
        }
    }

    /// Adds one sample.
    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: Samples) {
        self.values.extend(other.values);
    }

    /// The samples, in the order they were taken.
    pub fn values(&self) -> &[Duration] {
        &self.values
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The summary, or `None` without samples.
    pub fn summary(&self) -> Option<Summary> {
        if self.values.is_empty() {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2
        };
        let rank = (n * 99).div_ceil(100).max(1);
        Some(Summary {
            count: n,
            median,
            p99: sorted[rank - 1],
            min: sorted[0],
            max: sorted[n - 1],
        })
    }
}

/// The unit a table prints its durations in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds, three decimals.
    Millis,
    /// Microseconds, one decimal.
    Micros,
}

impl Unit {
    /// `d` in this unit.
    pub fn of(self, d: Duration) -> f64 {
        match self {
            Unit::Millis => d.as_secs_f64() * 1e3,
            Unit::Micros => d.as_secs_f64() * 1e6,
        }
    }

    /// The unit's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Millis => "ms",
            Unit::Micros => "us",
        }
    }

    fn format(self, d: Duration) -> String {
        match self {
            Unit::Millis => format!("{:.3}", self.of(d)),
            Unit::Micros => format!("{:.1}", self.of(d)),
        }
    }
}

/// A table of summaries, one row per measured thing, in a fixed-width layout that is also
/// valid Markdown.
pub fn table(unit: Unit, rows: &[(&str, Option<Summary>)]) -> String {
    let width = rows
        .iter()
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let u = unit.symbol();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:<width$} | {:>6} | {:>11} | {:>11} | {:>11} | {:>11} |",
        "what",
        "n",
        format!("median {u}"),
        format!("p99 {u}"),
        format!("min {u}"),
        format!("max {u}"),
    );
    let _ = writeln!(
        out,
        "|{:-<w1$}|{:->8}|{:->13}|{:->13}|{:->13}|{:->13}|",
        "",
        ":",
        ":",
        ":",
        ":",
        ":",
        w1 = width + 2
    );
    for (name, summary) in rows {
        match summary {
            Some(s) => {
                let _ = writeln!(
                    out,
                    "| {:<width$} | {:>6} | {:>11} | {:>11} | {:>11} | {:>11} |",
                    name,
                    s.count,
                    unit.format(s.median),
                    unit.format(s.p99),
                    unit.format(s.min),
                    unit.format(s.max),
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| {:<width$} | {:>6} | {:>11} | {:>11} | {:>11} | {:>11} |",
                    name, 0, "-", "-", "-", "-"
                );
            }
        }
    }
    out
}

/// How a ratio compares with its goal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// The ratio should be at most this.
    AtMost(f64),
    /// The ratio should be at least this.
    AtLeast(f64),
    /// Informative only.
    None,
}

impl Goal {
    fn verdict(self, value: f64) -> String {
        match self {
            Goal::AtMost(goal) if value <= goal => format!("goal <= {goal}: met"),
            Goal::AtMost(goal) => format!("goal <= {goal}: NOT met"),
            Goal::AtLeast(goal) if value >= goal => format!("goal >= {goal}: met"),
            Goal::AtLeast(goal) => format!("goal >= {goal}: NOT met"),
            Goal::None => String::new(),
        }
    }
}

/// One ratio line: `name  median x.xx  p99 y.yy  (goal ...)`, judged on the median.
pub fn ratio_line(name: &str, numerator: &Summary, denominator: &Summary, goal: Goal) -> String {
    let median = numerator.median.as_secs_f64() / denominator.median.as_secs_f64();
    let p99 = numerator.p99.as_secs_f64() / denominator.p99.as_secs_f64();
    format!(
        "  {name:<32} median {median:>7.2}x   p99 {p99:>7.2}x   {}",
        goal.verdict(median)
    )
}

/// One figure against its goal: `name  value unit  (goal ...)`.
pub fn goal_line(name: &str, value: f64, unit: &str, goal: Goal) -> String {
    format!(
        "  {name:<40} {value:>10.1} {unit:<6} {}",
        goal.verdict(value)
    )
}

/// Runs `styles` measurements interleaved: `warmup` untimed calls in turn, then
/// `requests` rounds, each calling every style once in a fresh random order. With a fixed
/// rotation each style would mostly follow the same other one, and what ran just before
/// (a thread wake-up or a CPU-only call) shifts a wake-up's latency by microseconds.
pub fn interleaved(
    styles: usize,
    warmup: usize,
    requests: usize,
    mut measure_one: impl FnMut(usize) -> crate::Result<Duration>,
) -> crate::Result<Vec<Samples>> {
    for i in 0..warmup {
        measure_one(i % styles)?;
    }
    let mut samples: Vec<Samples> = (0..styles)
        .map(|_| Samples::with_capacity(requests))
        .collect();
    let mut order: Vec<usize> = (0..styles).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for _ in 0..requests {
        shuffle(&mut order, &mut seed);
        for &style in &order {
            samples[style].push(measure_one(style)?);
        }
    }
    Ok(samples)
}

/// Fisher–Yates with xorshift64: a cheap, reproducible shuffle.
fn shuffle(order: &mut [usize], seed: &mut u64) {
    for i in (1..order.len()).rev() {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        order.swap(i, (*seed % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn median_and_nearest_rank_p99() {
        let mut s = Samples::default();
        for v in 1..=100 {
            s.push(ms(v));
        }
        let summary = s.summary().unwrap();
        assert_eq!(summary.median, Duration::from_micros(50_500));
        assert_eq!(summary.p99, ms(99));
        assert_eq!(summary.min, ms(1));
        assert_eq!(summary.max, ms(100));

        let mut odd = Samples::default();
        for v in [5, 1, 3] {
            odd.push(ms(v));
        }
        let summary = odd.summary().unwrap();
        assert_eq!(summary.median, ms(3));
        assert_eq!(summary.p99, ms(5));
        assert!(Samples::default().summary().is_none());
    }

    #[test]
    fn goals_are_judged() {
        assert!(Goal::AtMost(1.5).verdict(1.2).ends_with("met"));
        assert!(Goal::AtMost(1.5).verdict(1.6).ends_with("NOT met"));
        assert!(Goal::AtLeast(20.0).verdict(25.0).ends_with(": met"));
        assert!(Goal::None.verdict(1.0).is_empty());
    }
}
