//! Square-root weighting in exact integer units.
//!
//! A netgroup of n counted nodes weighs sqrt(n), each node 1/sqrt(n). Weights are kept as
//! integers ([`WEIGHT_SCALE`] units per node-weight) and every sum is a sum of integers, so
//! the order in which messages arrive cannot change a single bit of a tally. The one float
//! operation per netgroup (a correctly rounded IEEE 754 square root and division) gives the
//! same result on every platform.

/// Units per weight of one: a lone node in its netgroup weighs this many units.
pub const WEIGHT_SCALE: u64 = 1_000_000_000;

/// The units that `k` of the `n` counted nodes of one netgroup contribute:
/// `round(k * WEIGHT_SCALE / sqrt(n))` with square-root weighting, `k * WEIGHT_SCALE`
/// without. Zero when `k` or `n` is zero.
pub fn netgroup_units(k: u64, n: u64, sqrt_weighting: bool) -> u64 {
    if k == 0 || n == 0 {
        return 0;
    }
    if sqrt_weighting {
        ((k as f64) * WEIGHT_SCALE as f64 / (n as f64).sqrt()).round() as u64
    } else {
        k.saturating_mul(WEIGHT_SCALE)
    }
}

/// Units as a weight in node-weights (`units / WEIGHT_SCALE`).
pub fn units_to_weight(units: u64) -> f64 {
    units as f64 / WEIGHT_SCALE as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_netgroup_weighs_its_square_root() {
        assert_eq!(netgroup_units(1, 1, true), WEIGHT_SCALE);
        assert_eq!(netgroup_units(4, 4, true), 2 * WEIGHT_SCALE);
        assert_eq!(netgroup_units(1, 4, true), WEIGHT_SCALE / 2);
        assert_eq!(netgroup_units(2, 2, true), 1_414_213_562);
        assert_eq!(netgroup_units(1, 2, true), 707_106_781);
        assert_eq!(netgroup_units(9, 9, false), 9 * WEIGHT_SCALE);
        assert_eq!(netgroup_units(0, 9, true), 0);
        assert_eq!(netgroup_units(3, 0, true), 0);
        for n in 1..2000u64 {
            let exact = (n as f64).sqrt() * WEIGHT_SCALE as f64;
            assert!(
                (netgroup_units(n, n, true) as f64 - exact).abs() <= 1.0,
                "n = {n}"
            );
        }
        assert_eq!(units_to_weight(1_500_000_000), 1.5);
    }
}
