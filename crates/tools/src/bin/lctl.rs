//! `lctl`: Lustre's control command for Sheen. All logic lives in [`sheen_tools::lctl`].

fn main() {
    std::process::exit(sheen_tools::run_on_host(sheen_tools::lctl::run));
}
