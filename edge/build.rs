//! Finds the watch page's player library, hls.js, installed from npm into `web/node_modules`
//! (`scripts/setup.sh` runs `npm ci` in `web/`), and embeds it: `$OUT_DIR/player.rs` defines
//! `HLS_JS: Option<&[u8]>`. Without it the binary still builds and its pages say the player
//! library is missing; no third-party file is ever committed.

use std::path::Path;

fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let web = Path::new(&manifest).join("../web");
    let lib = web.join("node_modules/hls.js/dist/hls.min.js");
    // The page files are tracked by their `include_str!`; this script needs to rerun only when
    // `npm ci` installs, changes or removes the library (a missing path is watched too).
    println!("cargo:rerun-if-changed={}", lib.display());
    println!(
        "cargo:rerun-if-changed={}",
        web.join("package-lock.json").display()
    );
    let code = match lib.canonicalize() {
        Ok(path) if path.is_file() => format!(
            "/// hls.js from `web/node_modules` (the version `web/package-lock.json` pins).\n\
             pub(crate) const HLS_JS: Option<&[u8]> = Some(include_bytes!({:?}));\n",
            path.display().to_string()
        ),
        _ => {
            println!(
                "cargo:warning=web/node_modules/hls.js not found: the watch page will say its \
                 player library is missing (run scripts/setup.sh, then rebuild)"
            );
            "/// hls.js was not found at build time.\npub(crate) const HLS_JS: Option<&[u8]> = None;\n"
                .to_owned()
        }
    };
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into());
    std::fs::write(Path::new(&out).join("player.rs"), code).expect("writing player.rs");
}
