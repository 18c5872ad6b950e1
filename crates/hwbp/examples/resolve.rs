//! Resolves watch expressions in an ELF file offline (bias 0): `resolve FILE SPEC...`.
use std::path::Path;

use hwbp::symbols::maps::AddressSpace;
use hwbp::symbols::resolve::Resolver;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((file, specs)) = args.split_first() else {
        eprintln!("usage: resolve FILE SPEC...");
        std::process::exit(2);
    };
    let mut r = Resolver::new(AddressSpace::single_file(Path::new(file)));
    for spec in specs {
        let t = std::time::Instant::now();
        match r.resolve_text(spec) {
            Ok(res) => println!(
                "{spec}: {} type={:?} value={:?} ({:?})",
                res.spec,
                res.type_name,
                res.value_type,
                t.elapsed()
            ),
            Err(e) => println!("{spec}: error: {e} ({:?})", t.elapsed()),
        }
    }
}
