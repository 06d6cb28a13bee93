//! `cargo bench -p hcs-bench [-- PART... OPTIONS]`: the same code as the `hcs-bench`
//! binary, without libtest's harness (`--bench`, which cargo passes, is ignored).

fn main() {
    std::process::exit(hcs_bench::run(std::env::args().skip(1)));
}
