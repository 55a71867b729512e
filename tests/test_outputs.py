"""Every command checks its outputs before any work, fails in one line, and is
quiet about TensorFlow's start-up unless --tf_verbose asks."""

import importlib
import logging
import os
import subprocess
import sys
import time

import pytest
from absl import flags

from conftest import REPO, entry_points, write_dataset
from ncf_tf.cli import command
from ncf_tf.core import quiet
from ncf_tf.core.files import OutputError, check_output_dir, check_output_parent


def listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder)
                  for d, subdirs, files in os.walk(folder) for f in files + subdirs)


def test_a_usable_folder_passes_and_nothing_is_left_behind(tmp_path):
    check_output_dir(str(tmp_path), "out")
    check_output_dir(str(tmp_path / "new" / "deeper"), "out")
    check_output_parent(str(tmp_path / "new" / "file.csv"), "out")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("check,path,message", [
    (check_output_dir, "FILE", r"^--out {p}/FILE is a file, not a folder$"),
    (check_output_dir, "FILE/sub", r"^--out {p}/FILE/sub is inside {p}/FILE, which is a file"),
    (check_output_parent, "FILE/x.csv", r"^--out {p}/FILE/x.csv is inside {p}/FILE, which is"),
    (check_output_dir, "ro/sub", r"^--out {p}/ro/sub cannot be created in {p}/ro: "),
    (check_output_dir, "ro", r"^--out {p}/ro is not writable: "),
    (check_output_dir, "", r"^--out is empty; expected a folder$"),
])
def test_an_unusable_output_names_the_flag(tmp_path, check, path, message):
    (tmp_path / "FILE").write_text("keep")
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    try:
        if os.access(tmp_path / "ro", os.W_OK) and "ro" in path:
            # root ignores the mode bits; /proc refuses everyone.
            path, message = "/proc/ncf_tf_x/sub", r"^--out /proc/ncf_tf_x/sub cannot be created in /proc: "
        full = path if not path or path.startswith("/") else str(tmp_path / path)
        with pytest.raises(OutputError, match=message.format(p=tmp_path)):
            check(full, "out")
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    assert listing(tmp_path) == ["FILE", "ro"] and (tmp_path / "FILE").read_text() == "keep"


# Each command with one unusable output; the data flags are real, so that
# only the output can fail.
def unusable(tmp_path, data):
    file = str(tmp_path / "FILE")
    common = ["--path", data, "--dataset", "toy"]
    return [
        ("train_gmf", [*common, "--results_dir", file]),
        ("train_mlp", [*common, "--model_dir", "/proc/ncf_tf_x"]),
        ("train_neumf", [*common, "--tensorboard", file + "/logs"]),
        ("train_baseline", [*common, "--baseline", "itempop", "--results_dir", file]),
        ("download_data", ["--dataset", "ml-1m", "--dest", file]),
        ("prepare_data", ["--input", file, "--name", "x", "--dest", file]),
        ("export", ["--weights", file, "--dest", file + "/model"]),
        ("plot_run", ["--runs", file, "--output", file + "/x.png"]),
        ("recommend", ["--weights", file, "--output", "/proc/ncf_tf_x/top.csv"]),
        ("reproduce", ["--results", file]),
        ("reproduce", ["--model_dir", "/proc/ncf_tf_x"]),
    ]


def entry_point(name: str):
    module, function = entry_points()[name].split(":")
    return getattr(importlib.import_module(module), function)


def test_every_command_checks_its_outputs_first(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")["folder"]
    (tmp_path / "FILE").write_text("keep")
    before = listing(tmp_path)
    cases = unusable(tmp_path, data)
    assert {name for name, _ in cases} == set(entry_points())
    for name, argv in cases:
        code = entry_point(name)([name, *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (name, err)
        flag = next(a for a in argv if a in ("--results_dir", "--model_dir", "--tensorboard",
                                             "--dest", "--output", "--results"))
        assert len(err) == 1 and err[0].startswith(f"{name}: error: {flag} "), (name, err)
        assert listing(tmp_path) == before, name


def test_a_script_fails_fast_in_one_line_without_start_up_noise(tmp_path):
    data = write_dataset(tmp_path / "data")["folder"]
    (tmp_path / "FILE").write_text("keep")
    before = listing(tmp_path)
    start = time.monotonic()
    done = subprocess.run([sys.executable, os.path.join(REPO, "bin", "train_gmf"), "--path",
                           data, "--dataset", "toy", "--results_dir", str(tmp_path / "FILE"),
                           "--model_dir", str(tmp_path / "models")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    seconds = time.monotonic() - start
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"train_gmf: error: --results_dir {tmp_path}/FILE is a file, not a folder"]
    assert listing(tmp_path) == before
    print(f"failed in {seconds:.1f} s")


def run_body(body, errors=(ValueError,)):
    return command.run_command(["tool"], "tool", "A tool.", flags.FlagValues(), body, errors)


def test_a_bug_is_one_line_and_exit_1(capsys, monkeypatch):
    def body(fv):
        raise KeyError("no such thing\nsecond line")
    monkeypatch.delenv(command.TRACEBACK_ENV, raising=False)
    assert run_body(body) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("tool: error: KeyError: 'no such thing")
    assert err[0].endswith(f"(set {command.TRACEBACK_ENV}=1 for the traceback)")
    monkeypatch.setenv(command.TRACEBACK_ENV, "1")
    with pytest.raises(KeyError):
        run_body(body)


@pytest.mark.parametrize("error,code,line", [
    (ValueError("--x must be 1\nmore"), 2, "tool: error: --x must be 1"),
    (FileNotFoundError(2, "No such file or directory", "a/b.csv"), 2,
     "tool: error: No such file or directory: a/b.csv"),
    (PermissionError(13, "Permission denied"), 2, "tool: error: Permission denied"),
    (KeyboardInterrupt(), 130, "tool: interrupted"),
])
def test_bad_input_and_os_errors_are_one_line_and_exit_2(capsys, error, code, line):
    def body(fv):
        raise error
    assert run_body(body) == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_the_start_up_filter_keeps_real_errors():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1796486603.246930    2861 port.cc:153] oneDNN custom operations are on.\n"
            "W0000 00:00:1796486603.300001    2861 cuda_executor.cc:1309] could not find cuda drivers\n"
            "I0000 00:00:1796506097.002395    5146 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
            "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.\n"
            "E0000 00:00:1796486603.400002    2861 cuda_dnn.cc:8310] Unable to register cuDNN factory\n"
            "Traceback (most recent call last):\n"
            "ImportError: libcudart.so.12: cannot open shared object file\n"
            "I0000 is how a line of the user's own could start\n")
    assert quiet.filter_lines(text).splitlines() == [
        "E0000 00:00:1796486603.400002    2861 cuda_dnn.cc:8310] Unable to register cuDNN factory",
        "Traceback (most recent call last):",
        "ImportError: libcudart.so.12: cannot open shared object file",
        "I0000 is how a line of the user's own could start"]


def test_retracing_warnings_are_dropped_and_others_kept(caplog):
    logger = logging.getLogger("tensorflow")
    retraced = ("5 out of the last 5 calls to <function PairScorer._chunks_logits at 0x7f> "
                "triggered tf.function retracing. Tracing is expensive ...")
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        with quiet.retracing_hidden():
            logger.warning(retraced)
            logger.warning("Gradients do not exist for variables")
        with quiet.retracing_hidden(False):   # --tf_verbose
            logger.warning(retraced)
    assert [r.getMessage() for r in caplog.records] == [
        "Gradients do not exist for variables", retraced]


def test_filtered_stderr_passes_on_what_is_not_noise(capfd):
    with quiet.filtered_stderr():
        os.write(2, b"I0000 00:00:1.5 7 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"a real error\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "a real error\nafter\n"


def test_benchmark_help(capsys):
    from ncf_tf.cli import benchmark
    assert benchmark.main(["benchmark", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("benchmark: ") and "--path" in out and "--[no]tf_verbose" in out


def flag_values(*names):
    fv = flags.FlagValues()
    for name in names:
        flags.DEFINE_string(name, None, "", flag_values=fv)
    return fv


@pytest.mark.parametrize("library,script", [
    ("layers[0] must be even, got 63: half each", "--layers[0] must be even, got 63: half each"),
    ("device must be auto, cpu or gpu:N, got 'cuda'",
     "--device must be auto, cpu or gpu:N, got 'cuda'"),
    ("mf_pretrain and mlp_pretrain must be given together",
     "--mf_pretrain and --mlp_pretrain must be given together"),
    ("lazy_adam needs learner='adam', got 'sgd' (pass learner='adam')",
     "--lazy_adam needs --learner adam, got 'sgd' (pass --learner adam)"),
    ("num_neg=50: user 3 can be paired with only 9 items", "--num_neg 50: user 3 can be paired "
     "with only 9 items"),
    ("Data/x.train.rating: file not found in /w/Data (path='Data/')",
     "Data/x.train.rating: file not found in /w/Data (--path Data/)"),
    ("name must be one of A, B, got 'c'", "--baseline must be one of A, B, got 'c'"),
    ("give `param` or `path`, not both; drop `device`", "give --param or --path, not both; "
     "drop --device"),
    ("exists (lazy_adam=True replaces it)", "exists (--lazy_adam replaces it)"),
    # Not a flag, or not a value: left alone.
    ("topk must be positive", "topk must be positive"),
    ("param must look like name=value", "--param must look like name=value"),
    ("layers has 2 entries", "--layers has 2 entries"),
    ("the layers are fine", "the layers are fine"),
    ("drop `topk`, topk=True", "drop `topk`, topk=True"),
])
def test_library_messages_are_turned_into_flags(library, script):
    fv = flag_values("layers", "device", "mf_pretrain", "mlp_pretrain", "lazy_adam", "learner",
                     "num_neg", "path", "baseline", "param")
    assert command.in_flags(library, fv, {"name": "baseline"}) == script


@pytest.mark.parametrize("argv,line", [
    (["train_gmf", "--num_neg", "0"], "train_gmf: error: --num_neg must be an integer >= 1, got 0"),
    (["train_mlp", "--layers", "x"], "train_mlp: error: --layers must be a comma-separated list "
     "of integers such as [64,32,16,8], got 'x'"),
    (["train_neumf", "--learner", "Adagrad", "--lazy_adam"],
     "train_neumf: error: --lazy_adam needs --learner adam, got 'adagrad'"),
    (["train_gmf", "--path", "nowhere/"], "train_gmf: error: nowhere/ml-1m.train.rating: file "
     "not found (nor ml-1m.train.rating.gz) in {cwd}/nowhere (--path nowhere/); fetch the data "
     "with: bin/download_data --dataset ml-1m --dest nowhere/"),
    (["export", "--record", "r.json"], "export: error: --dest is required: the folder to write"),
    (["train_baseline", "--baseline", "nope"], "train_baseline: error: --baseline must be one "
     "of Random, ItemPop, ItemKNN, BPR, eALS, MF, iALS, EASE, got 'nope'"),
    (["train_baseline", "--baseline", "itempop", "--run_name", "a/b"], "train_baseline: error: "
     "--run_name must be a plain file name (no path separator, no '..'), got 'a/b'"),
])
def test_a_bad_flag_fails_before_keras_is_imported(tmp_path, argv, line):
    """The flags are checked first: Keras (and TensorFlow) is never imported."""
    module, function = entry_points()[argv[0]].split(":")
    code = (f"import sys; from {module} import {function} as main; code = main({argv!r}); "
            "assert 'keras' not in sys.modules, 'keras imported'; sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert (done.returncode, done.stderr.splitlines()) == (2, [line.format(cwd=tmp_path)])
