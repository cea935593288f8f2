//! `brume bench`: figures for the README (see there for the machine they came from).

pub fn main(_args: &[String]) -> Result<(), String> {
    Err("not built yet".into())
}
