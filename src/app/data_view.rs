//! View 1, Data: choose a text file or a built-in task and see what the tokenizer makes of it.

use std::path::PathBuf;

use eframe::egui;

use super::commands::{AppCommand, DataChoice, ViewContext};
use super::dialogs::PickPurpose;
use super::style;
use crate::data::{BuiltinTask, DataPreview, TokenizerKind};
use crate::train::setup::DEFAULT_VOCAB;

/// View 1: the user's data choice and its analysis.
pub struct DataView {
    /// `builtin:<task>` or a file path.
    pub source: String,
    pub tokenizer: TokenizerKind,
    pub vocab_size: usize,
    pub preview: Option<DataPreview>,
    /// Why the chosen data cannot be used.
    pub error: Option<String>,
    /// The source being analysed, while a job runs.
    pending: Option<String>,
    /// The Source field's text while the user edits it (a typed or pasted path).
    source_input: String,
}

impl Default for DataView {
    fn default() -> Self {
        Self {
            source: "builtin:repeat".into(),
            tokenizer: TokenizerKind::Bpe,
            vocab_size: DEFAULT_VOCAB,
            preview: None,
            error: None,
            pending: None,
            source_input: String::new(),
        }
    }
}

impl DataView {
    pub fn busy(&self) -> bool {
        self.pending.is_some()
    }

    pub fn is_builtin(&self) -> bool {
        self.source.starts_with("builtin:")
    }

    pub fn choose_file(&mut self, path: PathBuf) {
        self.choose_source(path.display().to_string());
    }

    /// A typed source: `builtin:<task>` or a path (`~/` means the home folder).
    pub fn choose_source(&mut self, source: String) {
        self.source = match (source.strip_prefix("~/"), super::home_dir()) {
            (Some(rest), Some(home)) => home.join(rest).display().to_string(),
            _ => source,
        };
        self.preview = None;
        self.error = None;
    }

    /// The current choice, as other views see it.
    pub fn choice(&self) -> DataChoice {
        DataChoice {
            source: self.source.clone(),
            tokenizer: self.tokenizer,
            vocab_size: self.vocab_size,
        }
    }

    /// What to analyse next; marks the analysis as running.
    pub(super) fn preview_request(&mut self) -> AppCommand {
        self.pending = Some(self.source.clone());
        AppCommand::Preview(self.choice())
    }

    /// Takes an analysis; stale ones (the user chose other data meanwhile) are dropped.
    /// Returns the error for the app's message list.
    pub(super) fn preview_done(
        &mut self,
        source: &str,
        result: Result<Box<DataPreview>, String>,
    ) -> Result<(), String> {
        if self.pending.as_deref() == Some(source) {
            self.pending = None;
        }
        if source != self.source {
            return Ok(());
        }
        match result {
            Ok(preview) => {
                self.preview = Some(*preview);
                self.error = None;
                Ok(())
            }
            Err(error) => {
                self.preview = None;
                self.error = Some(error.clone());
                Err(format!("cannot use this data: {error}"))
            }
        }
    }
}

impl DataView {
    pub fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut ViewContext<'_>) {
        ui.heading("Training data");
        ui.label("Pick a UTF-8 text file of your own, or a built-in task the app generates.");
        ui.add_space(6.0);
        let mut changed = false;
        ui.horizontal(|ui| {
            for task in BuiltinTask::ALL {
                let spec = format!("builtin:{}", task.name());
                if ui
                    .selectable_label(self.source == spec, format!("builtin:{}", task.name()))
                    .on_hover_text(task.description())
                    .clicked()
                {
                    self.source = spec;
                    self.preview = None;
                    self.error = None;
                    changed = true;
                }
            }
            ui.separator();
            if ui
                .button("📂 Choose text file…")
                .on_hover_text(
                    "A .txt file: a book, your notes, code… The dialog is the desktop's \
                     (its portal, or zenity); the Source field below takes a typed path too.",
                )
                .clicked()
            {
                ctx.send(AppCommand::Pick {
                    purpose: PickPurpose::TrainingText,
                    title: "Choose a UTF-8 text file to train on",
                });
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Source:");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.source_input)
                        .font(egui::TextStyle::Monospace)
                        .hint_text("a file path, or builtin:<task>")
                        .desired_width(ui.available_width().min(720.0)),
                )
                .labelled_by(label.id)
                .on_hover_text("Type or paste a path and press Enter");
            if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                let typed = self.source_input.trim().to_owned();
                if !typed.is_empty() && typed != self.source {
                    self.choose_source(typed);
                    changed = true;
                }
            }
            if !field.has_focus() {
                // Follows choices made elsewhere (buttons, the file dialog).
                self.source_input.clone_from(&self.source);
            }
        });
        ui.add_enabled_ui(!self.is_builtin(), |ui| {
            ui.horizontal(|ui| {
                let label = ui.label("Tokenizer");
                egui::ComboBox::from_id_salt("tokenizer")
                    .selected_text(self.tokenizer.to_string())
                    .show_ui(ui, |ui| {
                        for kind in [TokenizerKind::Bpe, TokenizerKind::Char] {
                            changed |= ui
                                .selectable_value(&mut self.tokenizer, kind, kind.to_string())
                                .changed();
                        }
                    })
                    .response
                    .labelled_by(label.id);
                changed |= super::labelled(
                    ui,
                    "vocabulary",
                    egui::DragValue::new(&mut self.vocab_size)
                        .range(self.tokenizer.min_vocab_size()..=65536)
                        .speed(16),
                )
                .on_hover_text("Upper bound: a BPE trained on little text may stop earlier")
                .changed();
            });
        });
        if self.is_builtin() {
            ui.weak("Built-in tasks use their own 30-token character vocabulary.");
        } else if self.tokenizer == TokenizerKind::Bpe && self.vocab_size == DEFAULT_VOCAB {
            ui.weak(
                "Proposed: BPE with 2048 tokens. On a 96 KB sonnet file it wrote 78% real words \
                 after 1 minute of training on 2 CPU cores; characters reached 21% after 10 \
                 (docs/first-minutes.md).",
            );
        }
        ui.horizontal(|ui| {
            let analyse = ui.add_enabled(!self.busy(), egui::Button::new("🔎 Analyse"));
            if analyse.clicked() {
                changed = true;
            }
            if self.busy() {
                style::busy(ui);
                ui.label("training the tokenizer…");
            }
        });
        if changed && !self.busy() {
            ctx.send(self.preview_request());
        }
        ui.separator();
        if let Some(error) = &self.error {
            egui::Frame::new()
                .fill(style::error_fill(ui))
                .inner_margin(8.0)
                .show(ui, |ui| {
                    ui.label(egui::RichText::new("This data cannot be used").strong());
                    ui.label(egui::RichText::new(error).color(style::ERROR_TEXT));
                });
        }
        if let Some(preview) = &self.preview {
            preview_panel(ui, preview);
        } else if self.error.is_none() && !self.busy() {
            ui.weak("Click Analyse to see corpus statistics.");
        }
    }
}

fn preview_panel(ui: &mut egui::Ui, preview: &DataPreview) {
    ui.label(&preview.description);
    let stats = &preview.stats;
    egui::Grid::new("corpus-stats")
        .num_columns(2)
        .striped(true)
        .show(ui, |ui| {
            let mut row = |name: &str, value: String| {
                ui.label(name);
                ui.monospace(value);
                ui.end_row();
            };
            row("bytes", format!("{}", stats.bytes));
            row("characters", format!("{}", stats.chars));
            row("lines", format!("{}", stats.lines));
            row("tokens", format!("{}", stats.tokens));
            row("bytes / token", format!("{:.2}", stats.bytes_per_token));
            row(
                "vocabulary",
                format!(
                    "{} ({})",
                    preview.tokenizer.vocab_size(),
                    preview.tokenizer.kind()
                ),
            );
        });
    ui.add_space(6.0);
    // The lists fill the rest of the view, under their headings.
    let list_height = (ui.available_height() - 2.0 * ui.spacing().interact_size.y).max(160.0);
    ui.columns(2, |columns| {
        columns[0].strong("Most frequent tokens");
        egui::ScrollArea::vertical()
            .id_salt("top-tokens")
            .max_height(list_height)
            .show(&mut columns[0], |ui| {
                egui::Grid::new("top-tokens-grid")
                    .striped(true)
                    .show(ui, |ui| {
                        for (token, count) in &preview.stats.top_tokens {
                            ui.monospace(format!("{token:?}"));
                            ui.label(count.to_string());
                            ui.end_row();
                        }
                    });
            });
        columns[1].strong("Excerpt");
        egui::ScrollArea::vertical()
            .id_salt("excerpt")
            .max_height(list_height)
            .show(&mut columns[1], |ui| {
                ui.monospace(&preview.excerpt);
            });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_source_expands_the_home_folder_and_keeps_builtins() {
        let mut data = DataView::default();
        let home = crate::app::home_dir().expect("a home folder where tests run");
        data.choose_source("~/books/emma.txt".into());
        let expected = home.join("books/emma.txt");
        assert_eq!(data.source, expected.display().to_string());
        assert!(!data.is_builtin());
        data.choose_source("builtin:sorted".into());
        assert!(data.is_builtin());
        data.choose_source("/data/a~/b.txt".into());
        assert_eq!(data.source, "/data/a~/b.txt");
    }
}
