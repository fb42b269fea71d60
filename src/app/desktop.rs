//! The desktop window: where runs live by default, whether a display exists, which renderer
//! draws the window (and whether it shares Burn's wgpu device), and eframe's start-up.

use std::path::PathBuf;

use eframe::egui;

use super::{AppSettings, FlmApp};
use crate::device::{self, ComputeDevice, DeviceChoice};

/// The user's home folder (`HOME`, or `USERPROFILE` on Windows).
pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
}

/// Where runs live unless `FLM_RUNS_DIR` says otherwise: the platform's per-user data folder.
pub fn default_runs_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLM_RUNS_DIR") {
        return PathBuf::from(dir);
    }
    let home = home_dir();
    let base = if cfg!(target_os = "windows") {
        std::env::var_os("APPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        home.map(|h| h.join("Library/Application Support"))
    } else {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".local/share")))
    };
    base.map_or_else(|| PathBuf::from("runs"), |b| b.join("flm").join("runs"))
}

/// Why no window can open here, if that is known before trying (Linux without X11/Wayland).
pub fn missing_display() -> Option<&'static str> {
    let linux_like = cfg!(all(unix, not(target_os = "macos")));
    let no_display =
        std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none();
    (linux_like && no_display).then_some("no display: neither DISPLAY nor WAYLAND_DISPLAY is set")
}

/// How the window is drawn, and why.
fn pick_renderer(compute: &ComputeDevice) -> eframe::Renderer {
    match std::env::var("FLM_RENDERER").as_deref() {
        Ok("glow") => return eframe::Renderer::Glow,
        Ok("wgpu") => return eframe::Renderer::Wgpu,
        _ => {}
    }
    match compute.backend {
        // One GPU context for compute and drawing.
        device::Backend::Wgpu => eframe::Renderer::Wgpu,
        // Without a real GPU, Mesa's OpenGL rasteriser draws this UI about 4–5× faster than
        // wgpu on lavapipe (13 ms against 62 ms a frame, measured on a 2-core machine).
        device::Backend::Cpu => match device::best_adapter() {
            Some(adapter) if !adapter.is_cpu => eframe::Renderer::Wgpu,
            _ => eframe::Renderer::Glow,
        },
    }
}

/// The adapter the window is drawn with, for the status bar.
fn renderer_name(cc: &eframe::CreationContext<'_>) -> String {
    if let Some(state) = &cc.wgpu_render_state {
        let info = state.adapter.get_info();
        return format!("wgpu on {} ({:?})", info.name, info.backend);
    }
    if let Some(gl) = &cc.gl {
        use eframe::glow::HasContext;
        // SAFETY: a plain string query on the context eframe just made current.
        let name = unsafe { gl.get_parameter_string(eframe::glow::RENDERER) };
        return format!("OpenGL on {name}");
    }
    "egui".into()
}

/// Opens the window. Fails (rather than exiting the process) when there is no display, so the
/// caller can fall back to the terminal.
pub fn run_desktop(device: DeviceChoice) -> Result<(), String> {
    if let Some(reason) = missing_display() {
        return Err(reason.into());
    }
    let settings = AppSettings::for_desktop(device)?;
    let mut wgpu_options = eframe::egui_wgpu::WgpuConfiguration::default();
    if std::env::var_os("FLM_NO_VSYNC").is_some() {
        wgpu_options.surface.present_mode = eframe::wgpu::PresentMode::AutoNoVsync;
    }
    let shared_setup = device::shared_wgpu_setup(&settings.device);
    let compute_device = shared_setup.as_ref().map(|setup| setup.device.clone());
    if let Some(setup) = shared_setup {
        wgpu_options.wgpu_setup =
            eframe::egui_wgpu::WgpuSetup::Existing(eframe::egui_wgpu::WgpuSetupExisting {
                instance: setup.instance,
                adapter: setup.adapter,
                device: setup.device,
                queue: setup.queue,
            });
    }
    let options = eframe::NativeOptions {
        renderer: pick_renderer(&settings.device),
        // Dithering smooths gradients; this UI's colours are flat, and on a software
        // rasteriser the per-pixel noise costs about 2 ms of CPU a frame.
        dithering: false,
        wgpu_options,
        viewport: egui::ViewportBuilder::default()
            .with_title("flm — flow language models")
            .with_inner_size([1280.0, 820.0])
            .with_min_inner_size([800.0, 560.0]),
        ..Default::default()
    };
    eframe::run_native(
        "flm",
        options,
        Box::new(|cc| {
            let mut renderer = renderer_name(cc);
            // Said only when eframe really draws on Burn's device.
            let drawn_on = cc.wgpu_render_state.as_ref().map(|state| &state.device);
            if drawn_on.is_some() && drawn_on == compute_device.as_ref() {
                renderer.push_str(", shared with compute");
            }
            Ok(Box::new(
                FlmApp::new(&cc.egui_ctx, settings)
                    .with_renderer(renderer)
                    .with_panels_on_clear_color(),
            ))
        }),
    )
    .map_err(|e| e.to_string())
}
