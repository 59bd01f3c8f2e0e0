//! AdamW (decoupled weight decay, PyTorch's update rule) with its state exposed, so training can
//! be checkpointed and resumed exactly — candle-nn's AdamW keeps its moments private.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var};

pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken.
    pub t: usize,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, weight_decay: f64) -> Result<Self> {
        let zeros = |p: &Var| p.as_tensor().zeros_like();
        let m = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<candle_core::Result<_>>()?;
        let v = params
            .iter()
            .map(|(_, p)| zeros(p))
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            params,
            m,
            v,
            t: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
        })
    }

    /// One update with learning rate `lr` from the gradients of the parameters in their order;
    /// parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        if grads.len() != self.params.len() {
            bail!(
                "{} gradients for {} parameters",
                grads.len(),
                self.params.len()
            );
        }
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = &grads[i] else {
                continue;
            };
            let m = ((&self.m[i] * b1)? + (g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let decayed = (p.as_tensor() * (1.0 - lr * self.weight_decay))?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.eps)?)?;
            p.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Writes the moments (`m.NAME`, `v.NAME`) and the step count to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        map.insert(
            "t".into(),
            Tensor::new(&[self.t as u32], self.m[0].device())?,
        );
        candle_core::safetensors::save(&map, path)
            .with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Restores what [`AdamW::save`] wrote, for the same parameter names.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let device = self
            .m
            .first()
            .map(|t| t.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        let map = candle_core::safetensors::load(path, &device)
            .with_context(|| format!("{}: cannot read optimizer state", path.display()))?;
        for (i, (name, _)) in self.params.iter().enumerate() {
            match (map.get(&format!("m.{name}")), map.get(&format!("v.{name}"))) {
                (Some(m), Some(v)) => {
                    self.m[i] = m.clone();
                    self.v[i] = v.clone();
                }
                _ => bail!("{}: no optimizer state for '{name}'", path.display()),
            }
        }
        let Some(t) = map.get("t") else {
            bail!("{}: no step count", path.display());
        };
        self.t = t.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Optimizer;

    #[test]
    fn matches_candle_adamw_and_round_trips_its_state() {
        let init = Tensor::new(&[0.5f32, -1.0, 2.0], &Device::Cpu).unwrap();
        let (ours, theirs) = (
            Var::from_tensor(&init).unwrap(),
            Var::from_tensor(&init).unwrap(),
        );
        let mut a = AdamW::new(vec![("w".into(), ours.clone())], 0.01).unwrap();
        let mut b = candle_nn::AdamW::new(
            vec![theirs.clone()],
            candle_nn::ParamsAdamW {
                lr: 0.1,
                weight_decay: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        // loss = Σ w³, a non-constant gradient.
        let grads = |w: &Var| {
            w.as_tensor()
                .powf(3.0)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        for _ in 0..3 {
            let g = grads(&ours).get(ours.as_tensor()).cloned();
            a.step(&[g], 0.1).unwrap();
            b.step(&grads(&theirs)).unwrap();
        }
        let diff = crate::model::max_abs_diff(ours.as_tensor(), theirs.as_tensor()).unwrap();
        assert!(diff < 1e-6, "{diff}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        a.save(&path).unwrap();
        let mut c = AdamW::new(vec![("w".into(), ours.clone())], 0.01).unwrap();
        c.load(&path).unwrap();
        assert_eq!(c.t, 3);
        assert_eq!(
            c.m[0].to_vec1::<f32>().unwrap(),
            a.m[0].to_vec1::<f32>().unwrap()
        );
        let mut wrong = AdamW::new(vec![("other".into(), ours)], 0.01).unwrap();
        assert!(wrong
            .load(&path)
            .unwrap_err()
            .to_string()
            .contains("no optimizer state for 'other'"));
    }
}
