//! `brume`: one multicall binary. The first argument picks the role; every process of
//! a running appliance is this same executable (see ARCHITECTURE.md).

mod angel;
mod controller;
mod env;
mod handoff;
mod input;
mod listen;
mod logging;
mod push;
mod recorder;
mod serve;
mod update;
mod update_cmd;
mod worker;

use brume::{config, webhook};

use std::process::ExitCode;

const USAGE: &str = "\
brume: a crash-proof live-media appliance

USAGE:
    brume serve [--config PATH] [--listen ADDR:PORT] [--rtmp ADDR:PORT|off]
                [--rtsp ADDR:PORT|off]
        Run everything: controller, listeners, inputs. Creates PATH with a demo
        stream if it does not exist (see brume serve --help).
    brume update FILE [--sig SIGFILE] [--config PATH]
    brume update --rollback [--config PATH]
        Switch the running appliance to the brume binary FILE (checked first,
        signed when the configuration has update.public_key) without dropping
        viewers, or back to the previous binary (see brume update --help).
    brume devices
        List the V4L2 cameras (formats, sizes, frame rates), ALSA capture
        devices and GPIO chips, as JSON.
    brume bench [shm|latency|fanout|controller|capture|all]
        Measure and print figures (see README).
    brume bench encoder [DEVICE] [--codec h264|fwht] [--frames N] [--size WxH]
        Measure a V4L2 M2M encoder (default: the board's H.264 encoder).
    brume --version

Internal roles (started by brume itself): controller, listen, input, record, push.
Every command takes --help.
";

/// `brume <role> --help`: what each role takes.
fn role_usage(role: &str) -> Option<&'static str> {
    Some(match role {
        "serve" => serve::USAGE,
        "update" => update_cmd::USAGE,
        "devices" => {
            "usage: brume devices\n    The V4L2 cameras (formats, sizes, frame rates), V4L2 M2M encoders,\n    ALSA capture devices and GPIO chips of this machine, as JSON.\n"
        }
        "bench" => {
            "usage: brume bench [shm|latency|fanout|controller|capture|all]\n       brume bench encoder [DEVICE] [--codec h264|fwht] [--frames N] [--size WxH]\n    Measure and print figures (see README).\n"
        }
        "controller" => {
            "usage: brume controller\n    Internal role, started by brume serve: configuration, HTTP API, the inputs'\n    angel. Reads BRUME_CONFIG and BRUME_RUN_DIR.\n"
        }
        "listen" => {
            "usage: brume listen --http ADDR:PORT [--rtmp ADDR:PORT|off] [--rtsp ADDR:PORT|off]\n    Internal role, started by brume serve: owns the HTTP, RTMP and RTSP ports.\n"
        }
        "input" => "usage: brume input <stream>\n    Internal role, started by the controller: one stream's input.\n",
        "record" => {
            "usage: brume record <stream> --dir DIR [--segment-s N]\n    Internal role, started by the controller: one stream's recording.\n"
        }
        "push" => "usage: brume push <name>\n    Internal role, started by the controller: one push to an RTMP server.\n",
        _ => return None,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = args.first().map(String::as_str).unwrap_or("");
    let rest = args.get(1..).unwrap_or(&[]);
    if let Some(usage) = role_usage(role) {
        if rest.iter().any(|a| a == "--help" || a == "-h") {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
    }
    let result = match role {
        "serve" => match serve::Options::parse(rest) {
            Ok(options) => serve::main(options),
            Err(e) => {
                eprintln!("brume serve: {e}\n(brume serve --help for the options)");
                return ExitCode::from(2);
            }
        },
        "controller" => controller::main(rest),
        "listen" => listen::main(rest),
        "input" => input::main(rest),
        "record" => recorder::main(rest),
        "push" => push::main(rest),
        "bench" => worker::bench::main(rest),
        "update" => return update_cmd::main(rest),
        "devices" if !rest.is_empty() => {
            eprint!(
                "brume devices: unexpected argument {:?}\n{}",
                rest[0], USAGE
            );
            return ExitCode::from(2);
        }
        "devices" => {
            println!(
                "{}",
                serde_json::to_string_pretty(&devices()).expect("device lists serialise")
            );
            return ExitCode::SUCCESS;
        }
        "--version" | "-V" | "version" => {
            println!("brume {}", update::version());
            return ExitCode::SUCCESS;
        }
        "--help" | "-h" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            if !role.is_empty() {
                eprintln!("brume: unknown command {role:?}");
            }
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(role, error = %e, "exiting");
            eprintln!("brume {role}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The capture devices of this machine (`brume devices`, `GET /api/v1/devices`).
pub fn devices() -> serde_json::Value {
    let video: Vec<_> = brume_hw::v4l2::list_devices();
    serde_json::json!({
        "video": video.iter().filter(|d| d.capture).collect::<Vec<_>>(),
        // M2M devices that encode raw pictures (not decoders or scalers), e.g. the
        // Pi 4's bcm2835-codec H.264 encoder at /dev/video11.
        "encoders": video
            .iter()
            .filter(|d| d.m2m && !brume_hw::v4l2_m2m::encoder_formats(&d.path).is_empty())
            .map(|d| &d.path)
            .collect::<Vec<_>>(),
        "audio": brume_hw::alsa_capture::list_devices(),
        "gpio": brume_hw::gpio::list_chips(),
        "fake": { "video": "fake:camera", "audio": "fake:microphone" },
    })
}

/// Finds `--name VALUE` in `args`.
pub fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}
