//! One pipe run of the primary network: water carried along it with its transport delay, heat
//! lost through the insulation to the ground, and the pipe wall's heat capacity, which slows and
//! smooths a temperature front.
//!
//! Where it sits: the network ([`super`]) owns one [`Pipe`] per run of its supply and return
//! lines and steps each with the flow the hydraulics give it and the temperature arriving at its
//! inlet. The method is the finite-volume form of plug flow: the pipe is cut into cells of
//! water and wall, each in thermal contact (a front therefore travels at the water's speed ×
//! water capacity / (water + wall capacity), as the ULg test bench measures), each losing
//! `(T − T_ground) / R` per metre. Each step is solved implicitly, cell after cell from the
//! inlet (upwind), so any time step is stable and a step costs one pass over the cells.

/// The water's properties.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fluid {
    /// Specific heat, J/(kg·K).
    pub cp: f64,
    /// Density, kg/m³.
    pub density: f64,
}

impl Default for Fluid {
    fn default() -> Self {
        Self {
            cp: 4184.0,
            density: 995.6,
        }
    }
}

/// A pipe's physical description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipeSpec {
    pub length_m: f64,
    pub inner_diameter_m: f64,
    /// Thermal resistance from the water to the ground (or the air around it), per metre of
    /// pipe, m·K/W.
    pub resistance_mk_per_w: f64,
    /// Heat capacity of the pipe wall (and of whatever else follows the water's temperature),
    /// per metre, J/(m·K).
    pub wall_capacity_j_per_mk: f64,
}

impl PipeSpec {
    /// The water in one metre of pipe, m³.
    pub fn area_m2(&self) -> f64 {
        std::f64::consts::PI * self.inner_diameter_m * self.inner_diameter_m / 4.0
    }

    /// How long water at `mass_flow` (kg/s) takes to pass the pipe, s (infinite at no flow).
    pub fn transit_s(&self, fluid: Fluid, mass_flow: f64) -> f64 {
        fluid.density * self.area_m2() * self.length_m / mass_flow.max(0.0)
    }
}

/// A pipe in motion: its cells' temperatures.
#[derive(Debug, Clone)]
pub struct Pipe {
    pub spec: PipeSpec,
    fluid: Fluid,
    /// Cell temperatures, °C, from the inlet.
    cells: Vec<f64>,
    /// Heat capacity of one cell (water and wall), J/K.
    cell_capacity: f64,
    /// Conductance of one cell to the ground, W/K.
    cell_conductance: f64,
}

impl Pipe {
    /// A pipe cut into cells of at most `cell_m` metres (at least two), every cell at
    /// `initial_c`.
    pub fn new(spec: PipeSpec, fluid: Fluid, cell_m: f64, initial_c: f64) -> Self {
        let n = (spec.length_m / cell_m.max(1e-3)).ceil().max(2.0) as usize;
        let dx = spec.length_m / n as f64;
        let water = fluid.density * spec.area_m2() * fluid.cp;
        Self {
            spec,
            fluid,
            cells: vec![initial_c; n],
            cell_capacity: (water + spec.wall_capacity_j_per_mk) * dx,
            cell_conductance: dx / spec.resistance_mk_per_w.max(1e-9),
        }
    }

    /// Sets every cell's temperature linearly from `inlet_c` to `outlet_c`.
    pub fn fill(&mut self, inlet_c: f64, outlet_c: f64) {
        let n = self.cells.len();
        for (k, c) in self.cells.iter_mut().enumerate() {
            let x = (k as f64 + 0.5) / n as f64;
            *c = inlet_c + (outlet_c - inlet_c) * x;
        }
    }

    /// Advances the pipe by `dt` seconds with `mass_flow` (kg/s, from inlet to outlet; none if
    /// not positive) entering at `inlet_c`, the surroundings at `ground_c`. Returns the
    /// temperature leaving the outlet.
    pub fn step(&mut self, inlet_c: f64, mass_flow: f64, ground_c: f64, dt: f64) -> f64 {
        let flow = mass_flow.max(0.0) * self.fluid.cp; // W/K carried from cell to cell
        let store = self.cell_capacity / dt.max(1e-9);
        let g = self.cell_conductance;
        let mut upstream = inlet_c;
        for c in &mut self.cells {
            // store·(T' − T) = flow·(T_up' − T') − g·(T' − T_ground), solved for T'.
            *c = (store * *c + flow * upstream + g * ground_c) / (store + flow + g);
            upstream = *c;
        }
        upstream
    }

    /// The temperature at the outlet now, °C.
    pub fn outlet_c(&self) -> f64 {
        self.cells.last().copied().unwrap_or(f64::NAN)
    }

    /// The heat flowing through the pipe's wall to the surroundings now, W.
    pub fn loss_w(&self, ground_c: f64) -> f64 {
        self.cells
            .iter()
            .map(|t| (t - ground_c) * self.cell_conductance)
            .sum()
    }

    /// The heat the pipe's water and wall hold above `reference_c`, J.
    pub fn stored_j(&self, reference_c: f64) -> f64 {
        self.cells
            .iter()
            .map(|t| (t - reference_c) * self.cell_capacity)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(wall: f64, resistance: f64) -> PipeSpec {
        PipeSpec {
            length_m: 100.0,
            inner_diameter_m: 0.05,
            resistance_mk_per_w: resistance,
            wall_capacity_j_per_mk: wall,
        }
    }

    /// When the outlet first crosses half-way from `from` to `to`, s.
    fn front(pipe: &mut Pipe, from: f64, to: f64, flow: f64, dt: f64) -> f64 {
        let mut t = 0.0;
        while t < 10_000.0 {
            t += dt;
            if pipe.step(to, flow, 10.0, dt) >= (from + to) / 2.0 {
                return t;
            }
        }
        f64::INFINITY
    }

    #[test]
    fn a_front_arrives_after_the_transit_time_slowed_by_the_wall() {
        let fluid = Fluid::default();
        let flow = 1.0;
        let bare = spec(0.0, 1e9);
        let transit = bare.transit_s(fluid, flow);
        let mut p = Pipe::new(bare, fluid, 0.25, 20.0);
        let t = front(&mut p, 20.0, 60.0, flow, 0.5);
        assert!(
            (t - transit).abs() < 0.05 * transit,
            "{t} s against {transit} s"
        );
        // A wall holding 30 % of the water's capacity: 30 % later.
        let water = fluid.density * bare.area_m2() * fluid.cp;
        let mut p = Pipe::new(spec(0.3 * water, 1e9), fluid, 0.25, 20.0);
        let t = front(&mut p, 20.0, 60.0, flow, 0.5);
        assert!((t - 1.3 * transit).abs() < 0.05 * transit, "{t} s");
    }

    #[test]
    fn steady_losses_follow_the_exponential_decay_and_balance_the_heat() {
        let fluid = Fluid::default();
        let s = spec(500.0, 5.0);
        let mut p = Pipe::new(s, fluid, 1.0, 10.0);
        let (inlet, ground, flow) = (70.0, 10.0, 0.2);
        for _ in 0..20_000 {
            p.step(inlet, flow, ground, 10.0);
        }
        let out = p.outlet_c();
        let exact = ground
            + (inlet - ground) * (-s.length_m / (s.resistance_mk_per_w * flow * fluid.cp)).exp();
        assert!((out - exact).abs() < 0.01, "{out} against {exact}");
        // What the water lost is what went through the wall.
        let carried = flow * fluid.cp * (inlet - out);
        assert!((carried - p.loss_w(ground)).abs() < 1e-6 * carried.max(1.0));
    }

    #[test]
    fn without_flow_the_water_cools_towards_the_ground_and_stays_put() {
        let fluid = Fluid::default();
        let s = spec(1000.0, 4.0);
        let mut p = Pipe::new(s, fluid, 5.0, 60.0);
        let before = p.stored_j(10.0);
        let mut lost = 0.0;
        for _ in 0..3600 {
            lost += p.loss_w(10.0); // explicit estimate, 1 s steps
            p.step(90.0, 0.0, 10.0, 1.0);
        }
        let after = p.stored_j(10.0);
        assert!(
            p.outlet_c() < 60.0 && p.outlet_c() > 10.0,
            "{}",
            p.outlet_c()
        );
        assert!(
            (before - after - lost).abs() < 0.01 * lost,
            "{before} {after} {lost}"
        );
    }
}
