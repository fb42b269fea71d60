//! Hostile inputs (issue 17): absurd sizes, special files, foreign or damaged run files, two
//! writers of one run, exports over existing files. Each is refused before any harm, with a
//! message that says what is wrong and what to do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use flm::data::{
    DataError, TextDatasetSpec, TextTokenizer, TokenizerKind, load_text, prepare_text_dataset,
    preview_data,
};
use flm::device::cpu_device;
use flm::train::{load_model, prepare_run};

use crate::common::*;

fn flm_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flm"))
        .current_dir(dir)
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the flm binary runs")
}

fn flm(args: &[&str]) -> Output {
    flm_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The stderr of a command that must fail with `code`, never by a panic.
fn fails_with(code: i32, args: &[&str]) -> String {
    let output = flm(args);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(code), "{args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A micro run on `builtin:repeat` with a checkpoint after two steps.
fn trained_run(name: &str) -> PathBuf {
    let out = temp_dir(name).join("run");
    let mut request = micro_request(&out, "builtin:repeat");
    request.steps = Some(2);
    run_request(&request);
    out
}

/// `flm train` of a micro char-level model on a text file, on the CPU.
fn micro_text_training<'a>(data: &'a str, out: &'a str, steps: &'a str) -> [&'a str; 17] {
    [
        "train",
        "--data",
        data,
        "--out",
        out,
        "--tokenizer",
        "char",
        "--preset",
        "micro",
        "--seq-len",
        "32",
        "--batch",
        "4",
        "--steps",
        steps,
        "--device",
        "cpu",
    ]
}

fn edit_config(run: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let file = run.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    edit(&mut config);
    fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// Why `--resume` on `run` is refused.
fn resume_error(run: &Path) -> String {
    let mut request = micro_request(run, "");
    request.resume = true;
    match prepare_run(&request) {
        Ok(_) => panic!("--resume of {} was accepted", run.display()),
        Err(error) => error.to_string(),
    }
}

fn load_error(run: &Path) -> String {
    match load_model(run, &cpu_device()) {
        Ok(_) => panic!("{} loaded", run.display()),
        Err(error) => error.to_string(),
    }
}

#[test]
fn size_flags_beyond_the_limits_are_refused_with_the_limit() {
    let out = temp_dir("flag-limits").join("run");
    for (flag, value, limit) in [
        ("--seq-len", "100000000", "8192"),
        ("--vocab", "4000000000", "262144"),
        ("--batch", "1000000000", "65536"),
    ] {
        let err = fails_with(
            2,
            &[
                "train",
                "--data",
                "builtin:repeat",
                "--out",
                path(&out),
                "--steps",
                "1",
                "--device",
                "cpu",
                flag,
                value,
            ],
        );
        assert!(err.contains(limit) && err.contains("too large"), "{err}");
        assert!(!out.join("config.json").exists());
    }
}

#[test]
fn absurd_sizes_in_config_json_are_refused_before_building_the_model() {
    let run = trained_run("giant-config");
    edit_config(&run, |c| c["model"]["d_model"] = 1_000_000_000u64.into());
    let expected = "d_model = 1000000000 is too large: the limit is 8192";
    let err = fails_with(1, &["info", "--ckpt", path(&run)]);
    assert!(err.contains(expected), "{err}");
    let err = fails_with(1, &["sample", "--ckpt", path(&run), "--device", "cpu"]);
    assert!(err.contains(expected), "{err}");
    assert!(resume_error(&run).contains(expected));
}

#[test]
fn a_model_too_big_for_memory_is_refused_with_an_estimate() {
    let run = trained_run("giant-memory");
    // Every field within its bound, 10¹¹ parameters in all.
    edit_config(&run, |c| {
        c["model"]["d_model"] = 8192.into();
        c["model"]["n_blocks"] = 128.into();
    });
    let err = load_error(&run);
    assert!(
        err.contains("GiB") && err.contains("available") && err.contains("inference"),
        "{err}"
    );
    // `flm info` shows the true count (about 1.03e11), not a wrapped one.
    let info = flm(&["info", "--ckpt", path(&run)]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    let count: u64 = text
        .split(" parameters")
        .next()
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no parameter count in:\n{text}"));
    assert!((1.0e11..1.1e11).contains(&(count as f64)), "{count}");
}

#[test]
fn weights_that_do_not_fit_the_config_are_named_tensor_by_tensor() {
    let run = trained_run("foreign-weights");
    edit_config(&run, |c| c["model"]["n_blocks"] = 3.into());
    let err = load_error(&run);
    assert!(
        err.contains("tensor `blocks.2.norm_attn.weight` is missing"),
        "{err}"
    );
    assert!(
        !err.contains("ShapeMismatch") && !err.contains("Import errors"),
        "{err}"
    );

    edit_config(&run, |c| {
        c["model"]["n_blocks"] = 2.into();
        c["model"]["d_model"] = 128.into();
    });
    let err = load_error(&run);
    assert!(
        err.contains("tensor `embedding` has shape [") && err.contains("config.json implies"),
        "{err}"
    );
}

/// `load_text(path)` on another thread: a FIFO must be refused, not block the caller forever.
fn load_text_within_seconds(file: &Path) -> Result<String, DataError> {
    let (sender, receiver) = mpsc::channel();
    let file = file.to_path_buf();
    std::thread::spawn(move || sender.send(load_text(&file)));
    receiver
        .recv_timeout(Duration::from_secs(20))
        .expect("load_text returned (it blocked on the special file)")
}

#[cfg(unix)]
#[test]
fn special_files_are_refused_before_they_are_opened() {
    let dir = temp_dir("special-files");
    let fifo = dir.join("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (file, kind) in [
        (fifo.as_path(), "named pipe"),
        (Path::new("/dev/zero"), "device"),
    ] {
        let error = load_text_within_seconds(file).unwrap_err();
        assert!(
            matches!(error, DataError::NotRegularFile { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains(kind), "{error}");
        let preview = preview_data(path(file), TokenizerKind::Char, 256).unwrap_err();
        assert!(matches!(preview, DataError::NotRegularFile { .. }));
    }
    assert!(matches!(
        load_text_within_seconds(&dir).unwrap_err(),
        DataError::IsDirectory { .. }
    ));
}

#[test]
fn utf16_text_is_named_with_a_conversion_hint() {
    let dir = temp_dir("utf16");
    let text = "Shall I compare thee to a summer's day?\n";
    let little: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let big: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let with_bom = [&[0xff, 0xfe][..], &little].concat();
    for (name, bytes) in [("bom.txt", with_bom), ("le.txt", little), ("be.txt", big)] {
        let file = dir.join(name);
        fs::write(&file, bytes).unwrap();
        let message = load_text(&file).unwrap_err().to_string();
        assert!(
            message.contains("UTF-16")
                && message.contains("iconv -f UTF-16 -t UTF-8 in.txt > out.txt")
                && !message.contains("binary"),
            "{name}: {message}"
        );
    }
}

#[test]
fn resume_refuses_a_corrupt_or_foreign_tokenizer_of_a_builtin_task() {
    let run = trained_run("task-tokenizer");
    fs::write(run.join("tokenizer.json"), "{ not json").unwrap();
    let err = resume_error(&run);
    assert!(
        err.contains("tokenizer.json") && err.contains("not a usable"),
        "{err}"
    );

    let foreign = TextTokenizer::train(TokenizerKind::Char, "xyz and more", 256).unwrap();
    foreign.save(&run.join("tokenizer.json")).unwrap();
    let err = resume_error(&run);
    assert!(err.contains("is not the one of `builtin:repeat`"), "{err}");
}

#[test]
fn resume_refuses_a_model_seq_len_that_disagrees_with_the_data() {
    let run = trained_run("seq-len-mismatch");
    edit_config(&run, |c| c["model"]["seq_len"] = 64.into());
    let err = resume_error(&run);
    assert!(
        err.contains("model.seq_len is 64 but data.seq_len is 32"),
        "{err}"
    );
}

#[test]
fn resume_of_a_run_whose_checkpoint_is_gone_says_so() {
    let run = trained_run("checkpoint-gone");
    fs::remove_dir_all(run.join("checkpoint")).unwrap();
    let err = resume_error(&run);
    assert!(
        err.contains("no checkpoint/ to resume from") && err.contains("step 0"),
        "{err}"
    );
}

#[test]
fn a_run_being_written_refuses_a_second_writer_and_names_its_pid() {
    let run = trained_run("locked");
    let mut request = micro_request(&run, "");
    request.resume = true;
    let first = prepare_run(&request).expect("the first writer gets the run");
    let err = resume_error(&run);
    assert!(
        err.contains("is being written by another flm process")
            && err.contains(&format!("(pid {})", std::process::id())),
        "{err}"
    );
    // The lock lives as long as the job: training through it, then the run is free again.
    let (result, _) = run_prepared(first);
    result.expect("the first writer trains");
    drop(prepare_run(&request).expect("released when the first job ended"));
}

#[test]
fn export_refuses_a_run_folder_and_replaces_files_only_with_force() {
    let run = trained_run("export-source");
    let other = trained_run("export-victim");
    let before = fs::read(other.join("config.json")).unwrap();
    let err = fails_with(
        1,
        &[
            "export",
            "--ckpt",
            path(&run),
            "--out",
            path(&other),
            "--force",
        ],
    );
    assert!(err.contains("holds a training run"), "{err}");
    assert_eq!(fs::read(other.join("config.json")).unwrap(), before);

    let dest = temp_dir("export-twice");
    let export = |extra: &[&str]| {
        flm(&[
            &["export", "--ckpt", path(&run), "--out", path(&dest)][..],
            extra,
        ]
        .concat())
    };
    assert!(export(&[]).status.success());
    let again = export(&[]);
    assert_eq!(again.status.code(), Some(1));
    let err = stderr(&again);
    assert!(
        err.contains("already has config.json, tokenizer.json, model.safetensors")
            && err.contains("--force"),
        "{err}"
    );
    assert!(export(&["--force"]).status.success());
}

#[test]
fn a_write_failure_is_reported_as_a_write_failure() {
    let dir = temp_dir("write-failure");
    let blocker = dir.join("a-file");
    fs::write(&blocker, "not a folder").unwrap();
    let spec = TextDatasetSpec {
        train_path: &sonnets(),
        valid_path: None,
        tokenizer_kind: TokenizerKind::Char,
        vocab_size: 256,
        seq_len: 32,
    };
    let message = prepare_text_dataset(&spec, &blocker.join("run"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("cannot write") && !message.contains("readable"),
        "{message}"
    );
}

#[test]
fn checkpoint_io_errors_print_the_os_error_once() {
    let dir = temp_dir("io-once");
    let blocker = dir.join("a-file");
    fs::write(&blocker, "not a folder").unwrap();
    let out = blocker.join("run");
    let err = fails_with(
        1,
        &[
            "train",
            "--data",
            "builtin:repeat",
            "--out",
            path(&out),
            "--steps",
            "1",
            "--device",
            "cpu",
        ],
    );
    assert_eq!(err.matches("os error").count(), 1, "{err}");
}

#[test]
fn a_relative_data_path_is_recorded_absolute_so_the_run_resumes_from_elsewhere() {
    let dir = temp_dir("relative-data");
    fs::copy(sonnets(), dir.join("corpus.txt")).unwrap();
    let train = flm_in(&dir, &micro_text_training("corpus.txt", "run", "2"));
    assert!(train.status.success(), "{}", stderr(&train));
    let run = dir.join("run");
    let config: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let recorded = dir.join("corpus.txt").canonicalize().unwrap();
    assert_eq!(config["data"]["source"], path(&recorded));

    let elsewhere = temp_dir("relative-data-elsewhere");
    let resume = flm_in(
        &elsewhere,
        &[
            "train",
            "--resume",
            "--out",
            path(&run),
            "--steps",
            "3",
            "--device",
            "cpu",
        ],
    );
    assert!(resume.status.success(), "{}", stderr(&resume));
    let info = flm_in(&elsewhere, &["info", "--ckpt", path(&run)]);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(
        text.contains(&format!("data: {}", recorded.display())),
        "{text}"
    );
}

/// The peak memory `flm train` reports at the end, in MiB.
fn reported_peak_mib(output: &Output) -> f64 {
    let err = stderr(output);
    assert!(output.status.success(), "{err}");
    let tail = err
        .rsplit_once("peak memory ")
        .unwrap_or_else(|| panic!("no peak memory in:\n{err}"))
        .1;
    tail.split_whitespace().next().unwrap().parse().unwrap()
}

/// Issue 17: a char-level corpus used to be in memory three times over at its peak (text, ids
/// and a byte copy of the ids for the cache: about 9× the file). Now the text is dropped
/// before the ids are read back from the cache, so the corpus adds about its ids alone.
#[cfg(target_os = "linux")]
#[test]
fn a_big_corpus_costs_about_its_token_ids_in_memory() {
    let dir = temp_dir("big-corpus-memory");
    let sonnets = fs::read_to_string(sonnets()).unwrap();
    let big = dir.join("big.txt");
    fs::write(&big, sonnets.repeat(300)).unwrap();
    let small = dir.join("small.txt");
    fs::write(&small, &sonnets).unwrap();
    let train =
        |data: &Path, out: &str| flm(&micro_text_training(path(data), path(&dir.join(out)), "1"));
    let baseline = reported_peak_mib(&train(&small, "small"));
    let peak = reported_peak_mib(&train(&big, "big"));
    let cache_mib = fs::metadata(dir.join("big").join("tokens-train.bin"))
        .unwrap()
        .len() as f64
        / (1 << 20) as f64;
    let extra = peak - baseline;
    assert!(
        extra < 1.6 * cache_mib,
        "the {cache_mib:.0} MiB of ids cost {extra:.0} MiB more than a small file ({baseline:.0} MiB)"
    );
}
