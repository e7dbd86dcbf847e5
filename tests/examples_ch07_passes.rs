//! `examples/ch07_passes.rs` runs with `--quick`: it prints the graph after each pass, the
//! statistics table and the fused kernels, writes a text and a DOT file per pass, and fusion
//! leaves the MLP and LeNet with fewer kernels than the pipeline without it.
#![allow(clippy::duplicate_mod)]

#[allow(dead_code)]
#[path = "../examples/ch07_passes.rs"]
mod ch07_passes;

use ch07_passes::common::Options;

#[test]
fn ch07_passes_shows_every_pass_and_the_fused_kernels() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        out: dir.path().to_path_buf(),
        ..Options::quick()
    };
    let mut buf = Vec::new();
    let summary = ch07_passes::run(&opts, &mut buf).unwrap();
    let text = String::from_utf8(buf).unwrap();

    assert_eq!(summary.models.len(), 2);
    for m in &summary.models {
        // Every pass of the inference pipeline ran and has a row: fuse, then plan_memory.
        let passes: Vec<&str> = m.stats.rows.iter().map(|r| r.pass.as_str()).collect();
        assert_eq!(
            passes[passes.len() - 2..],
            ["fuse", "plan_memory"],
            "{passes:?}"
        );
        for (i, pass) in passes.iter().enumerate() {
            for ext in ["txt", "dot"] {
                let f = m.dump_dir.join(format!("{:02}-{pass}.{ext}", i + 1));
                assert!(f.is_file(), "{} missing", f.display());
            }
        }
        let dot =
            std::fs::read_to_string(m.dump_dir.join(format!("{:02}-fuse.dot", passes.len() - 1)))
                .unwrap();
        assert!(dot.starts_with("digraph"), "{dot}");
        assert!(dot.contains("fused"), "{dot}");
        assert!(
            m.kernels_optimized < m.kernels_without_fuse,
            "{}: {} fused vs {} unfused",
            m.name,
            m.kernels_optimized,
            m.kernels_without_fuse
        );
        assert!(m.kernels_without_fuse <= m.kernels_traced);
        assert!(
            m.fused_kinds.iter().all(|k| k != "Generic"),
            "{:?}",
            m.fused_kinds
        );
    }
    // The MLP's two ReLU dense layers and LeNet's two ReLU convolutions and ReLU dense layer
    // each become an epilogue kernel.
    assert!(summary.models[0].fused_kinds.len() >= 2);
    assert!(summary.models[1].fused_kinds.len() >= 3);

    assert!(text.contains("--- after fuse"), "{text}");
    assert!(text.contains("fused kernel ("), "{text}");
    assert!(text.contains("KILN_PASSES=-fuse"), "{text}");
    assert!(text.contains("pass        nodes"), "{text}");
    let [fwd, bwd] = summary.mlp_training;
    assert!(
        fwd[1] <= fwd[0] && bwd[1] <= bwd[0],
        "{:?}",
        summary.mlp_training
    );
}
