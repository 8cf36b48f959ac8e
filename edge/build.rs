//! Embeds the pages' script and stylesheet (`web/app.js`, `web/style.css`) and their player
//! libraries, installed from npm into `web/node_modules` (`scripts/setup.sh` runs `npm ci` in
//! `web/`): hls.js (its light build: LL-HLS without subtitles, alternate audio or DRM, which
//! the watch page does not use) and dash.js (its media player without the offline, DRM and
//! MSS modules). Each file is embedded as it is and gzip-compressed (level 9, once, here),
//! so the server answers `Accept-Encoding: gzip` without compressing per request.
//!
//! `$OUT_DIR/assets.rs` defines `APP_JS` and `STYLE` ([`Asset`]s), `HLS_JS` and `DASH_JS`
//! (`Option<Asset>`: `None` when the library was not found, and the binary's pages then say
//! it is missing) and `ASSETS_VERSION`, a hash of them all that the pages put in their asset
//! URLs so browsers may cache those for good. No third-party file is ever committed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The player libraries: constant, path under `web/`, name for the warning.
const LIBRARIES: [(&str, &str, &str); 2] = [
    (
        "HLS_JS",
        "node_modules/hls.js/dist/hls.light.min.js",
        "hls.js",
    ),
    (
        "DASH_JS",
        "node_modules/dashjs/dist/modern/umd/dash.mediaplayer.min.js",
        "dash.js",
    ),
];

/// The pages' own files: constant, path under `web/`.
const PAGE_FILES: [(&str, &str); 2] = [("APP_JS", "app.js"), ("STYLE", "style.css")];

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let web = Path::new(&manifest).join("../web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // Rerun when a page file changes, or when `npm ci` installs, changes or removes a library
    // (a missing path is watched too); never on a scan of node_modules.
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package-lock.json").display()
    );
    let mut code = String::new();
    let mut version = flate2::Crc::new();
    for (konst, file) in PAGE_FILES {
        let path = web.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        version.update(&bytes);
        let asset = embed(&out, konst, &path, &bytes);
        writeln!(code, "pub(crate) const {konst}: Asset = {asset};").unwrap();
    }
    for (konst, file, name) in LIBRARIES {
        let path = web.join(file);
        println!("cargo:rerun-if-changed={}", path.display());
        match std::fs::read(&path) {
            Ok(bytes) => {
                version.update(&bytes);
                let asset = embed(&out, konst, &path, &bytes);
                writeln!(
                    code,
                    "/// {name} from `web/{file}` (the version `web/package-lock.json` pins).\n\
                     pub(crate) const {konst}: Option<Asset> = Some({asset});"
                )
                .unwrap();
            }
            Err(_) => {
                println!(
                    "cargo:warning=web/{file} not found: the watch page will say {name} is \
                     missing (run scripts/setup.sh, then rebuild)"
                );
                writeln!(
                    code,
                    "/// {name} was not found at build time.\n\
                     pub(crate) const {konst}: Option<Asset> = None;"
                )
                .unwrap();
            }
        }
    }
    writeln!(
        code,
        "/// Changes whenever an embedded asset does.\n\
         pub(crate) const ASSETS_VERSION: &str = \"{:08x}\";",
        version.sum()
    )
    .unwrap();
    std::fs::write(out.join("assets.rs"), code).expect("writing assets.rs");
}

/// Writes `bytes` gzip-compressed next to the generated code and returns the `Asset`
/// expression that includes both.
fn embed(out: &Path, konst: &str, path: &Path, bytes: &[u8]) -> String {
    let gz = out.join(format!("{konst}.gz"));
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("compressing in memory");
    std::fs::write(&gz, enc.finish().expect("compressing in memory")).expect("writing .gz");
    let path = path.canonicalize().expect("the file was just read");
    format!(
        "Asset {{ raw: include_bytes!({:?}), gzip: include_bytes!({:?}) }}",
        path.display().to_string(),
        gz.display().to_string()
    )
}
