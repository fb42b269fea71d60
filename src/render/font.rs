//! The one font every picture flm writes uses: DejaVu Sans, embedded in the binary
//! (`assets/fonts/`), so charts and animations render the same on a machine with no system
//! fonts at all (plotters' `ttf` feature would look them up at run time).

use std::sync::OnceLock;

use plotters::style::{FontStyle, register_font};

/// DejaVu Sans (Bitstream Vera licence; see `assets/fonts/README.md`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// The family name the font is registered under with plotters.
pub const FAMILY: &str = "flm-sans";

#[derive(Debug, thiserror::Error)]
#[error("the embedded font could not be loaded")]
pub struct FontError;

/// Registers the font with plotters once per process.
pub fn register_embedded_font() -> Result<(), FontError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(FontError) }
}
