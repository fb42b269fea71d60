//! The desktop app: Data → Train (and Distill) → Sample, plus Checkpoints. A thin layer over
//! the library: every computation and file read runs in [`jobs`] threads. Each view owns its
//! state and draws from it plus what [`commands::ViewContext`] lends; it asks the app for
//! everything else with [`commands::AppCommand`]s, which the app applies after drawing. So no
//! view touches another's fields, and the window never waits on a model or the disk.

mod checkpoints_view;
pub mod commands;
mod data_view;
mod desktop;
pub mod dialogs;
pub mod frame_stats;
pub mod jobs;
pub mod playback;
mod sample_view;
mod simplex_view;
mod style;
mod train_view;
mod training_session;
mod trajectory_widgets;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eframe::egui;

pub use checkpoints_view::CheckpointsView;
use commands::{AppCommand, RunsFolder, ViewContext};
pub use data_view::DataView;
use dialogs::{Dialogs, NativeDialogs, PickPurpose};
use frame_stats::{FrameLog, FrameStats};
use jobs::{JobMessage, Jobs};
pub use sample_view::SampleView;
pub use train_view::TrainView;
pub use training_session::TrainDuration;

pub use desktop::{default_runs_root, home_dir, missing_display, run_desktop};

use crate::device::{self, ComputeDevice, DeviceChoice};

/// The four views, in the order of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Data,
    Train,
    Sample,
    Checkpoints,
}

impl View {
    pub const ALL: [View; 4] = [View::Data, View::Train, View::Sample, View::Checkpoints];

    pub fn title(self) -> &'static str {
        match self {
            View::Data => "1 · Data",
            View::Train => "2 · Train",
            View::Sample => "3 · Sample",
            View::Checkpoints => "Checkpoints",
        }
    }
}

/// Where the app keeps runs and how it computes.
pub struct AppSettings {
    pub runs_root: PathBuf,
    pub device: ComputeDevice,
    pub dialogs: Arc<dyn Dialogs>,
    /// Every frame's timing goes here, a line each (`FLM_FRAME_LOG`).
    pub frame_log: Option<PathBuf>,
}

impl AppSettings {
    /// Settings for a desktop session: the platform's data folder (or `FLM_RUNS_DIR`), the
    /// chosen compute device, native dialogs.
    pub fn for_desktop(device: DeviceChoice) -> Result<Self, String> {
        Ok(Self {
            runs_root: default_runs_root(),
            device: device::select(device)?,
            dialogs: Arc::new(NativeDialogs),
            frame_log: std::env::var_os("FLM_FRAME_LOG").map(PathBuf::from),
        })
    }
}

/// The app state behind the window.
pub struct FlmApp {
    pub view: View,
    pub data: DataView,
    pub train: TrainView,
    pub sample: SampleView,
    pub checkpoints: CheckpointsView,
    /// The runs folder, which every view reads.
    pub runs: RunsFolder,
    /// Problems to show until dismissed: a failed job never closes the window.
    pub errors: Vec<String>,
    /// Short confirmations ("exported to …").
    pub notices: Vec<String>,
    jobs: Jobs,
    device: ComputeDevice,
    renderer: String,
    dark_mode: bool,
    frames: FrameStats,
    frame_log: Option<FrameLog>,
    /// eframe's CPU time for the previous frame, for the frame log.
    last_frame_cpu_ms: Option<f32>,
    /// The window is cleared with the panel colour, so panels skip their own fill: on a
    /// software rasteriser a full-window fill is a large share of every frame.
    panels_on_clear_color: bool,
}

impl FlmApp {
    pub fn new(ctx: &egui::Context, settings: AppSettings) -> Self {
        style::apply(ctx, true);
        let mut app = Self {
            view: View::Data,
            data: DataView::default(),
            train: TrainView::default(),
            sample: SampleView::default(),
            checkpoints: CheckpointsView::default(),
            runs: RunsFolder {
                root: settings.runs_root,
                list: Vec::new(),
                error: None,
                listing: false,
            },
            errors: Vec::new(),
            notices: Vec::new(),
            jobs: Jobs::new(ctx.clone(), settings.dialogs),
            device: settings.device,
            renderer: String::from("egui"),
            dark_mode: true,
            frames: FrameStats::default(),
            last_frame_cpu_ms: None,
            panels_on_clear_color: false,
            frame_log: settings
                .frame_log
                .and_then(|path| match FrameLog::create(&path) {
                    Ok(log) => Some(log),
                    Err(error) => {
                        eprintln!("FLM_FRAME_LOG: cannot write {}: {error}", path.display());
                        None
                    }
                }),
        };
        let preview = app.data.preview_request();
        app.apply(vec![preview, AppCommand::RefreshRuns]);
        app
    }

    /// For the desktop window, which eframe clears with the panel colour (see
    /// `eframe::App::clear_color` below): panels draw no background of their own.
    pub fn with_panels_on_clear_color(mut self) -> Self {
        self.panels_on_clear_color = true;
        self
    }

    /// Names the renderer's adapter in the status bar.
    pub fn with_renderer(mut self, renderer: String) -> Self {
        self.renderer = renderer;
        self
    }

    pub fn set_dialogs(&mut self, dialogs: Arc<dyn Dialogs>) {
        self.jobs.set_dialogs(dialogs);
    }

    pub fn runs_root(&self) -> &Path {
        &self.runs.root
    }

    pub fn frame_stats(&self) -> &FrameStats {
        &self.frames
    }

    /// Whether any job is still running (tests wait on this).
    pub fn busy(&self) -> bool {
        self.data.busy()
            || self.train.busy()
            || self.sample.busy()
            || self.checkpoints.busy()
            || self.runs.listing
    }

    /// Draws one frame.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let started = self.frames.frame_start();
        let ctx = ui.ctx().clone();
        for message in self.jobs.drain() {
            self.handle(message);
        }
        self.train.poll_events();
        self.keyboard(&ctx);

        let unfilled = |frame: egui::Frame| {
            if self.panels_on_clear_color {
                frame.fill(egui::Color32::TRANSPARENT)
            } else {
                frame
            }
        };
        let bar = unfilled(egui::Frame::side_top_panel(ui.style()));
        let central = unfilled(egui::Frame::central_panel(ui.style()));
        egui::Panel::top("views")
            .frame(bar)
            .show(ui, |ui| self.view_tabs(ui));
        egui::Panel::bottom("status")
            .frame(bar)
            .show(ui, |ui| self.status_bar(ui));
        if !self.errors.is_empty() || !self.notices.is_empty() {
            egui::Panel::bottom("messages")
                .frame(bar)
                .show(ui, |ui| self.messages(ui));
        }
        let mut commands = Vec::new();
        let data = self.data.choice();
        let runs_in_use = self.train.runs_in_use();
        let mut view_ctx = ViewContext {
            runs: &self.runs,
            data: &data,
            runs_in_use: &runs_in_use,
            commands: &mut commands,
        };
        egui::CentralPanel::default()
            .frame(central)
            .show(ui, |ui| match self.view {
                View::Data => self.data.ui(ui, &mut view_ctx),
                View::Train => self.train.ui(ui, &mut view_ctx),
                View::Sample => self.sample.ui(ui, &mut view_ctx),
                View::Checkpoints => self.checkpoints.ui(ui, &mut view_ctx),
            });
        self.apply(commands);

        if self.train.busy() {
            // Live curves: redraw often enough to stay above 30 frames/s while training is
            // watched; elsewhere only poll for the next event.
            let watched = self.view == View::Train;
            ctx.request_repaint_after(Duration::from_millis(if watched { 25 } else { 250 }));
        } else if self.busy() {
            ctx.request_repaint_after(Duration::from_millis(100));
        }
        let (build, interval) = self.frames.frame_end(started);
        if let Some(log) = &mut self.frame_log {
            log.record(build, interval, self.last_frame_cpu_ms, self.view.title());
        }
    }

    /// Does what the views asked for, in order.
    fn apply(&mut self, commands: Vec<AppCommand>) {
        for command in commands {
            match command {
                AppCommand::Show(view) => self.view = view,
                AppCommand::Pick { purpose, title } => self.jobs.pick(purpose, title),
                AppCommand::Typed { purpose, path } => self.handle(JobMessage::Picked {
                    purpose,
                    path: Some(path),
                }),
                AppCommand::Preview(choice) => {
                    self.jobs
                        .preview(choice.source, choice.tokenizer, choice.vocab_size)
                }
                AppCommand::StartTraining {
                    slot,
                    start,
                    control,
                } => self.jobs.train(slot, *start, self.device.clone(), control),
                AppCommand::Sample { request, progress } => {
                    self.jobs.sample(request, self.device.clone(), progress)
                }
                AppCommand::OpenInSample(dir) => {
                    self.sample.model = Some(dir);
                    self.view = View::Sample;
                }
                AppCommand::Delete(dir) => self.jobs.delete(dir),
                AppCommand::Import { from, options } => {
                    let stem = from
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_else(|| "imported".into());
                    let out = self.runs.root.join(crate::train::data_stem(&stem));
                    self.checkpoints.import.importing = true;
                    self.jobs.import(from, out, options);
                }
                AppCommand::RefreshRuns => {
                    self.runs.listing = true;
                    self.jobs.list_runs(self.runs.root.clone());
                }
                AppCommand::LoadCurves(dir) => self.jobs.load_curves(dir),
            }
        }
    }

    fn handle(&mut self, message: JobMessage) {
        match message {
            JobMessage::Picked { purpose, path } => {
                let Some(path) = path else { return };
                match purpose {
                    PickPurpose::TrainingText => {
                        self.data.choose_file(path);
                        let preview = self.data.preview_request();
                        self.apply(vec![preview]);
                    }
                    PickPurpose::RunsFolder => {
                        self.runs.root = path;
                        self.apply(vec![AppCommand::RefreshRuns]);
                    }
                    PickPurpose::ExportFolder => {
                        if let Some(run) = self.checkpoints.selected.clone() {
                            self.checkpoints.exporting = true;
                            self.jobs.export(run, path);
                        }
                    }
                    PickPurpose::CheckpointFolder => self.sample.model = Some(path),
                    PickPurpose::ImportCheckpoint => {
                        self.checkpoints.import.from = path.display().to_string()
                    }
                    PickPurpose::ImportTokenizer => {
                        self.checkpoints.import.tokenizer = path.display().to_string()
                    }
                    PickPurpose::AnimationFile => {
                        if let Some(result) = &self.sample.result {
                            self.jobs.export_animation(
                                result.main.trajectory.clone(),
                                result.main.vocab.clone(),
                                self.sample.sample_index,
                                path,
                            );
                        }
                    }
                }
            }
            JobMessage::DataPreview { source, result } => {
                if let Err(error) = self.data.preview_done(&source, result) {
                    self.errors.push(error);
                }
            }
            JobMessage::TrainingStarted {
                slot,
                run_dir,
                events,
            } => self.train.started(slot, run_dir, events),
            JobMessage::TrainingDone { slot, result } => {
                if let Some(error) = self.train.done(slot, result) {
                    self.errors.push(error);
                }
                self.apply(vec![AppCommand::RefreshRuns]);
                self.sample.adopt_trained(self.train.latest_models());
            }
            JobMessage::Sampled(result) => {
                if let Some(error) = self.sample.done(result) {
                    self.errors.push(error);
                }
            }
            JobMessage::Exported { dest, result } => {
                self.checkpoints.exporting = false;
                match result {
                    Ok(files) => self.notices.push(format!(
                        "exported {} files to {}",
                        files.len(),
                        dest.display()
                    )),
                    Err(error) => self.errors.push(format!("export failed: {error}")),
                }
            }
            JobMessage::AnimationWritten { dest, result } => match result {
                Ok(bytes) => self.notices.push(format!(
                    "animation written to {} ({} KB)",
                    dest.display(),
                    bytes.div_ceil(1024)
                )),
                Err(error) => self.errors.push(format!("animation failed: {error}")),
            },
            JobMessage::Runs { root, result } => {
                // A listing of a folder the user has since left is stale.
                if root != self.runs.root {
                    return;
                }
                self.runs.listing = false;
                match result {
                    Ok(list) => {
                        self.checkpoints.listed(&list);
                        self.runs.list = list;
                        self.runs.error = None;
                    }
                    Err(error) => {
                        self.runs.list.clear();
                        self.runs.error = Some(error);
                    }
                }
            }
            JobMessage::Deleted { dir, result } => {
                self.checkpoints.deleting = false;
                match result {
                    Ok(()) => self.notices.push(format!("deleted {}", dir.display())),
                    Err(error) => self.errors.push(format!("could not delete: {error}")),
                }
                self.apply(vec![AppCommand::RefreshRuns]);
            }
            JobMessage::Curves { dir, curves } => self.checkpoints.curves_loaded(&dir, curves),
            JobMessage::Imported(result) => {
                self.checkpoints.import.importing = false;
                match result {
                    Ok(summary) => {
                        self.notices.push(format!(
                            "imported a {} ({:.1} M parameters) into {}",
                            summary.kind.description(),
                            summary.num_params as f64 / 1e6,
                            summary.out.display()
                        ));
                        self.notices.extend(summary.notes.iter().cloned());
                        self.checkpoints.import.open = false;
                        self.checkpoints.selected = Some(summary.out.clone());
                    }
                    Err(error) => self.errors.push(format!("import failed: {error}")),
                }
                self.apply(vec![AppCommand::RefreshRuns]);
            }
        }
    }

    fn keyboard(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.modifiers.command && i.key_pressed(egui::Key::Q)) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if self.view != View::Sample || ctx.egui_wants_keyboard_input() {
            return;
        }
        let (space, left, right) = ctx.input(|i| {
            (
                i.key_pressed(egui::Key::Space),
                i.key_pressed(egui::Key::ArrowLeft),
                i.key_pressed(egui::Key::ArrowRight),
            )
        });
        if let Some(playback) = self.sample.playback_mut() {
            if space {
                playback.toggle();
            }
            if left {
                playback.nudge(-1);
            }
            if right {
                playback.nudge(1);
            }
        }
    }

    fn view_tabs(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            ui.heading("flm");
            ui.separator();
            for view in View::ALL {
                ui.selectable_value(&mut self.view, view, view.title());
            }
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                let label = if self.dark_mode {
                    "☀ Light"
                } else {
                    "🌙 Dark"
                };
                if ui
                    .button(label)
                    .on_hover_text("Switch the colour theme")
                    .clicked()
                {
                    self.dark_mode = !self.dark_mode;
                    style::apply(ui.ctx(), self.dark_mode);
                }
            });
        });
    }

    fn status_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let description = self.device.to_string();
            ui.label(format!("compute: {}", headline(&description)))
                .on_hover_text(format!("Where training and sampling run: {description}"));
            ui.separator();
            // Frame times live in the tooltip: they change every frame, the bar should not.
            let frames = &self.frames;
            ui.label(format!("display: {}", self.renderer))
                .on_hover_ui(|ui| frame_time_report(ui, frames));
            ui.separator();
            ui.label(self.train.status_line());
        });
    }

    fn messages(&mut self, ui: &mut egui::Ui) {
        let mut dismiss_error = None;
        for (i, error) in self.errors.iter().enumerate() {
            egui::Frame::new()
                .fill(style::error_fill(ui))
                .inner_margin(6.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        if ui.button("×").on_hover_text("Dismiss").clicked() {
                            dismiss_error = Some(i);
                        }
                        ui.label(egui::RichText::new(error).color(style::ERROR_TEXT));
                    });
                });
        }
        if let Some(i) = dismiss_error {
            self.errors.remove(i);
        }
        let mut dismiss_notice = None;
        for (i, notice) in self.notices.iter().enumerate() {
            ui.horizontal(|ui| {
                if ui.small_button("×").clicked() {
                    dismiss_notice = Some(i);
                }
                ui.label(format!("✔ {notice}"));
            });
        }
        if let Some(i) = dismiss_notice {
            self.notices.remove(i);
        }
    }
}

impl eframe::App for FlmApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        self.last_frame_cpu_ms = frame.info().cpu_usage.map(|secs| secs * 1000.0);
        self.show(ui);
    }

    /// The panels' colour, so that they need not fill the window again.
    fn clear_color(&self, visuals: &egui::Visuals) -> [f32; 4] {
        visuals.panel_fill.to_normalized_gamma_f32()
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        self.train.stop_all();
    }
}

/// "CPU backend: the only GPU adapter is…" → "CPU backend": device descriptions are a
/// headline and a reason; labels show the headline, tooltips the whole.
fn headline(description: &str) -> &str {
    description.split(':').next().unwrap_or(description)
}

/// A run folder's name, for menus and titles.
fn run_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

/// Text the window's fonts can draw: a token that is part of a UTF-8 character (byte-level
/// BPE, or a draw that split one) decodes to U+FFFD, which no bundled font has.
fn drawable(text: &str) -> String {
    text.replace('\u{FFFD}', "?")
}

/// A count where 0 means "work it out": shown as `auto`.
fn auto_or_count(value: &mut usize, max: usize) -> egui::DragValue<'_> {
    egui::DragValue::new(value)
        .range(0..=max)
        .custom_formatter(|v, _| {
            if v == 0.0 {
                "auto".into()
            } else {
                format!("{v}")
            }
        })
}

/// A caption and its control, linked so screen readers (and tests) find the control by name.
fn labelled(ui: &mut egui::Ui, caption: &str, widget: impl egui::Widget) -> egui::Response {
    let caption = ui.label(caption);
    ui.add(widget).labelled_by(caption.id)
}

fn frame_time_report(ui: &mut egui::Ui, frames: &FrameStats) {
    let line = |name: &str, p: Option<frame_stats::Percentiles>| match p {
        Some(p) => format!(
            "{name}: p50 {:.1} ms · p95 {:.1} ms ({} frames)",
            p.p50, p.p95, p.count
        ),
        None => format!("{name}: no frames yet"),
    };
    ui.label(line("time between frames", frames.intervals()));
    ui.label(line("UI build time", frames.build_times()));
}
