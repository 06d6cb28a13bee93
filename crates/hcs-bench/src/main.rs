//! The `hcs-bench` binary: runs the benchmark parts named on the command line (all by
//! default) and prints their tables, ratios and reproduce commands. See the crate docs.

fn main() {
    std::process::exit(hcs_bench::run(std::env::args().skip(1)));
}
