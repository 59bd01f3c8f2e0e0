//! Where a model runs and in which precision, as typed values: [`DeviceSpec`] (`cpu`, `cuda`,
//! `cuda:N`) and [`Precision`] (`f32`, `bf16`), parsed once (by the command line or a config file)
//! and turned into candle's `Device` and `DType` when a model is loaded.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// A compute device: the CPU, or CUDA device N (CUDA needs a build with `--features cuda`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            s => match s.strip_prefix("cuda:") {
                Some(n) => {
                    Ok(Self::Cuda(n.parse().with_context(|| {
                        format!("device '{s}': expected cuda:N")
                    })?))
                }
                None => bail!("unknown device '{s}' (cpu, cuda, cuda:N)"),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = anyhow::Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; CUDA in a build without it is an error that says how to rebuild.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(i) if cfg!(feature = "cuda") => {
                Device::new_cuda(i).with_context(|| format!("device '{self}' is not available"))
            }
            Self::Cuda(_) => bail!(
                "device '{self}': this bftkit was built without CUDA; rebuild with \
                 `cargo build --release --features cuda`"
            ),
        }
    }
}

/// The dtype of base weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    Bf16,
}

impl Precision {
    /// The dtype for `device`: the chosen one, or the device's default (f32 on CPU, bf16 on
    /// CUDA).
    pub fn resolve(choice: Option<Self>, device: &Device) -> DType {
        match choice {
            Some(Self::F32) => DType::F32,
            Some(Self::Bf16) => DType::BF16,
            None if device.is_cuda() => DType::BF16,
            None => DType::F32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print_back() {
        for (text, want) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap(), want);
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
        for bad in ["gpu", "cuda:x", "cuda:-1", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
        assert_eq!(Precision::resolve(None, &Device::Cpu), DType::F32);
        assert_eq!(
            Precision::resolve(Some(Precision::Bf16), &Device::Cpu),
            DType::BF16
        );
        if !cfg!(feature = "cuda") {
            let e = DeviceSpec::Cuda(0).open().unwrap_err().to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
