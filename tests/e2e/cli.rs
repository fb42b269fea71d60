//! The `flm` binary: outputs scripts rely on, and a clear error (never a panic) for bad input.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::common::{sonnets, temp_dir};

fn flm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flm"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the flm binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `flm train` on `data` and returns its stderr, asserting a clean failure.
fn train_fails(data: &Path, extra: &[&str]) -> String {
    let out = temp_dir("cli-fail");
    let mut args = vec!["train", "--data", data.to_str().unwrap(), "--out"];
    let out_str = out.join("run");
    let out_str = out_str.to_str().unwrap().to_string();
    args.push(&out_str);
    args.extend_from_slice(&["--device", "cpu", "--preset", "micro", "--steps", "1"]);
    args.extend_from_slice(extra);
    let output = flm(&args);
    let err = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit code 1, stderr:\n{err}"
    );
    assert!(!err.contains("panicked"), "panicked:\n{err}");
    assert!(err.contains("error:"), "{err}");
    err
}

#[test]
fn schedule_prints_gamma_for_gpt2_vocabulary() {
    let output = flm(&["schedule", "--vocab", "50258", "--tau", "0.5"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let gamma: f64 = stdout(&output).trim().parse().expect("a number");
    assert!((gamma - 0.809).abs() <= 0.002, "γ(0.5) = {gamma}");
}

#[test]
fn schedule_prints_a_table_without_tau() {
    let table = flm(&["schedule", "--vocab", "1024", "--rows", "4"]);
    let text = stdout(&table);
    assert!(text.contains("0.500") && text.contains("0.76"), "{text}");
}

#[test]
fn schedule_refuses_a_single_token_vocabulary() {
    refused_with(&["schedule", "--vocab", "1"], "at least 2");
}

/// `flm … | head -1`: when the reader closes the pipe, flm stops quietly with status 0.
#[test]
fn a_closed_stdout_ends_quietly_with_success() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_flm"))
        // Megabytes of table: far more than a pipe buffers, so flm is still writing.
        .args(["schedule", "--vocab", "1024", "--rows", "200000"])
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the flm binary runs");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("V = 1024"), "{first}");
    // The reader is dropped here: the pipe is closed.
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn bad_training_files_give_clear_errors() {
    let dir = temp_dir("bad-files");
    let missing = dir.join("missing.txt");
    assert!(train_fails(&missing, &[]).contains("missing.txt"));

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "  \n\n").unwrap();
    assert!(train_fails(&empty, &[]).to_lowercase().contains("empty"));

    let binary = dir.join("binary.bin");
    std::fs::write(&binary, [0x7fu8, b'E', b'L', b'F', 0, 0, 1, 2, 3, 0, 0, 0]).unwrap();
    assert!(train_fails(&binary, &[]).to_lowercase().contains("binary"));

    let latin1 = dir.join("latin1.txt");
    std::fs::write(&latin1, b"first line\nsecond caf\xe9 line\n").unwrap();
    let err = train_fails(&latin1, &[]);
    assert!(err.contains("UTF-8") && err.contains("line 2"), "{err}");

    let short = dir.join("short.txt");
    std::fs::write(&short, "just a few words").unwrap();
    let err = train_fails(&short, &["--tokenizer", "char", "--seq-len", "128"]);
    assert!(err.contains("tokens, but at least"), "{err}");

    let unknown = temp_dir("unknown-task");
    let err = train_fails(&unknown.join("builtin:nope"), &[]);
    assert!(
        err.contains("builtin:nope") || err.contains("nope"),
        "{err}"
    );
}

/// One micro FLM on `builtin:repeat`, trained for 3 steps by `flm train` and shared by the
/// tests below (they only read it).
fn trained_run() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let run = temp_dir("cli-run").join("run");
        let run = run.to_str().unwrap().to_string();
        let output = flm(&[
            "train",
            "--data",
            "builtin:repeat",
            "--out",
            &run,
            "--preset",
            "micro",
            "--steps",
            "3",
            "--device",
            "cpu",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        run
    })
}

/// The trained run distilled by `flm distill` for 2 steps, shared like the run.
fn distilled_run() -> &'static str {
    static STUDENT: OnceLock<String> = OnceLock::new();
    STUDENT.get_or_init(|| {
        let student = temp_dir("cli-student").join("student");
        let student = student.to_str().unwrap().to_string();
        let output = flm(&[
            "distill",
            "--teacher",
            trained_run(),
            "--out",
            &student,
            "--steps",
            "2",
            "--device",
            "cpu",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        student
    })
}

/// `flm sample --json` with seed 9: 3 samples of 4 steps from `ckpt`.
fn sample_json(ckpt: &str, extra: &[&str]) -> Output {
    let args = [
        "sample", "--ckpt", ckpt, "--steps", "4", "--n", "3", "--seed", "9", "--json", "--device",
        "cpu",
    ];
    let output = flm(&[&args[..], extra].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

#[test]
fn sample_json_prints_one_object_per_sample() {
    let output = sample_json(trained_run(), &[]);
    let lines: Vec<serde_json::Value> = stdout(&output)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(line["steps"], 4);
        assert_eq!(line["seed"], 9);
        assert_eq!(line["tokens"].as_array().unwrap().len(), 32);
        assert!(line["text"].is_string());
        assert!(line["valid"].is_boolean());
        assert_eq!(line["sampler"], "euler");
    }
}

#[test]
fn sample_takes_a_prompt_or_a_template() {
    let prompted = sample_json(trained_run(), &["--prompt", "kk"]);
    assert!(prompted.status.success(), "{}", stderr(&prompted));
    for line in stdout(&prompted).lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            record["text"].as_str().unwrap().starts_with("kk"),
            "{record}"
        );
        assert_eq!(record["fixed"].as_array().unwrap().len(), 32, "{record}");
    }
    let filled = sample_json(trained_run(), &["--template", "a___c"]);
    assert!(filled.status.success(), "{}", stderr(&filled));
    for line in stdout(&filled).lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let text: Vec<char> = record["text"].as_str().unwrap().chars().collect();
        assert_eq!((text[0], text[2]), ('a', 'c'), "{record}");
        assert!(record["fixed"][1].is_null(), "{record}");
    }
    // One step cannot see the prompt: said, not hidden.
    let one = flm(&[
        "sample",
        "--ckpt",
        trained_run(),
        "--steps",
        "1",
        "--prompt",
        "k",
        "--device",
        "cpu",
    ]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(
        stderr(&one).contains("warning: with 1 step"),
        "{}",
        stderr(&one)
    );
    assert!(stdout(&one).lines().nth(1).unwrap().starts_with('k'));
    // Text the model's tokenizer cannot write, a prompt longer than the model, both flags.
    for (extra, message) in [
        (&["--prompt", "a b"][..], "does not know"),
        (&["--prompt", &"k".repeat(40)][..], "40 tokens long"),
        (
            &["--prompt", "a", "--template", "b"][..],
            "cannot be used with",
        ),
    ] {
        let args = ["sample", "--ckpt", trained_run(), "--device", "cpu"];
        let output = flm(&[&args[..], extra].concat());
        assert!(!output.status.success());
        assert!(stderr(&output).contains(message), "{}", stderr(&output));
    }
}

#[test]
fn sample_writes_the_trajectory_asked_for() {
    let trajectory = temp_dir("cli-trajectory").join("trajectory.json");
    sample_json(
        trained_run(),
        &["--trajectory", trajectory.to_str().unwrap()],
    );
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trajectory).unwrap()).unwrap();
    assert_eq!(recorded["steps"], 4);
    assert_eq!(recorded["samples"].as_array().unwrap().len(), 3);
}

#[test]
fn sample_draws_the_denoising_as_a_gif() {
    let path = temp_dir("cli-animation").join("denoising.gif");
    let output = sample_json(trained_run(), &["--animation", path.to_str().unwrap()]);
    assert!(
        stderr(&output).contains("animation written"),
        "{}",
        stderr(&output)
    );
    let bytes = std::fs::read(&path).unwrap();
    let mut decoder = gif::DecodeOptions::new().read_info(&bytes[..]).unwrap();
    let mut delays = Vec::new();
    while let Some(frame) = decoder.read_next_frame().unwrap() {
        delays.push(frame.delay);
    }
    // 4 steps, then the final text held longer.
    assert_eq!(delays.len(), 5);
    assert!(delays[4] > delays[0], "{delays:?}");
}

#[test]
fn info_shows_steps_and_data_of_a_run() {
    let info = flm(&["info", "--ckpt", trained_run()]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(
        text.contains("3 steps") && text.contains("builtin:repeat"),
        "{text}"
    );
}

#[test]
fn train_into_an_existing_run_asks_for_resume() {
    let again = flm(&[
        "train",
        "--data",
        "builtin:repeat",
        "--out",
        trained_run(),
        "--steps",
        "3",
        "--device",
        "cpu",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
}

#[test]
fn an_export_samples_like_the_run() {
    let exported = temp_dir("cli-export").join("exported");
    let exported = exported.to_str().unwrap();
    let export = flm(&["export", "--ckpt", trained_run(), "--out", exported]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(stdout(&export).lines().count(), 3);
    let texts = |output: &Output| -> Vec<String> {
        stdout(output)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].to_string())
            .collect()
    };
    assert_eq!(
        texts(&sample_json(exported, &[])),
        texts(&sample_json(trained_run(), &[])),
        "the export samples like the run"
    );
}

/// More candidates than the sampler keeps is refused, not silently cut.
#[test]
fn sample_refuses_a_top_k_above_16() {
    refused_with(
        &[
            "sample",
            "--ckpt",
            trained_run(),
            "--top-k",
            "17",
            "--device",
            "cpu",
        ],
        "at most 16",
    );
}

/// η is a flow-map setting: an FLM refuses it and says what to do.
#[test]
fn sample_refuses_eta_for_an_flm() {
    refused_with(
        &[
            "sample",
            "--ckpt",
            trained_run(),
            "--eta",
            "0.5",
            "--device",
            "cpu",
        ],
        "flm distill",
    );
}

#[test]
fn sample_of_a_missing_checkpoint_says_so() {
    let nothing = temp_dir("cli-missing").join("nothing");
    refused_with(
        &[
            "sample",
            "--ckpt",
            nothing.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        "not a checkpoint",
    );
}

/// The sampler is picked from the checkpoint: a distilled model samples with flow-map jumps.
#[test]
fn a_distilled_flow_map_samples_with_flow_map_jumps() {
    let output = flm(&[
        "sample",
        "--ckpt",
        distilled_run(),
        "--steps",
        "2",
        "--eta",
        "0.5",
        "--n",
        "2",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    for line in stdout(&output).lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["sampler"], "flow-map");
        assert_eq!(line["eta"], 0.5);
        assert_eq!(line["steps"], 2);
    }
}

#[test]
fn info_of_a_flow_map_names_its_teacher() {
    let info = stdout(&flm(&["info", "--ckpt", distilled_run()]));
    assert!(
        info.contains("flow map") && info.contains("teacher"),
        "{info}"
    );
}

#[test]
fn distill_trains_at_batch_64_with_a_decaying_rate_and_train_does_not() {
    let train_of = |run: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(Path::new(run).join("config.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["train"].clone()
    };
    let (student, flm) = (train_of(distilled_run()), train_of(trained_run()));
    assert_eq!(
        (&student["batch_size"], &student["lr_decay"]),
        (&serde_json::json!(64), &serde_json::json!(0.5)),
        "docs/distillation.md measured these defaults"
    );
    assert_eq!(flm["lr_decay"], serde_json::json!(0.0));
}

/// `flm eval` of the FLM at 1 and 2 steps and its flow map at 1 step.
fn eval_both(extra: &[&str]) -> Output {
    let args = [
        "eval",
        "--ckpt",
        trained_run(),
        "--steps",
        "1,2",
        "--ckpt",
        distilled_run(),
        "--steps",
        "1",
        "--n",
        "8",
        "--batch",
        "4",
        "--device",
        "cpu",
    ];
    let output = flm(&[&args[..], extra].concat());
    assert!(output.status.success(), "{}", stderr(&output));
    output
}

#[test]
fn eval_writes_one_report_for_several_models() {
    let report = temp_dir("cli-eval").join("report.md");
    let output = eval_both(&["--out", report.to_str().unwrap()]);
    assert!(
        stdout(&output).contains("| held-out text |"),
        "{}",
        stdout(&output)
    );
    // The figure: two 560×400 panels, the first model's line colour in it.
    let png = std::fs::read(report.with_extension("png")).unwrap();
    let mut reader = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), (2 * 560, 400));
    let first_colour = pixels
        .chunks_exact(3)
        .filter(|p| *p == [31, 119, 180])
        .count();
    assert!(
        first_colour > 100,
        "{first_colour} pixels of the first line"
    );
    let parsed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.with_extension("json")).unwrap())
            .unwrap();
    let models = parsed["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["results"].as_array().unwrap().len(), 2);
    assert_eq!(models[1]["results"][0]["sampler"], "flow-map");
    assert!(models[0]["results"][0]["metrics"]["validity"].is_number());
}

#[test]
fn eval_gives_the_same_metrics_for_the_same_seed() {
    let metrics_of = |output: &Output| -> Vec<serde_json::Value> {
        let value: serde_json::Value = serde_json::from_str(&stdout(output)).unwrap();
        value["models"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["results"].as_array().unwrap().clone())
            .map(|r| r["metrics"].clone())
            .collect()
    };
    let (a, b) = (eval_both(&["--json"]), eval_both(&["--json"]));
    assert_eq!(metrics_of(&a), metrics_of(&b), "same seed, same metrics");
}

#[test]
fn eval_continues_prompts_and_measures_the_continuations() {
    let prompts = temp_dir("cli-eval-prompts").join("prompts.txt");
    std::fs::write(&prompts, "q".repeat(200)).unwrap();
    let output = eval_both(&[
        "--prompts",
        prompts.to_str().unwrap(),
        "--continuation",
        "8",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let seq_len = report["seq_len"].as_u64().unwrap();
    assert_eq!(
        report["prompts"]["prompt_tokens"].as_u64(),
        Some(seq_len - 8)
    );
    assert_eq!(report["prompts"]["continuation_tokens"], 8);
    // Each step count twice, prompted first.
    let results = report["models"][0]["results"].as_array().unwrap();
    let prompted: Vec<bool> = results.iter().map(|r| r["prompted"] == true).collect();
    assert_eq!(prompted, [true, false, true, false]);
    let markdown = eval_both(&["--prompts", prompts.to_str().unwrap()]);
    assert!(
        stdout(&markdown).contains("euler, prompted"),
        "{}",
        stdout(&markdown)
    );
    refused_with(
        &[
            "eval",
            "--ckpt",
            trained_run(),
            "--prompts",
            prompts.to_str().unwrap(),
            "--continuation",
            "500",
            "--device",
            "cpu",
        ],
        "leaves no prompt",
    );
}

/// A reference model with another tokenizer is refused with a clear message.
#[test]
fn eval_refuses_a_reference_with_another_tokenizer() {
    let reference = temp_dir("cli-ar").join("ar");
    let output = flm(&[
        "train-ar",
        "--data",
        sonnets().to_str().unwrap(),
        "--out",
        reference.to_str().unwrap(),
        "--preset",
        "micro",
        "--tokenizer",
        "char",
        "--seq-len",
        "32",
        "--steps",
        "2",
        "--device",
        "cpu",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    refused_with(
        &[
            "eval",
            "--ckpt",
            trained_run(),
            "--ref",
            reference.to_str().unwrap(),
            "--n",
            "2",
            "--device",
            "cpu",
        ],
        "different tokenizer",
    );
}

/// Linux only: elsewhere there is no display variable to take away.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn gui_without_a_display_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_flm"))
        .args(["gui", "--device", "cpu"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("the flm binary runs");
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no display") && err.contains("flm --help"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// A value outside a closed list is a usage error (status 2) that lists the choices.
#[test]
fn an_unknown_device_is_a_usage_error_listing_the_choices() {
    let bad = flm(&["gui", "--device", "tpu"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("possible values: auto, gpu, cpu"),
        "{}",
        stderr(&bad)
    );
}

/// Runs `flm ARGS` (which must print JSON) and returns the parsed output.
fn json_output(args: &[&str]) -> serde_json::Value {
    let output = flm(args);
    assert!(output.status.success(), "{}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("JSON")
}

/// Asserts `flm ARGS` fails cleanly (exit 1) with `message` on stderr.
fn refused_with(args: &[&str], message: &str) {
    let output = flm(args);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains(message), "{}", stderr(&output));
}

/// The kernel benchmark runs on the wgpu device (lavapipe in CI) and reports every size asked
/// for, with both timings; a zero size is refused.
#[test]
fn bench_kernels_reports_the_sizes_asked_for() {
    let report = json_output(&[
        "bench", "kernels", "--vocab", "3,300", "--runs", "1", "--json",
    ]);
    for table in ["sampler_step", "noisy_input"] {
        let rows = report["bench"][table].as_array().expect(table);
        let vocabs: Vec<u64> = rows.iter().map(|r| r["vocab"].as_u64().unwrap()).collect();
        assert_eq!(vocabs, [3, 300], "{table}");
        for row in rows {
            assert!(row["fused_ms"].as_f64().unwrap() > 0.0, "{row}");
            assert!(row["reference_ms"].as_f64().unwrap() > 0.0, "{row}");
        }
    }
    refused_with(
        &["bench", "kernels", "--vocab", "0"],
        "--vocab sizes must be at least 1",
    );
}

/// The training and sampling benchmarks time flm's kernels on and off for the shape asked
/// for; bad sizes are refused before any work.
#[test]
fn bench_train_and_sample_time_kernels_on_and_off() {
    let shape = [
        "--vocab",
        "40",
        "--preset",
        "micro",
        "--batch",
        "2",
        "--seq-len",
        "8",
        "--json",
    ];
    let train = json_output(&[&["bench", "train", "--steps", "1"][..], &shape].concat());
    assert_eq!(train["shape"]["vocab"], 40, "{train}");
    assert_eq!(
        train["parameters"].as_u64().map(|p| p > 0),
        Some(true),
        "{train}"
    );
    assert_timing(&train["train"]);

    let sample = json_output(&[&["bench", "sample"][..], &shape].concat());
    assert_eq!(sample["shape"]["seq_len"], 8, "{sample}");
    let rows = sample["sample"].as_array().expect("sampling rows");
    assert!(!rows.is_empty(), "{sample}");
    for row in rows {
        assert!(row["network_calls"].as_u64().unwrap() >= 1, "{row}");
        assert_timing(&row["timing"]);
    }
    refused_with(&["bench", "train", "--steps", "0"], "must be at least 1");
}

fn assert_timing(timing: &serde_json::Value) {
    for key in ["kernels_ms", "reference_ms", "tokens_per_sec"] {
        assert!(timing[key].as_f64().unwrap() > 0.0, "{key}: {timing}");
    }
}
