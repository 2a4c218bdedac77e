//! `ado._core`: the PyO3 bindings of `ado-core`. Glue only; the algorithms live in `ado-core`.

mod data;
mod errors;
mod fit;

use pyo3::prelude::*;

#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use crate::data::{
        check_tiling, decode_index, file_hash, gc_phase, index_file, index_shard, shard_members,
        wait_for_reapers, PyMixtureLoaderCore,
    };
    #[pymodule_export]
    use crate::fit::{
        default_configs, fit_lr_laws, fit_power_laws, lr_areas, objective, predict_lr_laws,
        PyFitSpec, PyLrFitSpec, PyPowerLawEstimator,
    };

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        // A loader freed by the garbage collector must not wait for its threads there (see
        // `PyMixtureLoaderCore`'s Drop): the core is told when a collection runs.
        let phase = m.getattr("gc_phase")?;
        m.py()
            .import("gc")?
            .getattr("callbacks")?
            .call_method1("append", (phase,))?;
        Ok(())
    }
}
