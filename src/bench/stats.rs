//! The arithmetic behind the benchmark report (chapter 9, "Measuring locks and counters"): Jain's
//! fairness index and rates from counter ticks. Portable, so host unit tests check it.

/// Jain's fairness index over per-CPU shares: `(sum x)^2 / (n * sum x^2)`.
///
/// 1.0 when every CPU got the same share, `1/n` when one CPU got everything. CPUs that got
/// nothing count: they are the starved ones the index is meant to expose. An empty or all-zero
/// set has no unfairness to report, so it is 1.0.
pub fn jain_index(shares: &[f64]) -> f64 {
    let n = shares.len() as f64;
    let sum: f64 = shares.iter().sum();
    let sum_of_squares: f64 = shares.iter().map(|x| x * x).sum();
    if sum_of_squares == 0.0 {
        return 1.0;
    }
    sum * sum / (n * sum_of_squares)
}

/// Operations per second, from a count and an interval in counter ticks at `frequency` Hz.
pub fn per_second(ops: u64, ticks: u64, frequency: u64) -> f64 {
    if ticks == 0 {
        return 0.0;
    }
    ops as f64 * frequency as f64 / ticks as f64
}

/// Nanoseconds per operation, from the same inputs.
pub fn nanoseconds_per_op(ops: u64, ticks: u64, frequency: u64) -> f64 {
    if ops == 0 || frequency == 0 {
        return 0.0;
    }
    ticks as f64 * 1e9 / frequency as f64 / ops as f64
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn equal_shares_are_perfectly_fair() {
        assert!((jain_index(&[250.0, 250.0, 250.0, 250.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn one_cpu_taking_everything_scores_one_over_n() {
        assert!((jain_index(&[1000.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
        assert!((jain_index(&[0.0, 7.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_skewed_split_lands_in_between() {
        // (4834 + 166)^2 / (2 * (4834^2 + 166^2)), the TAS split seen at two CPUs.
        let j = jain_index(&[4834.0, 166.0]);
        assert!((j - 0.534_30).abs() < 1e-4, "{j}");
    }

    #[test]
    fn nothing_measured_is_not_unfair() {
        assert_eq!(jain_index(&[]), 1.0);
        assert_eq!(jain_index(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn rates_follow_the_counter_frequency() {
        // 62.5 MHz is QEMU virt's counter: 62_500 ticks are one millisecond.
        assert_eq!(per_second(1000, 62_500, 62_500_000), 1_000_000.0);
        assert_eq!(nanoseconds_per_op(1000, 62_500, 62_500_000), 1000.0);
        assert_eq!(per_second(5, 0, 62_500_000), 0.0);
    }
}
