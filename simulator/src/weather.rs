//! The named weather scenarios (a day's outdoor temperature) and the disturbances a run can
//! lay over them. Used by [`crate::scenario`], which says what each disturbance does to the
//! stations.

use std::f64::consts::PI;

use serde::Serialize;

/// The named weather scenarios. Each runs from midnight; the daily profile is coldest at 03:00
/// and warmest at 15:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// A normal winter day around −5 °C (± 4 K).
    WinterDay,
    /// The winter day, then a cold front: down to −20 °C between 06:00 and 12:00, held until
    /// 18:00, back to the day's profile by midnight.
    ColdSnap,
    /// A mild spell around +5 °C (± 4 K).
    Mild,
    /// Two weeks of changing weather around the daily profile: a few ordinary days, a
    /// cold spell down to −16 °C, a thaw to a mild spell around +7 °C, and back to frost
    /// ([`FORTNIGHT_MEANS_C`]). For runs that span days (diagnosis, predictive control).
    Fortnight,
    /// The fortnight's temperatures with the sun: overcast (60 W/m² at noon) but for a clear,
    /// mild spell on days 8–11 (350 W/m² at noon, a January sky at 45° N), daylight
    /// 08:00–16:00 ([`Scenario::solar_w_m2`]). For predictive control, which can plan on the
    /// forecast sun that a curve never sees.
    FortnightSun,
}

/// The daily mean of [`Scenario::Fortnight`] at each midnight from day 0 to day 14, °C
/// (linear between them, held beyond the ends).
pub const FORTNIGHT_MEANS_C: [f64; 15] = [
    -3.0, -4.0, -8.0, -14.0, -16.0, -12.0, -6.0, -4.0, 0.0, 5.0, 7.0, 6.0, 1.0, -2.0, -3.0,
];

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::WinterDay,
        Scenario::ColdSnap,
        Scenario::Mild,
        Scenario::Fortnight,
        Scenario::FortnightSun,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::WinterDay => "winter-day",
            Scenario::ColdSnap => "cold-snap",
            Scenario::Mild => "mild",
            Scenario::Fortnight => "fortnight",
            Scenario::FortnightSun => "fortnight-sun",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Outdoor temperature `t_s` seconds after midnight (negative: the warm-up before it).
    pub fn outdoor_c(self, t_s: f64) -> f64 {
        let hour = t_s / 3600.0;
        let day = |mean: f64| mean + 4.0 * (2.0 * PI * (hour - 15.0) / 24.0).cos();
        match self {
            Scenario::WinterDay => day(-5.0),
            Scenario::Mild => day(5.0),
            Scenario::Fortnight | Scenario::FortnightSun => {
                let d = (hour / 24.0).clamp(0.0, 14.0);
                let k = (d.floor() as usize).min(13);
                let (a, b) = (FORTNIGHT_MEANS_C[k], FORTNIGHT_MEANS_C[k + 1]);
                day(a + (b - a) * (d - k as f64))
            }
            Scenario::ColdSnap => {
                let w = match hour {
                    h if h < 6.0 => 0.0,
                    h if h < 12.0 => (h - 6.0) / 6.0,
                    h if h < 18.0 => 1.0,
                    h if h < 24.0 => (24.0 - h) / 6.0,
                    _ => 0.0,
                };
                (1.0 - w) * day(-5.0) + w * -20.0
            }
        }
    }
}

impl Scenario {
    /// Global horizontal irradiance `t_s` seconds after midnight, W/m² (0 but in
    /// [`Scenario::FortnightSun`]).
    pub fn solar_w_m2(self, t_s: f64) -> f64 {
        if self != Scenario::FortnightSun {
            return 0.0;
        }
        let hour = (t_s / 3600.0).rem_euclid(24.0);
        let day = (t_s / 86_400.0).floor();
        let peak = if (8.0..12.0).contains(&day) {
            350.0
        } else {
            60.0
        };
        if (8.0..16.0).contains(&hour) {
            peak * (PI * (hour - 8.0) / 8.0).sin()
        } else {
            0.0
        }
    }
}

/// A fault laid over a scenario, hitting the first tenth of the fleet (at least one station).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disturbance {
    #[default]
    None,
    /// 08:00–14:00 the link is down: no telemetry reaches the controller, no command reaches
    /// the station (which falls back to its own curve when the last command expires).
    CommsLoss,
    /// From 06:00 the supply sensor drifts up by 0.5 K per hour (at most 5 K): the station
    /// reads too warm and is driven too cold.
    SensorDrift,
    /// At 12:00 new buildings are connected: heated area, building loss and radiators all
    /// grow by 30 % on the same station equipment, and the telemetry reports the new area.
    AreaChange,
    /// The heat exchanger has half the design UA (fouled or undersized) all along.
    UndersizedHx,
    /// Free heat: 3 W/m² from people and appliances all day, and sun up to 12 W/m² between
    /// 08:00 and 16:00 (peak at noon) — heat the buildings get without the network.
    Gains,
}

impl Disturbance {
    pub const ALL: [Disturbance; 6] = [
        Disturbance::None,
        Disturbance::CommsLoss,
        Disturbance::SensorDrift,
        Disturbance::AreaChange,
        Disturbance::UndersizedHx,
        Disturbance::Gains,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Disturbance::None => "none",
            Disturbance::CommsLoss => "comms-loss",
            Disturbance::SensorDrift => "sensor-drift",
            Disturbance::AreaChange => "area-change",
            Disturbance::UndersizedHx => "undersized-hx",
            Disturbance::Gains => "gains",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// How many of `n` stations it hits (the first ones).
    pub fn affected(self, n: usize) -> usize {
        match self {
            Disturbance::None => 0,
            _ => (n / 10).max(1),
        }
    }
}
