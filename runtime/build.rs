// The migrations are embedded at compile time (`sqlx::migrate!`): rebuild when one is added,
// not only when an existing one changes.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
