//! The debouncer with made-up times, and the sim backend with its real event thread.

use super::sim::SimGpio;
use super::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MS: u64 = 1_000_000;

fn edge(line: u32, active: bool, ms: u64) -> Edge {
    Edge {
        line,
        active,
        monotonic_ns: ms * MS,
    }
}

// ---- debouncer ----

#[test]
fn debouncer_without_window_reports_every_change_and_only_changes() {
    let mut d = Debouncer::new();
    d.add_line(3, false, 0);
    assert_eq!(d.input(3, true, MS), vec![edge(3, true, 1)]);
    assert_eq!(d.input(3, true, 2 * MS), vec![], "same level: no edge");
    assert_eq!(d.input(3, false, 3 * MS), vec![edge(3, false, 3)]);
    assert_eq!(d.input(3, true, 3 * MS), vec![edge(3, true, 3)]);
    assert_eq!(d.next_deadline(), None);
    assert_eq!(d.expire(u64::MAX), vec![]);
}

#[test]
fn debouncer_drops_a_bounce_that_settles_at_the_reported_level() {
    let mut d = Debouncer::new();
    d.add_line(1, false, 20);
    assert_eq!(d.input(1, true, 100 * MS), vec![edge(1, true, 100)]);
    assert_eq!(d.input(1, false, 102 * MS), vec![]);
    assert_eq!(d.next_deadline(), Some(120 * MS));
    assert_eq!(d.input(1, true, 104 * MS), vec![]);
    assert_eq!(d.next_deadline(), None, "back at the reported level");
    assert_eq!(d.expire(200 * MS), vec![]);
}

#[test]
fn debouncer_keeps_the_final_level_of_a_bounce() {
    let mut d = Debouncer::new();
    d.add_line(1, false, 20);
    assert_eq!(d.input(1, true, 100 * MS), vec![edge(1, true, 100)]);
    assert_eq!(d.input(1, false, 105 * MS), vec![]);
    assert_eq!(d.input(1, true, 107 * MS), vec![]);
    assert_eq!(d.input(1, false, 109 * MS), vec![]);
    assert_eq!(d.next_deadline(), Some(120 * MS));
    assert_eq!(d.expire(119 * MS), vec![], "window not over");
    // Reported once the window has passed, stamped when the line went there.
    assert_eq!(d.expire(120 * MS), vec![edge(1, false, 109)]);
    assert_eq!(d.expire(500 * MS), vec![], "reported once");
    assert_eq!(d.next_deadline(), None);
    // The next press, well after, is reported at once.
    assert_eq!(d.input(1, true, 300 * MS), vec![edge(1, true, 300)]);
}

#[test]
fn debouncer_reports_a_held_back_level_before_a_later_change() {
    // No expire() call in between: the input itself settles the held-back level.
    let mut d = Debouncer::new();
    d.add_line(7, false, 20);
    d.add_line(8, false, 20);
    assert_eq!(d.input(7, true, 0), vec![edge(7, true, 0)]);
    assert_eq!(d.input(7, false, 5 * MS), vec![]);
    assert_eq!(
        d.input(8, true, 30 * MS),
        vec![edge(7, false, 5), edge(8, true, 30)]
    );
    assert_eq!(d.input(7, true, 40 * MS), vec![edge(7, true, 40)]);
}

#[test]
fn debouncer_windows_are_per_line_and_unknown_lines_are_ignored() {
    let mut d = Debouncer::new();
    d.add_line(1, false, 50);
    d.add_line(2, true, 0);
    assert_eq!(d.input(1, true, 0), vec![edge(1, true, 0)]);
    assert_eq!(d.input(2, false, MS), vec![edge(2, false, 1)]);
    assert_eq!(d.input(2, true, 2 * MS), vec![edge(2, true, 2)]);
    assert_eq!(d.input(1, false, 3 * MS), vec![]);
    assert_eq!(d.input(9, true, 4 * MS), vec![]);
    assert_eq!(d.next_deadline(), Some(50 * MS));
    assert_eq!(d.expire(60 * MS), vec![edge(1, false, 3)]);
}

// ---- sim ----

fn input(line: u32, active_low: bool, debounce_ms: u32) -> InputSpec {
    InputSpec {
        line,
        pull: Pull::Up,
        active_low,
        debounce_ms,
    }
}

fn output(line: u32, initial: bool, active_low: bool) -> OutputSpec {
    OutputSpec {
        line,
        initial,
        active_low,
    }
}

/// A callback that forwards edges to a channel.
fn collector() -> (Box<dyn FnMut(Edge) + Send>, mpsc::Receiver<Edge>) {
    let (tx, rx) = mpsc::channel();
    (
        Box::new(move |e| {
            let _ = tx.send(e);
        }),
        rx,
    )
}

fn next(rx: &mpsc::Receiver<Edge>) -> Edge {
    rx.recv_timeout(Duration::from_secs(2))
        .expect("an edge within 2 s")
}

#[test]
fn sim_press_and_release_produce_edges_in_order() {
    let (cb, rx) = collector();
    let mut g = open(Backend::Sim, "", &[input(4, false, 0)], &[], cb).unwrap();
    assert_eq!(g.describe(), "sim");
    assert!(!g.get(4).unwrap(), "inputs start inactive");
    let before = monotonic_ns();
    g.simulate(4, true).unwrap();
    assert!(g.get(4).unwrap());
    g.simulate(4, true).unwrap(); // no change: no edge
    g.simulate(4, false).unwrap();
    g.simulate(4, true).unwrap();
    let got: Vec<Edge> = (0..3).map(|_| next(&rx)).collect();
    let levels: Vec<bool> = got.iter().map(|e| e.active).collect();
    assert_eq!(levels, [true, false, true]);
    assert!(got.iter().all(|e| e.line == 4));
    assert!(got[0].monotonic_ns >= before);
    assert!(got
        .windows(2)
        .all(|w| w[0].monotonic_ns <= w[1].monotonic_ns));
    assert!(got[2].monotonic_ns <= monotonic_ns());
    assert!(
        rx.recv_timeout(Duration::from_millis(20)).is_err(),
        "no 4th edge"
    );
}

#[test]
fn sim_active_low_is_applied_to_the_electrical_level_only() {
    let (cb, rx) = collector();
    let mut g = SimGpio::open(
        &[input(2, true, 0)],
        &[output(5, true, true), output(6, true, false)],
        cb,
    )
    .unwrap();
    // An active-low button at rest reads high (pulled up); pressed, it reads low.
    assert!(!g.get(2).unwrap());
    assert!(g.physical(2).unwrap());
    g.simulate(2, true).unwrap();
    assert!(!g.physical(2).unwrap());
    assert_eq!(shape(next(&rx)), (2, true));
    // An active-low LED lit at start is driven low.
    assert!(g.get(5).unwrap());
    assert!(!g.physical(5).unwrap());
    assert!(g.physical(6).unwrap());
    g.set(5, false).unwrap();
    assert!(!g.get(5).unwrap());
    assert!(g.physical(5).unwrap());
}

/// An edge without its timestamp.
fn shape(e: Edge) -> (u32, bool) {
    (e.line, e.active)
}

#[test]
fn sim_debounce_drops_a_bounce_and_keeps_the_final_level() {
    let (cb, rx) = collector();
    let mut g = open(Backend::Sim, "", &[input(9, false, 40)], &[], cb).unwrap();
    let start = Instant::now();
    // A bouncing press that ends released.
    for level in [true, false, true, false] {
        g.simulate(9, level).unwrap();
    }
    assert_eq!(shape(next(&rx)), (9, true), "the press, at once");
    assert_eq!(
        shape(next(&rx)),
        (9, false),
        "the final level, after the window"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(35),
        "held back for the window ({:?})",
        start.elapsed()
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(60)).is_err(),
        "no more"
    );
    // A bounce that ends where it started reports nothing.
    g.simulate(9, true).unwrap();
    assert_eq!(shape(next(&rx)), (9, true));
    g.simulate(9, false).unwrap();
    g.simulate(9, true).unwrap();
    assert!(rx.recv_timeout(Duration::from_millis(60)).is_err());
    assert!(g.get(9).unwrap());
}

#[test]
fn sim_outputs_start_at_initial_and_follow_set() {
    let (cb, rx) = collector();
    let mut g = open(
        Backend::Sim,
        "",
        &[],
        &[output(1, false, false), output(2, true, false)],
        cb,
    )
    .unwrap();
    assert!(!g.get(1).unwrap());
    assert!(g.get(2).unwrap());
    g.set(1, true).unwrap();
    g.set(2, false).unwrap();
    assert!(g.get(1).unwrap());
    assert!(!g.get(2).unwrap());
    assert!(rx.try_recv().is_err(), "outputs make no edges");
}

#[test]
fn sim_errors_name_the_line() {
    let (cb, _rx) = collector();
    let mut g = open(
        Backend::Sim,
        "",
        &[input(4, false, 0)],
        &[output(5, false, false)],
        cb,
    )
    .unwrap();
    let e = g.get(6).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }), "{e:?}");
    assert_eq!(e.to_string(), "sim line 6: not a claimed line");
    assert!(g.set(6, true).is_err());
    assert!(g.simulate(6, true).is_err());
    let e = g.set(4, true).unwrap_err();
    assert!(e.to_string().starts_with("sim line 4: is an input"), "{e}");
    let e = g.simulate(5, true).unwrap_err();
    assert!(e.to_string().starts_with("sim line 5: is an output"), "{e}");
}

#[test]
fn open_refuses_a_line_claimed_twice() {
    let (cb, _rx) = collector();
    let e = open(
        Backend::Sim,
        "",
        &[input(3, false, 0)],
        &[output(3, false, false)],
        cb,
    )
    .err()
    .expect("an error");
    assert_eq!(
        e.to_string(),
        "sim line 3: claimed twice (as an input and as an output)"
    );
    let (cb, _rx) = collector();
    let e = open(
        Backend::Sim,
        "",
        &[],
        &[output(8, false, false), output(8, true, false)],
        cb,
    )
    .err()
    .expect("an error");
    assert!(e.to_string().contains("listed twice as an output"), "{e}");
}

#[test]
fn sim_drop_is_prompt_even_with_a_level_held_back() {
    let (cb, rx) = collector();
    let mut g = open(Backend::Sim, "", &[input(1, false, 5_000)], &[], cb).unwrap();
    g.simulate(1, true).unwrap();
    g.simulate(1, false).unwrap();
    assert_eq!(shape(next(&rx)), (1, true));
    let t = Instant::now();
    drop(g);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    // The thread has ended: its callback (and the sender in it) is gone.
    assert_eq!(
        rx.recv_timeout(Duration::from_millis(10)),
        Err(mpsc::RecvTimeoutError::Disconnected)
    );
}

// ---- real backends on a machine that may have no GPIO ----

#[test]
fn cdev_missing_chip_is_an_error() {
    let (cb, _rx) = collector();
    let e = open(
        Backend::Cdev,
        "no-such-gpio-chip",
        &[input(0, false, 0)],
        &[],
        cb,
    )
    .err()
    .expect("an error");
    assert!(matches!(e, Error::Gone { .. }), "{e:?}");
    assert!(e.to_string().starts_with("no-such-gpio-chip: "), "{e}");
    let (cb, _rx) = collector();
    let e = open(Backend::Cdev, "/dev/gpiochip999", &[], &[], cb)
        .err()
        .expect("an error");
    assert!(matches!(e, Error::Gone { .. }), "{e:?}");
    let (cb, _rx) = collector();
    assert!(open(Backend::Cdev, "", &[], &[], cb).is_err());
}

#[test]
fn list_chips_matches_dev() {
    let chips = list_chips();
    let has_dev_chips = std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("gpiochip"))
        })
        .unwrap_or(false);
    if !has_dev_chips {
        assert_eq!(chips, vec![]);
    }
    for c in &chips {
        assert!(c.path.starts_with("/dev/"), "{c:?}");
        assert!(!c.name.is_empty(), "{c:?}");
    }
}

#[test]
fn rppal_off_a_pi_is_a_clear_error() {
    let (cb, _rx) = collector();
    match open(Backend::Rppal, "", &[], &[], cb) {
        Ok(g) => assert!(g.describe().starts_with("rppal ("), "{}", g.describe()),
        Err(e) => assert_eq!(e.to_string(), "rppal: not a Raspberry Pi (UnknownModel)"),
    }
}
