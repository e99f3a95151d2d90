//! The Dutch statutory scale of extrajudicial collection costs (*Besluit vergoeding voor
//! buitengerechtelijke incassokosten*), which the final notice to a consumer must state:
//! what the customer owes on top of the principal if they do not pay within the term.
//!
//! Over the principal: 15 % of the first € 2,500 (at least € 40), 10 % of the next
//! € 2,500, 5 % of the next € 5,000, 1 % of the next € 190,000 and 0.5 % of the rest,
//! at most € 6,775 in all. Computed in exact integer arithmetic (half-cents of cents are
//! carried, never a float), rounded half up to the cent once, at the end.

/// The statutory collection costs for a principal of `principal_cents` euro cents, in
/// euro cents. A principal of zero or less owes none.
pub fn statutory_collection_costs(principal_cents: i64) -> i64 {
    if principal_cents <= 0 {
        return 0;
    }
    /// Band widths in cents and their rate in half-per-mille units: 15 % = 300 / 2000.
    const BANDS: [(i64, i64); 5] = [
        (250_000, 300),
        (250_000, 200),
        (500_000, 100),
        (19_000_000, 20),
        (i64::MAX, 10),
    ];
    const MINIMUM: i64 = 4_000;
    const MAXIMUM: i64 = 677_500;
    let mut rest = principal_cents;
    // In units of 1/2000 cent: every rate above is a whole number of them.
    let mut units: i128 = 0;
    for (width, rate) in BANDS {
        let part = rest.min(width);
        units += i128::from(part) * i128::from(rate);
        rest -= part;
        if rest == 0 {
            break;
        }
    }
    let cents = ((units + 1000) / 2000) as i64;
    cents.clamp(MINIMUM, MAXIMUM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_at_its_edges() {
        // 15 % of € 266.66 is € 40.00 (39.999 rounded): the minimum and the scale meet.
        assert_eq!(statutory_collection_costs(26_666), 4_000);
        assert_eq!(statutory_collection_costs(26_667), 4_000);
        assert_eq!(statutory_collection_costs(26_700), 4_005);
        // Small claims owe the minimum.
        assert_eq!(statutory_collection_costs(1), 4_000);
        assert_eq!(statutory_collection_costs(10_000), 4_000);
        // € 2,500: 15 % = € 375.
        assert_eq!(statutory_collection_costs(250_000), 37_500);
        assert_eq!(statutory_collection_costs(250_001), 37_500);
        // € 5,000: 375 + 250.
        assert_eq!(statutory_collection_costs(500_000), 62_500);
        // € 10,000: 625 + 250.
        assert_eq!(statutory_collection_costs(1_000_000), 87_500);
        // € 200,000: 875 + 1,900.
        assert_eq!(statutory_collection_costs(20_000_000), 277_500);
        // The cap: 2,775 + 0.5 % of € 800,000 = € 6,775 at € 1,000,000, and never more.
        assert_eq!(statutory_collection_costs(100_000_000), 677_500);
        assert_eq!(statutory_collection_costs(99_999_800), 677_499);
        assert_eq!(statutory_collection_costs(500_000_000), 677_500);
        assert_eq!(statutory_collection_costs(i64::MAX), 677_500);
    }

    #[test]
    fn nothing_owed_owes_nothing() {
        assert_eq!(statutory_collection_costs(0), 0);
        assert_eq!(statutory_collection_costs(-5_000), 0);
    }

    #[test]
    fn half_cents_round_up_once_at_the_end() {
        // € 2,500.05: 375 + 10 % of 5 cents = 375.005 → 375.01.
        assert_eq!(statutory_collection_costs(250_005), 37_501);
        // € 2,500.04: 375.004 → 375.00.
        assert_eq!(statutory_collection_costs(250_004), 37_500);
    }
}
