//! Pictures flm writes to files: the evaluation figure (line charts as PNG) and denoising
//! animations (GIF), both drawn with `plotters` in the embedded font.

pub mod animation;
pub mod figure;
pub mod font;
