//! What the examples share: command-line options (`--quick`, `--epochs N`, `--data DIR`,
//! `--out DIR`), progress bars ([`progress`]), PNG plots ([`plot`]) and the classifier
//! training loop ([`train`]).

pub mod cnn;
pub mod csv;
pub mod curves;
pub mod libsvm;
pub mod params;
pub mod plot;
pub mod progress;
pub mod train;

use std::path::{Path, PathBuf};

/// What every example accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Smaller sample counts, so a run takes a moment (used by the tests).
    pub quick: bool,
    /// The folder holding the data sets (`DIR/mnist/...`).
    pub data: PathBuf,
    /// Epochs to train, overriding the example's own number (the book's, or one under
    /// `--quick`).
    pub epochs: Option<usize>,
    /// Where plots and other output files go.
    pub out: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            data: kiln::frontend::data::mnist::default_data_dir(),
            epochs: None,
            out: default_out_dir(),
        }
    }
}

/// `target/example-output` under the repository: out of the way of the sources, and cleaned
/// with the build.
pub fn default_out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/example-output")
}

impl Options {
    /// Options with `--quick` set, the shipped data folder, and output in a temporary folder.
    #[allow(dead_code)] // used by the tests, not by every example binary
    pub fn quick() -> Self {
        Options {
            quick: true,
            out: std::env::temp_dir().join("kiln-example-output"),
            ..Options::default()
        }
    }

    /// The number of epochs to train: `--epochs` when given, else `quick` under `--quick`,
    /// else `full`.
    #[allow(dead_code)] // used by the training examples
    pub fn epochs_or(&self, full: usize, quick: usize) -> usize {
        self.epochs.unwrap_or(if self.quick { quick } else { full })
    }

    /// The path of output file `name` in the output folder, creating the folder.
    #[allow(dead_code)] // used by the examples that plot
    pub fn out_file(&self, name: &str) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.out)?;
        Ok(self.out.join(name))
    }

    /// Where the Fashion-MNIST files are: `DATA/fashion-mnist` when it exists, else `DATA`.
    #[allow(dead_code)] // used by the examples that read Fashion-MNIST
    pub fn fashion_mnist_dir(&self) -> PathBuf {
        self.data_subdir("fashion-mnist")
    }

    /// `DATA/name` when it is a folder, else `DATA` itself (so `--data` may name either the
    /// data folder or the data set's own folder).
    #[allow(dead_code)] // used by the examples that read data
    pub fn data_subdir(&self, name: &str) -> PathBuf {
        let nested = self.data.join(name);
        if nested.is_dir() {
            nested
        } else {
            self.data.clone()
        }
    }

    /// Where the MNIST files are: `DATA/mnist` when it exists, else `DATA` itself (so
    /// `--data` may name either the data folder or the MNIST folder).
    #[allow(dead_code)] // used by the examples that read MNIST
    pub fn mnist_dir(&self) -> PathBuf {
        self.data_subdir("mnist")
    }

    /// Parses `args` (without the program name). `--help` and unknown arguments give an
    /// `Err` holding the text to print.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut opts = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "-h" | "--help" => return Err(usage()),
                other => {
                    let (flag, inline) = match other.split_once('=') {
                        Some((flag, value)) => (flag, Some(value.to_string())),
                        None => (other, None),
                    };
                    if !matches!(flag, "--data" | "--out" | "--epochs") {
                        return Err(format!("unknown argument `{other}`\n\n{}", usage()));
                    }
                    let Some(value) = inline.or_else(|| args.next()) else {
                        return Err(format!("{flag} needs a value\n\n{}", usage()));
                    };
                    match flag {
                        "--data" => opts.data = PathBuf::from(value),
                        "--out" => opts.out = PathBuf::from(value),
                        _ => match value.parse::<usize>() {
                            Ok(n) if n > 0 => opts.epochs = Some(n),
                            _ => {
                                return Err(format!(
                                    "--epochs needs a positive whole number, not `{value}`\n\n{}",
                                    usage()
                                ))
                            }
                        },
                    }
                }
            }
        }
        Ok(opts)
    }

    /// Parses the process's arguments; prints the usage and exits on `--help` or a bad
    /// argument.
    pub fn from_env() -> Options {
        match Options::parse(std::env::args().skip(1)) {
            Ok(opts) => opts,
            Err(text) => {
                eprintln!("{text}");
                std::process::exit(2);
            }
        }
    }
}

fn usage() -> String {
    format!(
        "options:\n  --quick       smaller sample counts and fewer epochs (seconds, for tests)\n  --epochs N    train for N epochs\n  --data DIR    the data folder holding mnist/ etc., or a data set's own folder\n                (default {})\n  --out DIR     where plots go (default {})\n  --help        this text",
        Options::default().data.display(),
        default_out_dir().display()
    )
}

/// What an example's steps return: kiln's errors and I/O errors alike.
pub type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs an example's `run` on stdout; on an error, prints it and exits with status 1.
pub fn main_with<R>(run: impl FnOnce(&Options, &mut dyn std::io::Write) -> Fallible<R>) {
    let opts = Options::from_env();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = run(&opts, &mut out) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
