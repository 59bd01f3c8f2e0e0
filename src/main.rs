//! The `bftkit` binary: parses the command line and hands off to the library.
//! All work lives in `bftkit::cli` and the domain modules; this file only reports errors.

fn main() {
    bftkit::tune_allocator();
    if let Err(err) = bftkit::cli::main() {
        eprintln!("error: {}", bftkit::cli::error_message(&err));
        std::process::exit(1);
    }
}
