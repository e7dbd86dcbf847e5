//! Command-line options shared by the examples: `--quick` (smaller sample counts, for tests)
//! and `--data DIR` (where data sets live; the shipped `data/` folder by default).

use std::path::PathBuf;

/// What every example accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Smaller sample counts, so a run takes a moment (used by the tests).
    pub quick: bool,
    /// The folder holding the data sets (`DIR/mnist/...`).
    pub data: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            data: kiln::frontend::data::mnist::default_data_dir(),
        }
    }
}

impl Options {
    /// Options with `--quick` set and the shipped data folder.
    #[allow(dead_code)] // used by the tests, not by every example binary
    pub fn quick() -> Self {
        Options {
            quick: true,
            ..Options::default()
        }
    }

    /// Where the MNIST files are: `DATA/mnist` when it exists, else `DATA` itself (so
    /// `--data` may name either the data folder or the MNIST folder).
    #[allow(dead_code)] // used by the examples that read MNIST
    pub fn mnist_dir(&self) -> PathBuf {
        let nested = self.data.join("mnist");
        if nested.is_dir() {
            nested
        } else {
            self.data.clone()
        }
    }

    /// Parses `args` (without the program name). `--help` and unknown arguments give an
    /// `Err` holding the text to print.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut opts = Options::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--data" => match args.next() {
                    Some(dir) => opts.data = PathBuf::from(dir),
                    None => return Err(format!("--data needs a folder\n\n{}", usage())),
                },
                "-h" | "--help" => return Err(usage()),
                other => match other.strip_prefix("--data=") {
                    Some(dir) => opts.data = PathBuf::from(dir),
                    None => return Err(format!("unknown argument `{other}`\n\n{}", usage())),
                },
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
        "options:\n  --quick       smaller sample counts (seconds, for tests)\n  --data DIR    the data folder holding mnist/, or the MNIST folder itself\n                (default {})\n  --help        this text",
        Options::default().data.display()
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
