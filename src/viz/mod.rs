//! What users look at: UMAP layouts (`umap`), PNG figures (`plot`) and the self-contained HTML
//! report (`report`) that compares embedding sets side by side.

pub(crate) mod plot;
pub mod report;
pub mod umap;
