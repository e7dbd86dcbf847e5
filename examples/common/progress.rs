//! A progress bar for training loops: batches done, the running mean loss and throughput.
//!
//! The bar draws on standard error only when that is a terminal, so piped output and the
//! tests stay clean; the per-epoch lines the book prints go to the example's writer as usual.
#![allow(dead_code)] // each example binary uses a different part of the shared module

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;

/// One epoch's progress bar.
pub struct Progress {
    bar: ProgressBar,
    start: Instant,
    loss_sum: f64,
    samples: usize,
}

impl Progress {
    /// A bar over `batches` steps, labelled `label` (such as `epoch 3/10`).
    pub fn new(batches: usize, label: impl Into<String>) -> Progress {
        let bar = ProgressBar::new(batches as u64);
        let style = ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} batches {msg} ({elapsed}, eta {eta})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(label.into());
        Progress {
            bar,
            start: Instant::now(),
            loss_sum: 0.0,
            samples: 0,
        }
    }

    /// Records one batch of `samples` samples whose summed loss is `loss_sum`.
    pub fn step(&mut self, loss_sum: f64, samples: usize) {
        self.loss_sum += loss_sum;
        self.samples += samples;
        self.bar.inc(1);
        // Redrawing the message costs a format; indicatif rate-limits the drawing itself.
        if self.bar.position() % 16 == 1 || self.bar.length() == Some(self.bar.position()) {
            self.bar.set_message(format!(
                "loss {:.4}, {:.0} samples/s",
                self.mean_loss(),
                self.samples_per_sec()
            ));
        }
    }

    /// The mean per-sample loss so far.
    pub fn mean_loss(&self) -> f64 {
        if self.samples == 0 {
            f64::NAN
        } else {
            self.loss_sum / self.samples as f64
        }
    }

    /// Samples per second since the bar was made.
    pub fn samples_per_sec(&self) -> f64 {
        self.samples as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// Samples seen so far.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Removes the bar from the terminal.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}
