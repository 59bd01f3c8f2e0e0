// Compiles every tasks/*.toml into the binary, so `bftkit` knows its benchmark tasks wherever it
// runs; `--tasks DIR` still reads task files from disk.
use std::fmt::Write;

fn main() {
    println!("cargo:rerun-if-changed=tasks");
    let mut entries: Vec<_> = std::fs::read_dir("tasks")
        .expect("tasks/ folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    let mut code =
        String::from("/// (file name, contents) of every task file shipped in `tasks/`.\n");
    code.push_str("pub static EMBEDDED_TASKS: &[(&str, &str)] = &[\n");
    for p in entries {
        let abs = std::fs::canonicalize(&p).expect("task path");
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    code.push_str("];\n");
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_tasks.rs");
    std::fs::write(out, code).unwrap();
}
