//! Embeds the web UI (`web/index.html` and everything under `web/ui/`) into the binary:
//! generates a table of the files with their content type, a gzip copy (compressed
//! here, once, at build time) and an ETag. See `src/controller/ui.rs`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let web = manifest.join("../../web");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    println!(
        "cargo:rerun-if-changed={}",
        web.join("index.html").display()
    );
    println!("cargo:rerun-if-changed={}", web.join("ui").display());

    let mut files = vec![("/".to_string(), web.join("index.html"))];
    let mut ui = Vec::new();
    collect(&web.join("ui"), "/ui", &mut ui);
    ui.sort();
    files.extend(ui);

    let gz_dir = out.join("ui-gz");
    std::fs::create_dir_all(&gz_dir).expect("create OUT_DIR/ui-gz");
    let mut table = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (i, (url, path)) in files.iter().enumerate() {
        let body = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let content_type = content_type(path);
        let gz = gzip(&body);
        let gz_path = gz_dir.join(format!("{i}.gz"));
        std::fs::write(&gz_path, &gz).expect("write a gzip copy");
        // Only worth sending compressed when it saves something real.
        let gzip_expr = if gz.len() + 64 < body.len() {
            format!("Some(include_bytes!({:?}))", gz_path.display().to_string())
        } else {
            "None".to_string()
        };
        let etag = format!("\"{:08x}-{:x}\"", crc32(&body), body.len());
        let abs = path.canonicalize().expect("canonical path");
        writeln!(
            table,
            "    Asset {{ path: {url:?}, content_type: {content_type:?}, etag: {etag:?}, body: include_bytes!({:?}), gzip: {gzip_expr} }},",
            abs.display().to_string()
        )
        .expect("write to a String");
    }
    table.push_str("];\n");
    std::fs::write(out.join("ui_assets.rs"), table).expect("write ui_assets.rs");
}

/// Every file under `dir`, as (URL path, file path). Names are restricted to what a
/// URL carries without escaping.
fn collect(dir: &Path, url: &str, out: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for e in entries {
        let e = e.expect("directory entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "web UI file name {name:?}: use A-Z a-z 0-9 - _ ."
        );
        let path = e.path();
        let u = format!("{url}/{name}");
        if path.is_dir() {
            collect(&path, &u, out);
        } else {
            out.push((u, path));
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        other => panic!(
            "web UI file {}: unknown extension {other:?} (add its content type to build.rs)",
            path.display()
        ),
    }
}

/// A gzip member (RFC 1952) around a raw DEFLATE stream.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, 10));
    out.extend(crc32(data).to_le_bytes());
    out.extend((data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
