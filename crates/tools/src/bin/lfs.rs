//! `lfs`: Lustre's user command for Sheen. All logic lives in [`sheen_tools::lfs`].

fn main() {
    std::process::exit(sheen_tools::run_on_host(sheen_tools::lfs::run));
}
