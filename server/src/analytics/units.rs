//! The one rule for amounts of energy shown to people, everywhere (pages, statements, webhooks):
//! under 1 kWh in Wh with one decimal, under 100 kWh with two decimals, from 100 kWh in whole kWh.

/// Energy in kWh, as people read it: `27.5 Wh`, `4.00 kWh`, `1234 kWh`.
pub fn energy(kwh: f64) -> String {
    let a = kwh.abs();
    if a < 1.0 {
        format!("{:.1} Wh", kwh * 1000.0)
    } else if a < 100.0 {
        format!("{kwh:.2} kWh")
    } else {
        format!("{kwh:.0} kWh")
    }
}

#[cfg(test)]
mod tests {
    use super::energy;

    #[test]
    fn one_rule_for_energy() {
        assert_eq!(energy(0.0275), "27.5 Wh");
        assert_eq!(energy(0.0), "0.0 Wh");
        assert_eq!(energy(4.0), "4.00 kWh");
        assert_eq!(energy(99.994), "99.99 kWh");
        assert_eq!(energy(1234.4), "1234 kWh");
        assert_eq!(energy(-0.2), "-200.0 Wh");
    }
}
