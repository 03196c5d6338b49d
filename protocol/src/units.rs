//! The one rule for amounts of energy shown to people, everywhere (pages, statements, webhooks, the
//! collector's `job show`):
//! under 1 kWh in Wh with one decimal, under 100 kWh with two decimals, from 100 kWh in whole kWh;
//! and the one for CO2e (figures and tables; the statement's paragraph rounds to one decimal).

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

/// CO2e in kg, as people read it: `5.0 g` under a kg, `2.00 kg` from a kg.
pub fn co2e(kg: f64) -> String {
    if kg >= 1.0 {
        format!("{kg:.2} kg")
    } else {
        format!("{:.1} g", kg * 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{co2e, energy};

    #[test]
    fn one_rule_for_co2e() {
        assert_eq!(co2e(0.0238), "23.8 g");
        assert_eq!(co2e(1.0), "1.00 kg");
        assert_eq!(co2e(12.345), "12.35 kg");
    }

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
