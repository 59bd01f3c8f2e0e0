//! What users look at: UMAP layouts (`umap`), PNG figures (`plot`) and the self-contained HTML
//! report (`report`) that compares embedding sets side by side, with its model-arms section
//! (`experiment`: training curves, profile fidelity, examples, stages) and shared HTML helpers
//! (`html`).

mod experiment;
mod html;
pub(crate) mod plot;
pub mod report;
pub mod umap;
